"""Deep Compression report: the paper's Table-style breakdown per model and setting, in
benchmarks/results/deep_compression.{json,md}.

One run measures one setting with ``deploy compress``'s stage and merges its row into the JSON
(a row of the same model, weights, target and settings is replaced); the Markdown is rebuilt
from all rows. Per row: the fp32 file of the target, the size after pruning (float32 values
with 4-bit relative positions), after sharing (codebooks plus fixed-width codes), after
Huffman coding (the container), the ratio vs the fp32 file; top-1 of the dense parent, after
pruning and after sharing (PyTorch) and of the decoded file (its runtime), all on the same
evaluation images; the fine-tuning data, steps and time, and the load average while it ran
(the machine is shared: times under load are marked).

    .venv/bin/python benchmarks/deep_compression.py MODEL [--weights W] [--prune S]
        [--bits B] [--epochs E] [--train-limit N] [--data EVAL] [--limit N] [--target T]
    .venv/bin/python benchmarks/deep_compression.py --plan   # the commands of the full report
    .venv/bin/python benchmarks/deep_compression.py --render # Markdown from the JSON only
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = "../shared/data"  # relative to the repository, as the commands are written
OUT = REPO / "benchmarks" / "results" / "deep_compression"
HAN = f"{DATA}/models/squeezenet_v1.0_deep_compression.net"
GOOGLE = f"{DATA}/models/mobilenet_v1_0.25_224_float.tflite"
CIFAR = f"{DATA}/cifar10.zip"
SAMPLE = f"{DATA}/imagenet-sample-1k.zip"
SETTINGS = ("model", "weights", "num_classes", "target", "prune", "prune_layers", "bits",
            "share_layers", "share_scale", "epochs", "train_limit", "train_data",
            "distill_data", "int8", "calib", "data", "limit")
# rows measured before a setting existed ran with what is now this value
BEFORE = {"share_scale": "layer", "distill_data": None, "int8": False, "calib": None}

# The settings behind the report's goals (issue: >= 10x at <= 0.5 point on every CIFAR-10
# checkpoint; Han's SqueezeNet <= 470 KB at <= 0.5 point; MobileNetV1-0.25 best ratio at <= 1).
PLAN = [
    ["squeezenet1_0", "--weights", HAN, "--prune", "0", "--bits", "8", "--epochs", "0",
     "--data", SAMPLE],
    ["squeezenet1_0", "--weights", HAN, "--prune", "0", "--bits", "6", "--epochs", "1",
     "--train-limit", "2000", "--data", SAMPLE],
    ["mobilenet_v1_x0_25", "--weights", GOOGLE, "--num-classes", "1001", "--prune", "0.5",
     "--bits", "5", "--epochs", "1", "--data", SAMPLE],
] + [[m, "--prune", "0.6", "--bits", "5", "--epochs", "1", "--data", CIFAR] for m in (
    "squeezenet1_1.cifar10", "shufflenet_v2_x0_5.cifar10", "mobilenet_v2_x0_5.cifar10",
    "mobilenet_v1_x0_5.cifar10", "mobilenet_v3_small.cifar10", "shufflenet_v1_g3.cifar10")]


def _path(p: str | None) -> Path | None:
    return None if p is None else (REPO / p if not Path(p).is_absolute() else Path(p))


def _calib(value: str | None):
    from quant.calibration import KEYWORDS

    return value if value is None or value in KEYWORDS else _path(value)


def settings(args) -> dict:
    """What a row was measured with, as given on the command line (the key of a row)."""
    return {k: getattr(args, k) for k in SETTINGS}


def run_one(args) -> dict:
    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source
    from deploy.int8_stage import Int8Config
    from quant.finetune import FinetuneConfig

    source = load_source(args.model, weights=_path(args.weights), num_classes=args.num_classes)
    load0 = os.getloadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        art = compress(source, CompressConfig(
            target=args.target, output_dir=Path(tmp), prune=args.prune, share_bits=args.bits,
            prune_layers=args.prune_layers, share_layers=args.share_layers,
            share_scale=args.share_scale, eval_data=_path(args.data), eval_limit=args.limit,
            train_data=_path(args.train_data), distill_data=_path(args.distill_data),
            int8=Int8Config(calib=_calib(args.calib)) if args.int8 else None,
            train_limit=args.train_limit, threads=args.threads,
            finetune=FinetuneConfig(epochs=args.epochs)),
            log=lambda m: print(f"  {m}", file=sys.stderr, flush=True))
    load1 = os.getloadavg()
    c = art.extra["container"]
    record = art.passes[-1]
    steps, acc, sizes = record["steps"], c["accuracy"], c["sizes"]
    tuning = [s["finetune"] for s in (steps.get("pruning"), steps["sharing"])
              if s and "finetune" in s]
    pruning = steps.get("pruning") or {}
    return {
        "settings": settings(args), "model": source.name,
        "weights": Path(args.weights).name if args.weights else "packaged",
        "target": args.target, "prune": args.prune,
        "prune_layers": args.prune_layers if args.prune else None, "share_bits": args.bits,
        "share_layers": args.share_layers if args.bits < 8 else None,
        "share_scale": args.share_scale, "precision": art.precision,
        "epochs": args.epochs if tuning else 0, "train_limit": args.train_limit,
        "finetune_data": tuning[0]["data"] if tuning else None,
        "finetune": [{k: t[k] for k in ("loss", "steps", "batch_size", "images_seen", "lr",
                                        "optimizer", "loss_start", "loss_end", "seconds",
                                        "cpu_seconds", "threads")} for t in tuning],
        "nonzero": sum(f["nonzero"] for f in c["layers"]) / sum(f["weights"] for f in c["layers"]),
        "per_layer": {"prune": (pruning.get("per_layer") or {}).get("layers"),
                      "bits": steps["sharing"]["per_layer"].get("layers")},
        "sizes": {"fp32": c.get("fp32_bytes", c["target_bytes"]), "target": c["target_bytes"],
                  "after_pruning": sizes["after_pruning"],
                  "after_sharing": sizes["after_sharing"], "after_huffman": sizes["total"],
                  "parts": sizes},
        "ratio": c.get("ratio_vs_fp32_file", c["ratio_vs_target_file"]),
        "top1": {"dense": acc["ref_top1"], "after_pruning": pruning.get("top1"),
                 "after_sharing": steps["sharing"]["top1"], "file": acc["top1"]},
        "drop": acc["top1_drop"], "images": acc["images"], "data": Path(args.data).name,
        "decode_ms": c["decode_ms"], "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
        "load_average": [round(load0[0], 2), round(load1[0], 2)],
        "command": "benchmarks/deep_compression.py " + " ".join(shlex.quote(a) for a in
                                                               sys.argv[1:]),
    }


def goals(rows: list[dict]) -> list[str]:
    """Per model: the best ratio within its allowed drop (0.5 points; 1 for MobileNetV1-0.25
    from Google's weights), and what the fixed part of the container (the file's skeleton:
    graph, biases; header) costs of it."""
    out = ["", "## Against the goals", "",
           "| model (weights) | allowed drop | best ratio within it | its drop (eval images) | skeleton + "
           "header share of the container | best ratio measured (drop) |",
           "|---|---|---|---|---|---|"]
    models = {}
    for r in rows:
        models.setdefault((r["model"], r["weights"]), []).append(r)
    for (model, weights), rs in models.items():
        allowed = 1.0 if model.startswith("mobilenet_v1_x0_25") else 0.5
        ok = [r for r in rs if r["drop"] <= allowed]
        best = max(ok, key=lambda r: r["ratio"]) if ok else None
        top = max(rs, key=lambda r: r["ratio"])
        fixed = lambda r: (r["sizes"]["parts"]["skeletons"] + r["sizes"]["parts"]["header"]) \
            / r["sizes"]["after_huffman"]
        out.append(f"| {model} ({weights}) | {allowed:g} | "
                   + (f"{best['ratio']:.1f}× ({best['sizes']['after_huffman']:,} B) | "
                      f"{best['drop']:+.2f} ({best['images']:,} {best['data']}) | "
                      f"{fixed(best):.0%} |" if best else "none | - | - |")
                   + f" {top['ratio']:.1f}× ({top['drop']:+.2f}) |")
    return out


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def merge(rows: list[dict], row: dict) -> list[dict]:
    return [r for r in rows if _key(r["settings"]) != _key(row["settings"])] + [row]


def _kb(n) -> str:
    return f"{n / 1000:,.0f} KB" if n is not None else "-"


def _bits(row: dict) -> str:
    per_layer = (row.get("per_layer") or {}).get("bits")
    # channel scales were float32 (4 bytes per channel) before the container stored float16
    scale = f", {row['share_scale']}" + (" (float32 scales)" if row.get("scale_bytes") == 4
                                        else "")
    if not per_layer:
        return f"{row['share_bits']:g}{scale}"
    return (f"{row['share_bits']:g} (mean; {min(per_layer.values())}-{max(per_layer.values())})"
            f"{scale}")


def _pct(x) -> str:
    return f"{x:.2f}" if x is not None else "-"


def markdown(report: dict) -> str:
    cores = os.cpu_count() or 1
    lines = [
        "# Deep Compression", "",
        f"`benchmarks/deep_compression.py`, {report['machine']} ({cores} cores, shared). "
        "Per model and setting, as in the paper's tables: the fp32 file of the target; after "
        "pruning (float32 non-zeros with 4-bit relative positions, or dense floats where "
        "smaller); after sharing (per-layer codebooks -- over raw weights (layer) or over "
        "weights scaled per output channel, plus a float16 scale per channel (channel) -- with "
        "fixed-width codes and those "
        "positions); after Huffman coding = the `.edc` container, which decodes to the exact "
        "target file. Ratio = fp32 file / container. Top-1 on the same evaluation images: "
        "dense parent, after pruning and after sharing (PyTorch), and the decoded file in its "
        "runtime; drop = dense - file. Pruning shares per layer come from a sensitivity scan "
        "on fine-tuning images; fine-tuning (FT) after pruning and again after sharing "
        "(epochs per step) distils the dense parent on images that are never evaluation "
        "images. Time: wall and CPU seconds of the whole run (fine-tuning, scan, export, "
        "evaluation; one PyTorch thread), with the highest load average (start/end) of the "
        "shared machine; * = load above its cores, so wall times are inflated.", "",
        "| model (weights) | target | prune | bits, codebook | FT epochs, images | fp32 | after pruning "
        "| after sharing | after Huffman | ratio | top-1 dense | pruned | shared | file | "
        "drop | eval images | wall / CPU s (load) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        s, t = r["sizes"], r["top1"]
        ft = r["finetune_data"]
        tuned = f"{r['epochs']:g}, {ft['images']:,} {ft['data']}" if ft else "none"
        load = max(r["load_average"])
        lines.append(
            f"| {r['model']} ({r['weights']}) | {r['target']}"
            f"{' int8' if r.get('precision') == 'int8' else ''} | {r['prune']:g} "
            f"({r['nonzero']:.0%} left) | {_bits(r)} | {tuned} | {_kb(s['fp32'])} | "
            f"{_kb(s['after_pruning'])} | {_kb(s['after_sharing'])} | "
            f"{_kb(s['after_huffman'])} ({s['after_huffman']:,} B) | {r['ratio']:.1f}× | "
            f"{_pct(t['dense'])} | {_pct(t['after_pruning'])} | {_pct(t['after_sharing'])} | "
            f"{_pct(t['file'])} | {r['drop']:+.2f} | {r['images']:,} {r['data']} | "
            f"{r['seconds']:.0f} / {r['cpu_seconds']:.0f} ({load:.1f}{'*' if load > cores else ''})"
            f" |")
    lines += goals(report["rows"])
    lines += ["", "Commands: each row's `command` in the JSON."]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="zoo name (see `deploy models`)")
    p.add_argument("--weights", help="weights file (Han's .net, Google's .tflite)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (1001 for Google's)")
    p.add_argument("--target", default="onnx")
    p.add_argument("--prune", type=float, default=0.0)
    p.add_argument("--prune-layers", default="sensitivity")
    p.add_argument("--bits", type=float, default=8, help="codebook bits (a mean when per layer)")
    p.add_argument("--share-layers", default="sensitivity")
    p.add_argument("--share-scale", default="channel", help="channel (default) or layer")
    p.add_argument("--epochs", type=float, default=1.0, help="fine-tuning epochs per step")
    p.add_argument("--train-limit", type=int, help="fine-tuning images")
    p.add_argument("--train-data", help="labelled fine-tuning images (default: distillation)")
    p.add_argument("--distill-data", help="unlabelled fine-tuning images (default: CIFAR-10 "
                   "train)")
    p.add_argument("--int8", action="store_true", help="the container carries the int8 file")
    p.add_argument("--calib", help="int8 calibration images (default: the int8 stage's)")
    p.add_argument("--data", default=CIFAR, help="evaluation images")
    p.add_argument("--limit", type=int, help="evaluation images (default all)")
    p.add_argument("--threads", type=int, help="CPU threads (fine-tuning and runtime)")
    p.add_argument("--plan", action="store_true", help="print the commands of the full report")
    p.add_argument("--render", action="store_true", help="rebuild the Markdown from the JSON")
    p.add_argument("--out", default=str(OUT))
    return p


def main() -> int:
    from device_runners.sysinfo import cpu_info
    from edgebase.files import write_text_atomic

    args = parser().parse_args()
    if args.plan:
        for c in PLAN:
            print(".venv/bin/python benchmarks/deep_compression.py " + " ".join(c))
        return 0
    if not args.render and not args.model:
        parser().error("MODEL is required (or --plan / --render)")
    row = None if args.render else run_one(args)
    path = Path(args.out + ".json")  # read after the run: other settings may have landed
    report = json.loads(path.read_text()) if path.exists() else {}
    report = {"machine": cpu_info().model, "rows": report.get("rows", [])}
    report["rows"] = [r for r in report["rows"] if "settings" in r]  # older layouts go
    for r in report["rows"]:
        r["settings"] = {**BEFORE, **r["settings"]}
        r.setdefault("share_scale", BEFORE["share_scale"])
    if row is not None:
        report["rows"] = merge(report["rows"], row)
        print(json.dumps(row, indent=2))
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(args.out + ".md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
