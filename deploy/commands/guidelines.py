"""`deploy guidelines`: ShuffleNet V2's guidelines G1-G4 measured on this machine's runtimes
(or a board over SSH), beside the paper's numbers, with a verdict per guideline; optionally
per-layer FLOPs vs time for zoo nets. Writes guidelines_<cpu>.md, .json and PNG plots."""
from __future__ import annotations

HELP = ("ShuffleNet V2's design guidelines G1-G4 (FLOPs are not speed) measured in each "
        "runtime, beside the paper's numbers, and per-layer FLOPs vs time of zoo nets")

DEFAULT_LAYER_MODELS = ("shufflenet_v2_x1_0", "mobilenet_v2")


def _ints(text: str) -> tuple[int, ...]:
    import argparse

    from edgebase.cli_flags import csv

    try:
        return tuple(int(x.lstrip("x")) for x in csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def add_arguments(p) -> None:
    from edgebase.capabilities import target_names
    from edgebase.cli_flags import add_json, csv

    from zoo.guidelines import GUIDELINES, SCALES

    p.add_argument("--target", type=csv, metavar="LIST", required=True,
                   help=f"runtime target(s), comma-separated: {', '.join(target_names())}")
    p.add_argument("--guidelines", type=csv, default=GUIDELINES, metavar="LIST",
                   help=f"which experiments (default all: {','.join(GUIDELINES)})")
    p.add_argument("--scales", type=_ints, default=(2,), metavar="LIST",
                   help=f"the tables' width columns x1 x2 x4 (paper ARM widths times "
                        f"{','.join(map(str, SCALES))}; default 2)")
    p.add_argument("--precisions", type=csv, default=("fp32", "int8"), metavar="LIST",
                   help="fp32 and/or int8 (int8: the target's PTQ on noise, latency only; "
                        "default fp32,int8)")
    p.add_argument("--threads", type=_ints, default=(1, 2), metavar="N[,N]",
                   help="thread counts to time (default 1,2)")
    p.add_argument("--runs", type=int, default=30, help="timed runs per measurement (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up runs (default 5)")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds, --runs split over them (default 3)")
    p.add_argument("--layers", type=csv, default=DEFAULT_LAYER_MODELS, metavar="MODELS",
                   help=f"zoo nets for the per-layer FLOPs-vs-time report, or 'none' "
                        f"(default {','.join(DEFAULT_LAYER_MODELS)})")
    p.add_argument("--output", metavar="DIR", default="out/guidelines",
                   help="model files (reused when still valid); without --json also the report "
                        "files (default out/guidelines)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    add_json(p, "the report (written to DIR/guidelines_<cpu>.json without FILE); the Markdown "
                "(same stem) and PNG plots go beside it")
    from deploy.commands.device import add_device_arguments

    add_device_arguments(p, required=False)  # --device: time the files on a board over SSH


def run(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from deploy.guidelines import GuidelinesConfig, run_guidelines
    from deploy.guidelines_plots import write_plots
    from deploy.guidelines_report import markdown_table, to_markdown, verdict_table
    from edgebase.cli_flags import write_json
    from edgebase.files import write_text_atomic

    config = GuidelinesConfig(
        targets=tuple(args.target), guidelines=tuple(args.guidelines), scales=args.scales,
        precisions=tuple(args.precisions), threads=args.threads, runs=args.runs,
        warmup=args.warmup, rounds=args.rounds, output_dir=Path(args.output),
        device=args.device, device_options=dict(
            python=args.python, remote_dir=args.remote_dir, ssh_config=args.ssh_config,
            connect_timeout=args.connect_timeout, install=args.install) if args.device else None)
    models = () if [m.lower() for m in args.layers] == ["none"] else tuple(args.layers)
    if models and args.device:
        from edgebase.errors import ConfigError
        raise ConfigError("--layers profiles on this host only; add --layers none with --device")
    from deploy.layer_profile import check_models

    check_models(models)  # unknown names fail before minutes of work
    argv = sys.argv[1:]
    command = "deploy " + shlex.join(argv) if "guidelines" in argv else "deploy guidelines"
    report = run_guidelines(config, command=command, progress=not args.no_progress)
    if models:
        from deploy.layer_profile import profile_models

        report["layers"] = profile_models(models, config, progress=not args.no_progress)
        import os
        import time

        # the run ends with the profiles: its end time and load cover them too
        report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        report["machine"]["load_average_end"] = list(os.getloadavg())
    to_stdout = args.json == "-"
    from deploy.guidelines_report import timing_tag

    tag = timing_tag(report)  # the board's CPU with --device: its timings are the report's
    json_path = (Path(args.json) if args.json and not to_stdout
                 else config.output_dir / f"guidelines_{tag}.json")
    out = json_path.parent
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out, json_path.stem)
    report["plots"] = {k: Path(v).name for k, v in plots.items()}
    write_json(report, str(json_path))
    from deploy.layer_profile import layers_markdown

    md = out / (json_path.stem + ".md")
    write_text_atomic(md, to_markdown(report, report["plots"],
                                      layers_markdown(report.get("layers"), report["plots"]))
                      + "\n")
    if to_stdout:
        write_json(report, "-")
    else:
        from deploy.guidelines_report import summary_lines

        print(markdown_table(*verdict_table(report)))
        print()
        for line in summary_lines(report):
            print(line)
    print(f"\nwrote {json_path}, {md}" + "".join(f", {p}" for p in plots.values()),
          file=sys.stderr)
    failed = [c for c in report["cells"] if c["status"] != "ok"]
    failed += [r for r in (report.get("layers") or []) if r.get("status") == "failed"]
    return 1 if failed else 0
