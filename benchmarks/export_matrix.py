"""Export every zoo model to every target and tabulate what each conversion produced.

    .venv/bin/python benchmarks/export_matrix.py [--models PATTERN ...] [--targets onnx ...]
        [--precisions fp32 fp16] [--input-size N] [--tflite-variants GLOB ...] [--threads N] [--resume]

Per model x target x precision: conversion time, file size (with companions), validation
(max |dlogit|, relative to the largest logit, worst cosine, top-1 agreement on 64 real images),
op count and TRANSPOSE count. ``--tflite-variants GLOB`` also converts those models to TFLite without the NHWC input
and without the rewrites, to show where transposes come from. Weights: the zoo's random init
with non-trivial BatchNorm statistics (``tests.export_helpers.nontrivial_``), so logits are of
order 0.1-1 and the absolute differences mean something. Results go to
benchmarks/results/export_matrix.{json,md}, rewritten after every export so a partial run
keeps what it measured.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv=None):
    from edgebase.capabilities import all_precisions, target_names

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="*", default=["*"], help="zoo name globs (default: all)")
    p.add_argument("--targets", nargs="*", default=target_names(), choices=target_names())
    p.add_argument("--precisions", nargs="*", default=["fp32"], choices=all_precisions())
    p.add_argument("--input-size", type=int, help="override every model's input size")
    p.add_argument("--tflite-variants", nargs="*", default=[], metavar="GLOB",
                   help="for these models also TFLite with NCHW input / without rewrites "
                        "(where transposes come from)")
    p.add_argument("--threads", type=int, default=1, help="torch and runtime threads")
    p.add_argument("--out", default=str(RESULTS / "export_matrix"), help="results path stem")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of an earlier run in the results and skip their jobs")
    return p.parse_args(argv)


def models(globs: list[str]) -> list[str]:
    from zoo import list_models

    names, chosen = list_models(), []
    for g in globs:  # in the order given, so a partial run measures the first ones first
        chosen += [n for n in names if fnmatch.fnmatch(n, g) and n not in chosen]
    return chosen


def one(name, target, precision, size, options, threads, work: Path) -> dict:
    import torch

    from edgebase.errors import DeployError
    from deploy.export import ExportConfig, ModelSource, export, load_source
    from tests.export_helpers import nontrivial_

    src = load_source(name, input_size=size)
    src = ModelSource(src.entry, nontrivial_(src.model).eval(),
                      {"trained": False, "source": "random init, non-trivial BatchNorm"})
    row = {"model": name, "target": target, "precision": precision,
           "input_size": src.entry.input_size, "options": options,
           "params": sum(p.numel() for p in src.model.parameters())}
    out = work / f"{name}-{target}-{precision}"
    t0 = time.perf_counter()
    try:
        a = export(src, ExportConfig(target=target, precision=precision, output_dir=out,
                                     threads=threads, options=options))
    except DeployError as err:
        row.update(status="error", error=f"{type(err).__name__}: {err}",
                   wall_seconds=round(time.perf_counter() - t0, 2))
        return row
    finally:
        torch.set_num_threads(threads)
    v = a.validation
    row.update(
        status=v["status"], wall_seconds=round(time.perf_counter() - t0, 2),
        conversion_seconds=a.extra["conversion_seconds"],
        size_bytes=a.size_bytes + sum(c["size_bytes"] for c in a.companions),
        max_abs_diff=v["max_abs_diff"], max_rel_diff=v["max_rel_diff"],
        cosine_min=v["cosine_min"], top1_agreement=v["top1_agreement"], images=v["images"],
        op_count=a.extra["op_count"], transpose_count=a.extra["transpose_count"],
        op_histogram=a.extra["op_histogram"], input_layout=a.input.layout,
        rewrites=a.passes[0].get("rewrites"),
    )
    shutil.rmtree(out, ignore_errors=True)
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Export matrix", "",
        f"{meta['date']} on {meta['machine']}; torch/runtime threads {meta['threads']}. "
        "Weights: random init with non-trivial BatchNorm statistics (logits of order 0.1-1). "
        "Validation: 64 real images (ImageNet sample; CIFAR-10 test split for 32x32 nets) vs "
        "PyTorch. Conversion times include tracing and writing; the machine was shared, so "
        "they are indicative.", "",
        "| model | target | prec | options | conv s | size MB | max abs diff | rel | "
        "worst cos | top-1 agr | ops | TRANSPOSE | status |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        opts = ",".join(f"{k}={v}" for k, v in r["options"].items()) or "-"
        if r["status"] == "error":
            lines.append(f"| {r['model']} | {r['target']} | {r['precision']} | {opts} | | | | "
                         f"| | | | | error: {r['error'][:80]} |")
            continue
        lines.append(
            f"| {r['model']} | {r['target']} | {r['precision']} | {opts} | "
            f"{r['conversion_seconds']:.1f} | {r['size_bytes'] / 1e6:.2f} | "
            f"{r['max_abs_diff']:.1e} | {r['max_rel_diff']:.1e} | {r['cosine_min']:.6f} | "
            f"{r['top1_agreement']:.0%} | {r['op_count']} | {r['transpose_count']} | "
            f"{r['status']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from deploy.toolchain import versions

    torch.set_num_threads(args.threads)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or
            platform.machine(), "threads": args.threads, "toolchain": versions()}
    jobs = []
    for name in models(args.models):
        for target in args.targets:
            for precision in args.precisions:
                jobs.append((name, target, precision, {}))
            if target == "tflite" and any(fnmatch.fnmatch(name, g) for g in args.tflite_variants):
                jobs.append((name, target, "fp32", {"nhwc_input": False, "rewrite": False}))
                jobs.append((name, target, "fp32", {"rewrite": False}))
    from edgebase.capabilities import get_target

    jobs = [j for j in jobs if j[2] in get_target(j[1]).precisions]
    rows = []
    stem = Path(args.out)
    if args.resume and Path(f"{stem}.json").exists():
        rows = [r for r in json.loads(Path(f"{stem}.json").read_text())["rows"]
                if r["status"] != "error"]  # errors are tried again
        done = {(r["model"], r["target"], r["precision"], json.dumps(r["options"])) for r in rows}
        jobs = [j for j in jobs if (j[0], j[1], j[2], json.dumps(j[3])) not in done]
    stem.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="export-matrix-") as work:
        for i, (name, target, precision, options) in enumerate(jobs, 1):
            row = one(name, target, precision, args.input_size, options, args.threads,
                      Path(work))
            rows.append(row)
            print(f"[{i}/{len(jobs)}] {name} {target} {precision} {options or ''}: "
                  f"{row['status']} {row.get('conversion_seconds', '')} s, "
                  f"TRANSPOSE {row.get('transpose_count', '-')}", flush=True)
            Path(f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
            Path(f"{stem}.md").write_text(markdown(rows, meta))
    return 0 if all(r["status"] == "passed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
