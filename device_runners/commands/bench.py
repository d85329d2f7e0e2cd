"""runner bench MODEL: latency statistics, throughput, MAC rate and memory."""
from __future__ import annotations

from edgebase.capabilities import model_suffixes

# the suffixes come from the capability table, so a new target shows up here by itself
HELP = (f"benchmark a model file ({', '.join(model_suffixes())}) or a .edc container: latency, "
        f"throughput, MAC/s, memory")


def add_arguments(p) -> None:
    from edgebase.cli_flags import COUNT, POSITIVE, above, add_json

    p.add_argument("model", help=f"model file ({', '.join(model_suffixes())}) or .edc container")
    p.add_argument("--runtime", help=runtime_help())
    p.add_argument("--threads", type=POSITIVE, help="inference threads (default: all cores)")
    add_precision_hint(p)
    p.add_argument("--warmup", type=COUNT, default=5, help="untimed runs before timing (default 5)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--runs", type=POSITIVE, help="timed runs (default 100)")
    g.add_argument("--min-time", type=above(0), metavar="S", help="run for at least S seconds")
    p.add_argument("--batch", type=POSITIVE, help="batch size (default: the model's)")
    p.add_argument("--input", metavar="FILE", help=".npy (or .npz by input name) to feed "
                   "instead of random data")
    p.add_argument("--shape", type=_shape, help="input shape for models with dynamic axes, "
                   "e.g. 1,3,224,224 (default: the manifest's)")
    p.add_argument("--profile", action="store_true", help="per-operator times where the "
                   "runtime exposes them")
    add_json(p, "the result")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="skip the load-and-run check in a child process")


def run(args) -> int:
    from device_runners.bench import bench, format_table

    result = bench(args.model, runtime=args.runtime, threads=args.threads, warmup=args.warmup,
                   runs=args.runs, min_time=args.min_time, batch=args.batch, input=args.input,
                   shape=args.shape,
                   profile=args.profile, isolate=args.isolate,
                   precision_hint=args.precision_hint)
    return print_result(result, format_table(result), args.json)


def print_result(result, table: str, json_dest: str | None) -> int:
    """The table (unless ``--json`` alone asked for JSON on stdout), the result's warnings on
    stderr after it, then the JSON; shared by bench and eval."""
    import sys

    from edgebase.cli_flags import write_json

    if json_dest != "-":
        print(table)
    for line in result.warnings:  # after the table, so it is read with the numbers
        print(f"warning: {line}", file=sys.stderr)
    if json_dest:
        write_json(result.to_dict(), json_dest)
    return 0


def runtime_help() -> str:
    """The runtimes of the capability table, saying which one is not torch-free."""
    from edgebase.capabilities import RUNTIMES

    names = " | ".join(n + ("" if r.torch_free else " (imports torch)") for n, r in RUNTIMES.items())
    return f"{names} (default: by suffix)"


def add_precision_hint(p) -> None:
    """--precision-hint, shared by bench and eval."""
    from device_runners.precision import PRECISION_HINTS

    p.add_argument("--precision-hint", choices=PRECISION_HINTS, default=None,
                   help="float precision the runtime computes in (default f32, the file's own; "
                        "auto = the runtime's default for this CPU, e.g. bf16 on OpenVINO with "
                        "AMX; only OpenVINO honours bf16/f16)")


def _shape(text: str) -> tuple[int, ...]:
    import argparse

    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,3,224,224") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: every axis must be at least 1")
    return dims
