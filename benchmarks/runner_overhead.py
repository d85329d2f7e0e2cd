"""Runner overhead: p50 latency from ``device_runners.bench`` vs a bare runtime loop.

For each model, in one process, rounds alternate between (a) a bare loop written straight
against the runtime (LiteRT ``invoke()``, onnxruntime ``run()``, OpenVINO ``infer()``) and
(b) ``device_runners.bench`` (what ``runner bench`` calls, isolation check included). The
overhead is the median over rounds of (runner p50 - bare p50) / bare p50. Optionally the
real ``runner bench`` command is timed too (a separate process, so noisier).

    .venv/bin/python benchmarks/runner_overhead.py [--threads 1] [--runs 300] [--rounds 6]
        [--model PATH ...] [--cli] [--out benchmarks/results/runner_overhead.json]

Without --model: Google's MobileNet V1 0.25 float and uint8 .tflite, the float one converted
to OpenVINO IR, and `deploy export mobilenet_v1_x0_25 --target onnx` (made in a temp folder).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("EDGEDEPLOY_DATA", REPO.parent / "shared" / "data"))


def bare_loop(path: Path, threads: int, x: np.ndarray, warmup: int, runs: int) -> float:
    """p50 ms of the runtime's own call on a fixed input, written without the runner."""
    clock = time.perf_counter_ns
    suffix = path.suffix
    if suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        fn = it.invoke
    elif suffix == ".onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}

        def fn():
            sess.run(None, feed)
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": "f32"})
        req = compiled.create_infer_request()
        req.set_input_tensor(ov.Tensor(x))
        fn = req.infer
    for _ in range(warmup + 1):
        fn()
    times = []
    for _ in range(runs):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return float(np.percentile(np.asarray(times) / 1e6, 50))


def cli_p50(path: Path, threads: int, warmup: int, runs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run([str(Path(sys.executable).with_name("runner")), "bench", str(path),
                        "--threads", str(threads), "--warmup", str(warmup), "--runs", str(runs),
                        "--json", str(out)], check=True, capture_output=True, cwd=REPO)
        return json.loads(out.read_text())["p50_ms"]


def default_models(tmp: Path) -> list[Path]:
    models = [DATA / "models/mobilenet_v1_0.25_224_float.tflite",
              DATA / "models/mobilenet_v1_0.25_224_quant.tflite"]
    import openvino as ov

    xml = tmp / "mobilenet_v1_0.25_224_float.xml"
    ov.save_model(ov.convert_model(str(models[0])), str(xml), compress_to_fp16=False)
    models.append(xml)
    deploy = Path(sys.executable).with_name("deploy")
    proc = subprocess.run([str(deploy), "export", "mobilenet_v1_x0_25", "--target", "onnx",
                           "--output", str(tmp)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode == 0:
        models.append(tmp / "mobilenet_v1_x0_25.onnx")
    else:
        print(f"skipping ONNX: deploy export failed: {proc.stderr.strip()[-300:]}", file=sys.stderr)
    return models


def measure(path: Path, args) -> dict:
    from device_runners import load
    from device_runners.bench import bench

    backend = load(path, threads=args.threads)
    hints = {}
    from deploy.manifest import read_manifest
    from device_runners.backends.base import shape_hints
    art = read_manifest(path)
    if art:
        hints = shape_hints(backend.inputs, art.inputs, art.preprocess)
    x = next(iter(backend.example(seed=0, shapes=hints).values()))
    backend.close()
    bare, runner = [], []
    for r in range(args.rounds):
        order = ("bare", "runner") if r % 2 == 0 else ("runner", "bare")
        for which in order:
            if which == "bare":
                bare.append(bare_loop(path, args.threads, x, args.warmup, args.runs))
            else:
                res = bench(path, threads=args.threads, warmup=args.warmup, runs=args.runs,
                            shape=tuple(x.shape) if any(d < 0 for d in backend.input.shape)
                            else None)
                runner.append(res.p50_ms)
    ratios = [(rn - b) / b for rn, b in zip(runner, bare)]
    row = {"model": path.name, "runtime": res.runtime, "runtime_version": res.runtime_version,
           "input": list(x.shape), "bare_p50_ms": bare, "runner_p50_ms": runner,
           "bare_p50_median_ms": statistics.median(bare),
           "runner_p50_median_ms": statistics.median(runner),
           "overhead_median_pct": 100 * statistics.median(ratios),
           "overhead_per_round_pct": [100 * v for v in ratios]}
    if args.cli:
        cli = [cli_p50(path, args.threads, args.warmup, args.runs) for _ in range(args.rounds)]
        row["cli_p50_ms"] = cli
        row["cli_vs_bare_median_pct"] = 100 * (statistics.median(cli) / row["bare_p50_median_ms"] - 1)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--cli", action="store_true", help="also time the runner command")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks/results/runner_overhead.json")
    args = p.parse_args()
    from device_runners import sysinfo

    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = args.model or default_models(Path(tmp))
        for path in models:
            row = measure(path, args)
            rows.append(row)
            print(f"{row['model']:<40} {row['runtime']:<12} bare p50 {row['bare_p50_median_ms']:.3f} ms"
                  f"  runner p50 {row['runner_p50_median_ms']:.3f} ms  overhead "
                  f"{row['overhead_median_pct']:+.2f}%"
                  + (f"  cli {row['cli_vs_bare_median_pct']:+.2f}%" if args.cli else ""),
                  flush=True)
    result = {
        "what": "p50 latency of device_runners.bench vs a bare runtime loop, same process, "
                "same model and input, rounds interleaved; overhead = median over rounds of "
                "(runner - bare) / bare",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "rounds": args.rounds,
        "cpu": sysinfo.cpu_info().to_dict(), "python": platform.python_version(),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from deploy.files import write_text_atomic
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
