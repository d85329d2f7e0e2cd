"""aarch64 parity: the same files and images on the emulated aarch64 board and on this host.

    .venv/bin/python benchmarks/aarch64_parity.py [--release DIR] [--limit 1000] [--cpu NAME]

Builds (or takes) a `deploy release` of shufflenet_v2_x0_5.cifar10 for TFLite and ONNX, fp32
and int8, starts `deploy device emulate aarch64`, and for every file runs `deploy device eval
--outputs` there and `runner eval --outputs` here on the same CIFAR-10 test images: top-1 of
both, the share of images with the same top-1 class, and max |Δ score| (for int8 TFLite files
also in output quantization steps). Writes benchmarks/results/aarch64_parity.{json,md}.

Latencies are not compared: the board's are QEMU's (reported, marked emulated), not a board's.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deploy.cli import main as deploy  # noqa: E402
from device_runners import sysinfo  # noqa: E402
from device_runners.evaluate import evaluate  # noqa: E402
from tests.ssh_board import EmulatedBoard  # noqa: E402
from tests.runner_models import output_step  # noqa: E402

MODEL = "shufflenet_v2_x0_5.cifar10"
DATA = Path(os.environ.get("EDGEDEPLOY_DATA", REPO.parent / "shared" / "data")) / "cifar10.zip"


def build_release(out: Path, limit: int) -> Path:
    argv = ["release", MODEL, "--target", "tflite,onnx", "--int8", "--calib", str(DATA),
            "--data", str(DATA), "--limit", str(limit), "--bench-runs", "3", "--threads", "1",
            "--output", str(out)]
    if deploy(argv) != 0:
        sys.exit("deploy release failed")
    return next(p for p in out.iterdir() if (p / "manifest.json").is_file())  # not build/


def measure(board: EmulatedBoard, model: Path, limit: int, work: Path, remote: Path) -> dict:
    arm_npz, arm_json = work / f"{model.name}.arm.npz", work / f"{model.name}.arm.json"
    bench_json = work / f"{model.name}.bench.json"
    common = ["--threads", "1", "--no-isolate"]
    if deploy(["device", "bench", str(model), *board.flags(remote), "--runs", "10",
               "--warmup", "2", *common, "--json", str(bench_json)]) != 0:
        sys.exit(f"device bench {model.name} failed")
    if deploy(["device", "eval", str(model), "--data", str(DATA), "--limit", str(limit),
               "--no-progress", *common, *board.flags(remote), "--outputs", str(arm_npz),
               "--json", str(arm_json)]) != 0:
        sys.exit(f"device eval {model.name} failed")
    arm = json.loads(arm_json.read_text())
    host = evaluate(model, DATA, limit=limit, threads=1, isolate=False,
                    outputs=work / f"{model.name}.x86.npz")
    a, h = np.load(arm_npz), np.load(work / f"{model.name}.x86.npz")
    assert list(a["names"]) == list(h["names"]), "different images"
    diff = np.abs(a["scores"] - h["scores"])
    step = output_step(model) if model.suffix == ".tflite" else None
    bench = json.loads(bench_json.read_text())
    return {
        "file": model.name, "images": host.images,
        "top1_host": host.top1, "top1_board": arm["top1"],
        "top1_delta_points": arm["top1"] - host.top1,
        "top1_class_agreement": float((a["scores"].argmax(1) == h["scores"].argmax(1)).mean()),
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "output_step": step, "max_diff_steps": float(diff.max() / step) if step else None,
        "inference_precision_board": arm.get("inference_precision"),
        "inference_precision_host": host.inference_precision,
        "runtime_board": f"{arm['runtime']} {arm['runtime_version']}",
        "runtime_host": f"{host.runtime} {host.runtime_version}",
        "emulated_p50_ms": bench["p50_ms"], "emulated": bench.get("emulated"),
        "fingerprint": arm["device"]["fingerprint"],
    }


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "aarch64_parity.json").write_text(json.dumps(results, indent=2) + "\n")
    fp = results["rows"][0]["fingerprint"]
    lines = [
        "# aarch64 parity (emulated board) vs this host",
        "",
        f"- command: `{results['command']}`",
        f"- board: `deploy device emulate aarch64 --cpu {results['cpu']}` — "
        f"{results['rows'][0]['emulated']}; /proc/cpuinfo there: {fp.get('cpu_model')}, CPU part "
        f"{', '.join(fp.get('cpu_parts') or [])}, features {' '.join(fp.get('cpu_flags') or [])}; "
        f"{fp.get('os')}, Python {fp.get('python')}",
        f"- host: {results['host_cpu']}; load average {results['load_start']} at start, "
        f"{results['load_end']} at end (a shared machine: latencies here mean nothing, and "
        "emulated ones never do)",
        f"- data: {results['images']} CIFAR-10 test images (class-balanced, seed 0), the same "
        "on both sides; scores as the accuracy sees them (dequantized for int8 outputs)",
        "",
        "| file | runtime (board / host) | top-1 host % | top-1 board % | Δ points | same top-1 "
        "class % | max abs Δ | in output steps | board ran in |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["rows"]:
        steps = f"{r['max_diff_steps']:.2f}" if r["max_diff_steps"] is not None else "—"
        lines.append(
            f"| {r['file']} | {r['runtime_board']} / {r['runtime_host']} | {r['top1_host']:.2f} "
            f"| {r['top1_board']:.2f} | {r['top1_delta_points']:+.2f} | "
            f"{100 * r['top1_class_agreement']:.2f} | {r['max_abs_diff']:.3g} | {steps} | "
            f"{r['inference_precision_board']} |")
    lines += ["", "Emulated p50 latency (QEMU on this host, 1 thread; says only that the file "
              "runs, not how fast a board is): " + ", ".join(
                  f"{r['file']} {r['emulated_p50_ms']:.1f} ms" for r in results["rows"]), ""]
    (out / "aarch64_parity.md").write_text("\n".join(lines))


def run(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--release", type=Path, help="a `deploy release` folder of the model "
                   "(default: build one in out/aarch64_parity)")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--cpu", default="neoverse-n1")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    work = REPO / "out" / "aarch64_parity"
    work.mkdir(parents=True, exist_ok=True)
    release = args.release or build_release(work / "release", args.limit)
    files = sorted(p for p in release.iterdir() if p.suffix in (".tflite", ".onnx"))
    load_start = os.getloadavg()
    board = EmulatedBoard("--cpu", args.cpu)
    try:
        from deploy.device.wheels import host_cache

        remote = host_cache() / "emulated-aarch64"  # shared with the tests: installed once
        rows = [measure(board, f, args.limit, work, remote) for f in files]
    finally:
        board.stop()
    results = {"command": "benchmarks/aarch64_parity.py " + " ".join(argv or sys.argv[1:]),
               "cpu": args.cpu, "images": args.limit,
               "host_cpu": sysinfo.cpu_info().model, "rows": rows,
               "load_start": " / ".join(f"{x:.2f}" for x in load_start),
               "load_end": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
               "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write(results, args.output)
    print((args.output / "aarch64_parity.md").read_text())


if __name__ == "__main__":
    run()
