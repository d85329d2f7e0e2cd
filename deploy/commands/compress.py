"""`deploy compress MODEL --target T`: Deep Compression (pruning, k-means weight sharing,
Huffman coding) into a container that `runner` decodes on the device."""
from __future__ import annotations

HELP = ("Deep Compression: prune, share weights (k-means) and Huffman-code a model into a "
        ".edc container that runner bench/eval/unpack decode to the exact target file")


def _shares(text: str) -> tuple[float, ...]:
    """``--prune``: a share, or a comma-separated list of shares (a sweep)."""
    from edgebase.cli_flags import at_least

    return _numbers(text, at_least(0, float), "shares")


def _bits(text: str) -> tuple[float, ...]:
    """``--share-bits``: bits, or a comma-separated list of them (a sweep)."""
    from edgebase.cli_flags import at_least

    return _numbers(text, at_least(1, float), "bits")


def _numbers(text: str, parse, what: str) -> tuple[float, ...]:
    import argparse

    from edgebase.cli_flags import csv

    values = csv(text)
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
    out = tuple(parse(x) for x in values)
    if len(set(out)) < len(out):
        raise argparse.ArgumentTypeError(f"{text!r} names a setting twice")
    return out


def add_arguments(p) -> None:
    from edgebase.capabilities import target_names
    from edgebase.cli_flags import POSITIVE, add_model_build, output_dir
    from deploy.compress_stage import PER_LAYER
    from quant.finetune import FinetuneConfig
    from quant.int8_weights import targets as int8_targets
    from quant.weight_sharing import SCALES

    d = FinetuneConfig()

    p.add_argument("model", metavar="MODEL", help="zoo name or alias (see `deploy models`)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint or importable weights file "
                   "(e.g. squeezenet_v1.0_deep_compression.net)")
    add_model_build(p)
    p.add_argument("--target", required=True, choices=target_names(),
                   help="the file the container carries")
    p.add_argument("--prune", type=_shares, default=(0.0,), metavar="S[,S]",
                   help="share of the conv/linear weights to set to zero (default 0); a "
                        "comma-separated list (with --share-bits: every pair) makes a sweep, one "
                        "sub-folder of --output per setting and DIR/sweep.json")
    p.add_argument("--prune-layers", choices=PER_LAYER, default=PER_LAYER[0],
                   help="how the share is spread over layers: from a per-layer sensitivity "
                        "scan on the fine-tuning images (default) or the same in every layer")
    p.add_argument("--share-bits", type=_bits, default=(8.0,), metavar="B[,B]",
                   help="k-means codebook of 2**B values per layer (default 8); below 8, the "
                        "mean over the weights, bits per layer from a sensitivity scan")
    p.add_argument("--share-layers", choices=PER_LAYER, default=PER_LAYER[0],
                   help="codebook bits per layer from the sensitivity scan (default) or B in "
                        "every layer")
    p.add_argument("--share-scale", choices=SCALES, default=SCALES[0],
                   help="codebook over the weights scaled per output channel (default: each "
                        "channel keeps a float16 scale; BatchNorm-folded nets need it) or over "
                        "the raw weights, one codebook per layer as in Han et al.")
    p.add_argument("--int8", action="store_true",
                   help=f"the container carries the int8 file ({', '.join(int8_targets())}): "
                        f"the shared net quantized by the target's own quantizer, calibrated "
                        f"as `deploy export --int8` does; its int8 weights are Huffman-coded")
    p.add_argument("--calib", metavar="PATH", help="with --int8: calibration images (or "
                   "zeroq, synthetic), as for `deploy export --int8` (default: its default)")
    p.add_argument("--train-data", metavar="PATH", help="labelled images (a train/ split of "
                   "the model's classes) to fine-tune on after pruning and after sharing")
    p.add_argument("--distill-data", metavar="PATH", help="unlabelled images to fine-tune on by "
                   "distillation from the dense parent (default: CIFAR-10 train images from "
                   "the shared data folder; never evaluation images)")
    p.add_argument("--epochs", type=float, default=d.epochs, metavar="E",
                   help=f"fine-tuning epochs after pruning and again after sharing (default "
                        f"{d.epochs:g}; 0: no fine-tuning)")
    p.add_argument("--train-limit", type=POSITIVE, metavar="N", help="fine-tune on N images "
                   "(class-balanced, seeded; default all for 32-px nets, 5000 for larger)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"fine-tuning seed (default {d.seed})")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("--data", dest="eval_data", metavar="PATH",
                   help="labelled images: top-1 of the dense parent, after pruning and after "
                   "sharing (PyTorch) and of the decoded file")
    p.add_argument("--limit", type=POSITIVE, metavar="N", help="evaluate on N images (default all)")
    p.add_argument("--output", required=True, type=output_dir, metavar="DIR", help="output folder")
    p.add_argument("--threads", type=POSITIVE, help="CPU threads for fine-tuning (PyTorch) and for "
                   "the runtime during validation (default: each library's own)")
    p.add_argument("--json", action="store_true", help="print the manifest (a sweep: its "
                   "summary, DIR/sweep.json) as JSON")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run the settings of a sweep as tasks on a Ray cluster: auto, "
                        "ray://HOST:PORT or HOST:PORT; every node needs edgedeploy, the data at "
                        "the same paths and one timing_slot resource; the containers come back "
                        "to --output; needs pip install 'edgedeploy[ray]' (default: this "
                        "process, one setting at a time)")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source
    from deploy.int8_stage import Int8Config
    from quant.finetune import FinetuneConfig

    def path(value):
        return Path(value) if value else None

    config = CompressConfig(target=args.target, output_dir=Path(args.output),
                            prune=args.prune[0], share_bits=args.share_bits[0],
                            prune_layers=args.prune_layers, share_layers=args.share_layers,
                            share_scale=args.share_scale,
                            int8=_int8(args, Int8Config),
                            eval_data=path(args.eval_data),
                            eval_limit=args.limit, threads=args.threads,
                            train_data=path(args.train_data),
                            distill_data=path(args.distill_data), train_limit=args.train_limit,
                            finetune=FinetuneConfig(epochs=args.epochs, seed=args.seed),
                            progress=not args.no_progress)
    if len(args.prune) * len(args.share_bits) > 1 or args.cluster:
        return _sweep(args, config)
    source = load_source(args.model, weights=args.weights, num_classes=args.num_classes,
                         width=args.width, input_size=args.input_size)
    artifact = compress(source, config, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(artifact.to_dict(), indent=2))
    else:
        c = artifact.extra["container"]
        int8 = (f", {c['ratio_vs_fp32_file']:.1f}x smaller than the fp32 file "
                f"({c['fp32_bytes']:,} bytes)" if artifact.precision == "int8" else "")
        print(f"{Path(args.output) / artifact.file}: {c['sizes']['total']:,} bytes, "
              f"{c['ratio_vs_target_file']:.1f}x smaller than its {artifact.precision} "
              f"{c['target']} file ({c['target_bytes']:,} bytes){int8}; decodes in "
              f"{c['decode_ms']:.0f} ms")
    return 0


def _int8(args, Int8Config):
    """The int8 stage's options for --int8 (with --calib), or None for an fp32 container."""
    from edgebase.errors import ConfigError
    from quant.calibration import calib_choice

    if not args.int8:
        if args.calib is not None:
            raise ConfigError("--calib needs --int8 (it calibrates the int8 file)")
        return None
    return Int8Config(calib=calib_choice(args.calib))  # checks a path before any fine-tuning


def _sweep(args, config) -> int:
    """One cell per setting, each into its own sub-folder; the summary and its table."""
    import json
    import shlex
    import sys
    from pathlib import Path

    from deploy.compress_sweep import SUMMARY, run_sweep, text_table
    from deploy.sweep.compress_cells import ModelSpec, absolute, plan, with_keys
    from deploy.sweep.independent import LocalExecutor, RayExecutor

    executor = LocalExecutor()
    if args.cluster:
        from deploy.sweep.ray_executor import import_ray

        import_ray()  # the missing-Ray error before any work
        executor = RayExecutor(args.cluster)
    config = absolute(config)  # the summary names files, and nodes read data, by full path
    # every setting is checked (CompressConfig) before any work
    cells = plan(config, args.prune, args.share_bits)
    spec = ModelSpec(args.model, weights=str(Path(args.weights).resolve()) if args.weights
                     else None, num_classes=args.num_classes, width=args.width,
                     input_size=args.input_size, seed=args.seed)
    cells = with_keys(cells, spec)
    output = config.output_dir
    argv = sys.argv[1:]
    command = ("deploy " + shlex.join(argv) if "compress" in argv
               else f"deploy compress {args.model}")
    summary = run_sweep(spec, cells, executor, output, command)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(text_table(summary))
    print(f"\nwrote {output / SUMMARY}", file=sys.stderr)
    # a failed setting is in the table and the summary, and makes the exit status non-zero
    return 1 if summary["failed"] else 0
