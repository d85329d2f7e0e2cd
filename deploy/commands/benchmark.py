"""`deploy benchmark MODEL...`: export, validate, evaluate and time every model x target x
precision against PyTorch in one run; prints one table, writes JSON, Markdown and plots."""
from __future__ import annotations

HELP = ("size / top-1 / latency of models across targets and precisions, against PyTorch "
        "fp32 measured in the same run")


def _ints(text: str) -> tuple[int, ...]:
    """Thread counts: comma-separated whole numbers, each at least 1."""
    import argparse

    from edgebase.cli_flags import POSITIVE, csv

    values = csv(text)
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated thread counts, got {text!r}")
    return tuple(POSITIVE(x) for x in values)


def add_arguments(p) -> None:
    from edgebase.cli_flags import COUNT, POSITIVE, add_json, csv, old_name, output_dir
    from edgebase.capabilities import target_names

    p.add_argument("models", nargs="+", metavar="MODEL", help="zoo names (see `deploy models`)")
    p.add_argument("--target", type=csv, metavar="LIST",
                   help=f"target, or a comma-separated list (default: all: "
                        f"{','.join(target_names())})")
    old_name(p, "--targets", "--target", dest="target", type=csv)
    p.add_argument("--precisions", type=csv, default=("fp32",), metavar="LIST",
                   help="comma-separated precisions: fp32,fp16,int8 (default fp32)")
    p.add_argument("--data", metavar="PATH",
                   help="labelled evaluation images, folder or zip (default: CIFAR-10 test split "
                        "for 32x32 nets, the ImageNet sample otherwise, from ../shared/data)")
    p.add_argument("--calib", metavar="PATH", help="calibration images for int8")
    p.add_argument("--limit", type=POSITIVE, metavar="N",
                   help="evaluate on N class-balanced images (default: all)")
    p.add_argument("--no-eval", action="store_true",
                   help="latency only: skip the accuracy columns (e.g. random-init weights)")
    p.add_argument("--threads", type=_ints, default=(1, 2), metavar="N[,N]",
                   help="thread count, or a comma-separated list to time each (default 1,2)")
    p.add_argument("--runs", type=POSITIVE, default=50, help="timed runs per measurement (default 50)")
    p.add_argument("--warmup", type=COUNT, default=10, help="warm-up runs (default 10)")
    p.add_argument("--rounds", type=POSITIVE, default=3, help="interleaved latency rounds: each "
                   "times PyTorch and every file, --runs split over them; medians over rounds "
                   "(default 3)")
    p.add_argument("--input-size", type=POSITIVE, help="override every model's input size")
    p.add_argument("--weights", metavar="PATH", help="checkpoint for a single MODEL")
    p.add_argument("--num-classes", type=POSITIVE, help="override every model's classifier outputs")
    p.add_argument("--output", metavar="DIR", type=output_dir, default="out/benchmark",
                   help="exported files (reused when still valid) and, without --json, the "
                        "report files (default out/benchmark)")
    add_json(p, "the report (written to DIR/benchmark.json without FILE); the Markdown (same "
                "stem) and PNG plots go beside it")
    p.add_argument("--title", default="deploy benchmark", help="title of the Markdown report")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the cells as tasks on a Ray cluster: auto (the cluster this machine "
                        "belongs to), ray://HOST:PORT or HOST:PORT; every node needs edgedeploy, "
                        "the data at the same paths and one timing_slot resource (ray start "
                        "--resources='{\"timing_slot\": 1}'); needs pip install "
                        "'edgedeploy[ray]' (default: this process); with --device, every "
                        "time cell runs on this machine's node, one model at a time")
    from deploy.commands.device import add_device_arguments

    add_device_arguments(p, required=False)  # --device: time the files on a board over SSH


def run(args) -> int:
    import shlex
    import sys
    from pathlib import Path

    from deploy.benchmark import BenchmarkConfig
    from deploy.sweep.run import run_benchmark
    from deploy.benchmark_plots import write_plots
    from deploy.benchmark_report import rows, text_table, to_markdown, write_json
    from edgebase.files import write_text_atomic

    config = BenchmarkConfig(
        models=tuple(args.models), targets=args.target, precisions=args.precisions,
        data=Path(args.data) if args.data else None,
        calib=Path(args.calib) if args.calib else None, limit=args.limit,
        threads=args.threads, output_dir=Path(args.output), runs=args.runs, warmup=args.warmup,
        rounds=args.rounds,
        evaluate=not args.no_eval, weights=Path(args.weights) if args.weights else None,
        input_size=args.input_size, num_classes=args.num_classes,
        device=args.device, device_options=dict(
            python=args.python, remote_dir=args.remote_dir, ssh_config=args.ssh_config,
            connect_timeout=args.connect_timeout, install=args.install) if args.device else None)
    executor = None
    if args.cluster:
        from deploy.sweep.ray_executor import RayExecutor, import_ray

        import_ray()  # the missing-Ray error before any work
        executor = RayExecutor(args.cluster)
    argv = sys.argv[1:]
    command = ("deploy " + shlex.join(argv) if "benchmark" in argv
               else "deploy benchmark " + shlex.join(args.models))
    report = run_benchmark(config, command=command, executor=executor)
    out = config.output_dir
    to_stdout = args.json == "-"
    json_path = Path(args.json) if args.json and not to_stdout else out / "benchmark.json"
    out = json_path.parent  # the Markdown and the plots go beside the JSON
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, json_path)
    plots = write_plots(report, out)
    md = out / (json_path.stem + ".md")
    rel = {c: Path(p).name for c, p in plots.items()}  # plots sit beside the Markdown
    write_text_atomic(md, to_markdown(report, args.title, rel) + "\n")
    head, body = rows(report)
    if to_stdout:
        from edgebase.cli_flags import write_json as emit

        emit(report, "-")
    else:
        print(text_table(head, body))
        from deploy.benchmark_report import load_warning

        warning = load_warning(report)
        if warning:
            print(f"\n{warning}")
    for line in report["warnings"]:  # under the table, where the numbers are read
        print(f"warning: {line}", file=sys.stderr)
    if report.get("cluster"):
        from deploy.benchmark_report import cluster_line

        print(cluster_line(report["cluster"]), file=sys.stderr)
    print(f"\nwrote {json_path}, {md}" + "".join(f", {p}" for p in plots.values()),
          file=sys.stderr)
    # a failed cell is in the table and the files, and makes the exit status non-zero
    return 1 if any(c["status"] == "failed" for c in report["cells"]) else 0
