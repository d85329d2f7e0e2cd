"""ZeroQ's budget: distilled images x iterations against int8 accuracy and time.

    python -m benchmarks.zeroq_budget [--limit N] [--model shufflenet_v2_x0_5.cifar10]

One fp32 TFLite export of the model, then per grid point: distil (timed), quantize with the
TFLite pass exactly as ``deploy export --int8`` does (bias correction included), evaluate the
int8 file with the runner on the CIFAR-10 test images (all 10,000 unless ``--limit``). The
packaged 300 training images are the reference row. Prints a Markdown table row by row, with
the 1-minute load average after each row (the machine is shared: times are upper bounds).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

GRID = ((32, 50), (32, 100), (32, 200), (64, 100))  # (images, iterations per batch of 32)


def main() -> None:
    import torch

    import quant
    from deploy.export import ExportConfig, export, load_source
    from deploy.validate import data_dir
    from device_runners.evaluate import evaluate
    from quant import zeroq
    from deploy.int8_stage import input_range
    from zoo.calib import packaged_set
    from quant.calibration import load_calibration

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="shufflenet_v2_x0_5.cifar10")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=2, help="runtime threads (quantize, eval); "
                   "ZeroQ distils on 1 (quant.zeroq)")
    p.add_argument("--grid", default=",".join(f"{n}x{i}" for n, i in GRID),
                   help="IMAGESxITERATIONS,... (default %(default)s)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the fp32 and packaged-images rows")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    source = load_source(args.model)
    pre = source.entry.preprocess
    data = data_dir() / "cifar10.zip"
    out = Path(tempfile.mkdtemp(prefix="zeroq_budget."))
    fp32 = export(source, ExportConfig(target="tflite", output_dir=out, threads=args.threads))
    ptq = quant.get_pass("tflite")
    options = ptq.make_options(None, "float", input_range=input_range(pre))
    flags = dict(resize=pre.resize, size=pre.crop, mean=list(pre.mean), std=list(pre.std),
                 layout="NHWC", threads=args.threads, limit=args.limit, isolate=False)

    def top1(path) -> float:
        return evaluate(path, data, **flags).top1

    print(f"{args.model}, TFLite int8, top-1 on {args.limit or 'all 10,000'} CIFAR-10 test "
          f"images, {args.threads} threads\n")
    print("| calibration | distil s | quantize s | top-1 % | drop | BN loss start -> mid -> end "
          "| load |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    ref = top1(out / fp32.file)
    if not args.no_reference:
        print(f"| fp32 | - | - | {ref:.2f} | - | - | {os.getloadavg()[0]:.2f} |", flush=True)

    def row(label, calib, seconds, loss):
        dst = out / f"{label.replace(' ', '_')}.int8.tflite"
        t0 = time.perf_counter()
        ptq.quantize(out / fp32.file, dst, calib, options, parent=source.model)
        q = time.perf_counter() - t0
        t = top1(dst)
        print(f"| {label} | {seconds} | {q:.0f} | {t:.2f} | {ref - t:+.2f} | {loss} | "
              f"{os.getloadavg()[0]:.2f} |", flush=True)

    if not args.no_reference:
        packaged = load_calibration(packaged_set("cifar10").path, pre, size=300, split="train")
        row("packaged 300 train images", packaged, "-", "-")
    for n, iterations in (tuple(int(v) for v in cell.split("x")) for cell in args.grid.split(",")):
        t0 = time.perf_counter()
        calib = zeroq.distill(source.model, pre.crop, n=n, iterations=iterations)
        seconds = time.perf_counter() - t0
        s = calib.source
        loss = " + ".join(f"{a:.2f} -> {b:.3f} -> {c:.3f}" for a, b, c in
                          zip(s["initial_loss"], s["midway_loss"], s["final_loss"]))
        row(f"ZeroQ {n} images x {iterations} it", calib, f"{seconds:.0f}", loss)


if __name__ == "__main__":
    main()
