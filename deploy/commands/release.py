"""`deploy release MODEL`: model files + manifests + labels + model card, checksummed and zipped."""
from __future__ import annotations

from pathlib import Path

HELP = "build a versioned, verifiable release bundle (folder + zip) for mobile apps and boards"


def add_arguments(p) -> None:
    from edgebase.capabilities import DEFAULT_RELEASE_TARGETS, TARGETS, all_int8_io
    from edgebase.cli_flags import POSITIVE, add_json, add_model_build, csv, old_name, output_dir

    p.add_argument("model", metavar="MODEL", help="zoo name or alias (see `deploy models`)")
    p.add_argument("--weights", type=Path, metavar="PATH", help="checkpoint to release (default: the model's packaged weights)")
    add_model_build(p)
    p.add_argument("--labels", dest="labels_file", type=Path, metavar="FILE",
                   help="class names, one a line, for models whose classes the zoo cannot name")
    p.add_argument("--target", type=csv, default=DEFAULT_RELEASE_TARGETS, metavar="T1,T2",
                   help=f"export target, or a comma-separated list (default: "
                        f"{','.join(DEFAULT_RELEASE_TARGETS)})")
    old_name(p, "--targets", "--target", dest="target", type=csv)
    p.add_argument("--int8", action="store_true", help="add int8 (post-training quantized) files; needs --calib")
    integer_io = [n for n, t in TARGETS.items() if len(t.int8_io) > 1]
    p.add_argument("--int8-io", choices=all_int8_io(), default=all_int8_io()[0],
                   help=f"input/output type of the int8 files of {', '.join(integer_io)} "
                        f"(default: float; mobile apps often feed uint8); the other targets' "
                        f"int8 files keep float I/O")
    p.add_argument("--fp16", action="store_true", help="add fp16 files where the target offers them")
    p.add_argument("--version", dest="release_version", default="1.0.0", metavar="V",
                   help="release version written into the bundle name, manifest and metadata (default: 1.0.0)")
    p.add_argument("--calib", type=Path, metavar="PATH", help="calibration images for --int8 (folder or zip)")
    p.add_argument("--data", dest="eval_data", type=Path, metavar="PATH",
                   help="labelled images to measure top-1/top-5 of every file (folder or zip)")
    old_name(p, "--eval", "--data", dest="eval_data", type=Path)
    p.add_argument("--limit", type=POSITIVE, default=1000, metavar="N",
                   help="images of --data to evaluate, class-balanced, seed 0 (default: 1000: "
                        "every file of the bundle is measured, and `runner verify --data` "
                        "re-measures the same images)")
    old_name(p, "--eval-limit", "--limit", dest="limit", type=POSITIVE)
    p.add_argument("--split", dest="eval_split", default="test", metavar="NAME",
                   help="split inside --data (default: test)")
    old_name(p, "--eval-split", "--split", dest="eval_split")
    p.add_argument("--threads", type=POSITIVE, help="threads for eval and bench (default: all cores)")
    p.add_argument("--bench-runs", type=POSITIVE, default=100, help="timed runs per file (default: 100)")
    p.add_argument("--container", dest="containers", type=Path, action="append", default=[],
                   metavar="FILE.edc", help="also carry this Deep Compression container (made "
                   "by deploy compress from the same parent; repeatable): measured as the file "
                   "it decodes to, checked by runner verify")
    p.add_argument("--output", type=output_dir, default=Path("release"), metavar="DIR",
                   help="where the bundle, its zip and the build folder go (default: release)")
    add_json(p, "the bundle's manifest.json (every file, its checks and measurements)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle of this "
                   "name and version built from a different parent (weights, classes, "
                   "preprocessing); rebuilding from the same parent needs no flag")


def run(args) -> int:
    import sys

    from edgebase.cli_flags import write_json
    from deploy.release import ReleaseConfig, release

    cfg = ReleaseConfig(model=args.model, targets=args.target, int8=args.int8,
                        int8_io=args.int8_io, fp16=args.fp16, version=args.release_version,
                        calib=args.calib, eval_data=args.eval_data,
                        eval_limit=args.limit, eval_split=args.eval_split,
                        output=Path(args.output), threads=args.threads, bench_runs=args.bench_runs,
                        weights=args.weights, num_classes=args.num_classes, width=args.width,
                        input_size=args.input_size, labels_file=args.labels_file,
                        force=args.force, containers=tuple(args.containers))
    # with --json alone stdout is the JSON: progress goes to stderr
    log = (lambda m: print(m, file=sys.stderr)) if args.json == "-" else print
    bundle = release(cfg, log=log)
    if args.json:
        write_json(bundle.to_dict(), args.json)
        if args.json == "-":
            return 0
    print(f"bundle  {bundle.folder}")
    print(f"zip     {bundle.zip}")
    print(f"check   runner verify {bundle.zip}")
    return 0
