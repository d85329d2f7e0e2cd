"""ZeroQ's budget: distilled images x iterations against int8 accuracy and time.

    python -m benchmarks.zeroq_budget [--limit 2000] [--model shufflenet_v2_x0_5.cifar10]

One fp32 TFLite export of the model, then per grid point: distil (timed), quantize with the
TFLite pass exactly as ``deploy export --int8`` does (bias correction included), evaluate the
int8 file with the runner on ``--limit`` class-balanced CIFAR-10 test images. The packaged
300 training images are the reference row. Prints a Markdown table (with the load average).
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
    from quant.stage import input_range
    from zoo.calib import packaged_set
    from quant.calibration import load_calibration

    p = argparse.ArgumentParser()
    p.add_argument("--model", default="shufflenet_v2_x0_5.cifar10")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
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

    rows = [("fp32", "-", "-", top1(out / fp32.file), "-", "-")]
    packaged = load_calibration(packaged_set("cifar10").path, pre, size=300, split="train")
    sets = [("packaged 300 train images", packaged, 0.0, None)]
    for n, iterations in GRID:
        t0 = time.perf_counter()
        calib = zeroq.distill(source.model, pre.crop, n=n, iterations=iterations)
        s = calib.source
        loss = f"{sum(s['initial_loss']):.2f} -> {sum(s['midway_loss']):.3f} -> " \
               f"{sum(s['final_loss']):.3f}"
        sets.append((f"ZeroQ {n} images x {iterations} it", calib,
                     time.perf_counter() - t0, loss))
    for label, calib, seconds, loss in sets:
        dst = out / f"{label.replace(' ', '_')}.int8.tflite"
        t0 = time.perf_counter()
        ptq.quantize(out / fp32.file, dst, calib, options, parent=source.model)
        q = time.perf_counter() - t0
        rows.append((label, f"{seconds:.0f}", f"{q:.0f}", top1(dst), loss or "-",
                     f"{os.getloadavg()[0]:.2f}"))
    print(f"{args.model}, TFLite int8, top-1 on {args.limit} CIFAR-10 test images, "
          f"{args.threads} threads\n")
    print("| calibration | distil s | quantize s | top-1 % | BN loss start -> mid -> end | load |")
    print("| --- | ---: | ---: | ---: | --- | ---: |")
    for label, d, q, t, loss, load in rows:
        print(f"| {label} | {d} | {q} | {t:.2f} | {loss} | {load} |")


if __name__ == "__main__":
    main()
