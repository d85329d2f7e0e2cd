"""runner verify BUNDLE: checksums, loading, input specs and (optionally) accuracy of a release."""
from __future__ import annotations

HELP = "check a release bundle (folder or zip): every file's size and sha256, that each model " \
       "loads with the recorded input spec, and with --data its accuracy"


def add_arguments(p) -> None:
    from edgebase.cli_flags import POSITIVE, add_json, at_least
    from device_runners.verify import DEFAULT_TOLERANCE

    p.add_argument("bundle", metavar="BUNDLE", help="bundle folder or its .zip")
    p.add_argument("--data", metavar="PATH", help="labelled images to re-measure top-1 on (the "
                   "recorded subset: same images, split and seed)")
    p.add_argument("--tolerance", type=at_least(0, float), default=DEFAULT_TOLERANCE, metavar="POINTS",
                   help=f"allowed |top-1 difference| in percentage points (default {DEFAULT_TOLERANCE})")
    p.add_argument("--limit", type=POSITIVE, help="re-measure on N images instead of the recorded number")
    p.add_argument("--threads", type=POSITIVE, help="inference threads (default: the runtime's)")
    p.add_argument("--no-load", dest="load", action="store_false",
                   help="check sizes and checksums only (no runtime needed)")
    add_json(p, "the report (files checked, models, problems)")


def run(args) -> int:
    import dataclasses

    from edgebase.cli_flags import write_json
    from edgebase.errors import ValidationError
    from device_runners.verify import format_report, verify

    report = verify(args.bundle, data=args.data, tolerance=args.tolerance, limit=args.limit,
                    threads=args.threads, load=args.load)
    if args.json != "-":
        print(format_report(report))
    if args.json:  # written also when problems are found
        write_json({"ok": report.ok, **dataclasses.asdict(report),
                    "problems": [str(p) for p in report.problems]}, args.json)
    if not report.ok:
        more = len(report.problems) - 1
        raise ValidationError(f"{args.bundle} NOT verified: {report.problems[0]}"
                              + (f" (and {more} more problem{'s' * (more > 1)}, listed "
                                 f"{'in the JSON' if args.json == '-' else 'above'})"
                                 if more else ""))
    return 0
