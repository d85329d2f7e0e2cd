"""Deep Compression report: sizes and top-1 per model and setting, written to
benchmarks/results/deep_compression.{json,md}.

Per model: the fp32 file of the target, the container after pruning + k-means sharing +
Huffman (``deploy compress``'s stage), the ratio, and top-1 of the dense PyTorch parent vs the
decoded file on the same test images. Song Han's SqueezeNet is re-encoded as it is (its
weights are already pruned and shared). No fine-tuning: the drops are what pruning and sharing
cost before it.

    .venv/bin/python benchmarks/deep_compression.py [--limit N] [--models a,b]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
HAN = ("squeezenet1_0", DATA / "models" / "squeezenet_v1.0_deep_compression.net",
       DATA / "imagenet-sample-1k.zip", [(0.0, 8)])
SETTINGS = [(0.0, 8), (0.3, 6), (0.5, 5)]  # (prune, share bits)


def run_one(name, weights, data, prune, bits, limit, target, work: Path) -> dict:
    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source

    source = load_source(name, weights=weights)
    t0 = time.perf_counter()
    art = compress(source, CompressConfig(target=target, output_dir=work, prune=prune,
                                          share_bits=bits, eval_data=data, eval_limit=limit),
                   log=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    c = art.extra["container"]
    acc = c["accuracy"]
    return {"model": name, "weights": Path(weights).name if weights else "packaged",
            "target": target, "prune": prune, "share_bits": bits,
            "target_bytes": c["target_bytes"], "container_bytes": c["sizes"]["total"],
            "ratio": c["ratio_vs_target_file"], "sizes": c["sizes"],
            "nonzero": sum(f["nonzero"] for f in c["layers"]) / sum(f["weights"] for f in c["layers"]),
            "images": acc["images"], "data": Path(data).name, "dense_top1": acc["ref_top1"],
            "top1": acc["top1"], "drop": acc["top1_drop"], "decode_ms": c["decode_ms"],
            "seconds": round(time.perf_counter() - t0, 1)}


def markdown(rows: list[dict], machine: str) -> str:
    lines = ["# Deep Compression (no fine-tuning)", "",
             f"`benchmarks/deep_compression.py`, {machine}. Container = the target file with "
             "every conv/linear weight cut out and stored as a per-layer codebook with "
             "Huffman-coded indices and positions (`deploy compress`); it decodes to the exact "
             "file. Top-1 of the dense PyTorch parent vs the decoded file on the same images. "
             "Pruning and sharing without the paper's fine-tuning, so larger settings lose "
             "accuracy that fine-tuning would recover.", "",
             "| model | prune | bits | non-zero | target file | container | ratio | images | "
             "dense top-1 | top-1 | drop | decode ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} ({r['weights']}) | {r['prune']:.1f} | {r['share_bits']} | "
                     f"{r['nonzero']:.1%} | {r['target_bytes']:,} B {r['target']} | "
                     f"{r['container_bytes']:,} B | {r['ratio']:.1f}× | {r['images']} "
                     f"{r['data']} | {r['dense_top1']:.2f} | {r['top1']:.2f} | "
                     f"{r['drop']:+.2f} | {r['decode_ms']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    from device_runners.sysinfo import cpu_info
    from edgebase.files import write_text_atomic
    from zoo import get_entry, list_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, help="test images per model (default all)")
    p.add_argument("--models", help="comma-separated *.cifar10 models (default all trained)")
    p.add_argument("--target", default="onnx")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "deep_compression"))
    args = p.parse_args()
    models = args.models.split(",") if args.models else [
        n for n in list_models("*.cifar10") if get_entry(n).trained]
    jobs = [HAN] + [(m, None, DATA / "cifar10.zip", SETTINGS) for m in models]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, weights, data, settings in jobs:
            for prune, bits in settings:
                print(f"{name}: prune {prune} bits {bits}", file=sys.stderr, flush=True)
                rows.append(run_one(name, weights, data, prune, bits,
                                    None if name == HAN[0] else args.limit, args.target,
                                    Path(tmp) / f"{name}-{prune}-{bits}"))
    cpu = cpu_info()
    report = {"machine": cpu.model, "limit": args.limit, "rows": rows}
    write_text_atomic(args.out + ".json", json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out + ".md", markdown(rows, cpu.model))
    print(markdown(rows, cpu.model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
