"""`deploy compress MODEL --target T`: Deep Compression (pruning, k-means weight sharing,
Huffman coding) into a container that `runner` decodes on the device."""
from __future__ import annotations

HELP = ("Deep Compression: prune, share weights (k-means) and Huffman-code a model into a "
        ".edc container that runner bench/eval/unpack decode to the exact target file")


def add_arguments(p) -> None:
    from edgebase.capabilities import target_names
    from edgebase.cli_flags import POSITIVE, at_least, output_dir

    p.add_argument("model", metavar="MODEL", help="zoo name or alias (see `deploy models`)")
    p.add_argument("--weights", metavar="PATH", help="checkpoint or importable weights file "
                   "(e.g. squeezenet_v1.0_deep_compression.net)")
    p.add_argument("--target", required=True, choices=target_names(),
                   help="the file the container carries")
    p.add_argument("--prune", type=at_least(0, float), default=0.0, metavar="S",
                   help="share of each layer's weights to set to zero (default 0)")
    p.add_argument("--share-bits", type=POSITIVE, default=8, metavar="B",
                   help="k-means codebook of 2**B values per layer (default 8)")
    p.add_argument("--train-data", metavar="PATH", help="labelled images to fine-tune on "
                   "after pruning and sharing (not available yet: refused)")
    p.add_argument("--data", dest="eval_data", metavar="PATH",
                   help="labelled images: top-1 of the dense parent vs the decoded file")
    p.add_argument("--limit", type=POSITIVE, metavar="N", help="evaluate on N images (default all)")
    p.add_argument("--output", required=True, type=output_dir, metavar="DIR", help="output folder")
    p.add_argument("--threads", type=POSITIVE, help="runtime threads during validation")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source
    from edgebase.errors import ConfigError

    if args.train_data:
        raise ConfigError("--train-data: fine-tuning after pruning and sharing is not "
                          "available yet; compress without it (the drop is measured with --data)")
    config = CompressConfig(target=args.target, output_dir=Path(args.output), prune=args.prune,
                            share_bits=args.share_bits,
                            eval_data=Path(args.eval_data) if args.eval_data else None,
                            eval_limit=args.limit, threads=args.threads)
    source = load_source(args.model, weights=args.weights)
    artifact = compress(source, config, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(artifact.to_dict(), indent=2))
    else:
        c = artifact.extra["container"]
        print(f"{Path(args.output) / artifact.file}: {c['sizes']['total']:,} bytes, "
              f"{c['ratio_vs_target_file']:.1f}x smaller than its {c['target']} file "
              f"({c['target_bytes']:,} bytes); decodes in {c['decode_ms']:.0f} ms")
    return 0
