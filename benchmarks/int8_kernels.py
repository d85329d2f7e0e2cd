"""Why an int8 file is slower (or faster) than its fp32 parent: time per kernel class.

    python benchmarks/int8_kernels.py DIR [--runs 200] [--threads 1]

DIR holds an export's fp32 and int8 files side by side (``<stem>.onnx`` + ``<stem>.int8.onnx``,
``<stem>.xml`` + ``<stem>.int8.xml``, ``<stem>.tflite`` + ``<stem>.int8.tflite``), e.g. a
``deploy benchmark`` output folder. ONNX Runtime's profiler and OpenVINO's performance counters
give the time of every node; nodes are grouped by operator and, for convolutions, dense vs
depthwise, and OpenVINO also names the kernel it picked (``jit_avx2_I8``, ``ref_any`` ...).
LiteRT's Python API has no per-op timer: its rows list the operators and what stays float.
Writes benchmarks/results/int8_kernels_<stem>.json and .md.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
WARMUP = 10  # runs before the profiled ones (first-run allocations and JIT)


def _input(shape, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random([d if isinstance(d, int) and d > 0 else 1 for d in shape]).astype(dtype)


def onnx_profile(path: Path, runs: int, threads: int) -> dict[str, float]:
    """ms per run for each operator class, from ONNX Runtime's own profiler (optimized graph:
    the kernels that actually ran, after its layout and fusion passes)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "prof")
        so.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        groups = {n.name: next((a.i for a in n.attribute if a.name == "group"), 1)
                  for n in onnx.load(so.optimized_model_filepath).graph.node}
        inp = sess.get_inputs()[0]
        feed = {inp.name: _input(inp.shape)}
        for _ in range(WARMUP + runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["name"][: -len("_kernel_time")], e["args"]["op_name"]].append(e["dur"])
    times: collections.Counter = collections.Counter()
    for (node, op), durations in per_node.items():
        if "Conv" in op:
            op += " depthwise" if groups.get(node, 1) > 1 else " dense"
        times[op] += sum(durations[WARMUP:]) / 1000 / runs  # the warm-up runs left out
    return dict(times.most_common())


def openvino_profile(path: Path, runs: int, threads: int) -> dict[str, float]:
    """ms per run for each (operator, kernel) pair, from OpenVINO's performance counters."""
    import openvino as ov

    core = ov.Core()
    # f32 for the float parts, as the runner runs them (the plugin defaults to bf16 on AMX)
    compiled = core.compile_model(str(path), "CPU", {"PERF_COUNT": "YES",
                                                     "INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    x = _input(list(compiled.inputs[0].get_partial_shape().to_shape()))
    for _ in range(WARMUP):
        req.infer({0: x})
    times: collections.Counter = collections.Counter()
    for _ in range(runs):
        req.infer({0: x})
        for p in req.profiling_info:
            if p.real_time.total_seconds() > 0:
                times[f"{p.node_type} [{p.exec_type}]"] += p.real_time.total_seconds() * 1000 / runs
    return dict(times.most_common())


def tflite_ops(path: Path) -> dict[str, object]:
    """The operator histogram (and what computes in float) from the file's manifest."""
    from edgebase.manifest import read_manifest

    art = read_manifest(path)
    extra = art.extra if art else {}
    return {k: extra.get(k) for k in ("op_histogram", "float_ops", "fully_integer")}


def wall_ms(path: Path, threads: int, runs: int) -> float:
    from device_runners.bench import bench

    return bench(str(path), runs=runs, warmup=max(5, runs // 10), threads=threads).p50_ms


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    fp32 = sorted(f for f in args.folder.iterdir()
                  if f.suffix in (".onnx", ".xml", ".tflite") and ".int8." not in f.name
                  and ".fp16." not in f.name and f.with_name(f"{f.stem}.int8{f.suffix}").exists())
    if not fp32:
        raise SystemExit(f"{args.folder}: no fp32 file with an .int8 sibling")
    stem = fp32[0].stem
    report: dict = {"folder": str(args.folder), "threads": args.threads, "runs": args.runs,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "load": os.getloadavg(), "targets": {}}
    for f in fp32:
        q = f.with_name(f"{f.stem}.int8{f.suffix}")
        row: dict = {"fp32_file": f.name, "int8_file": q.name,
                     "p50_ms": {"fp32": wall_ms(f, args.threads, args.runs),
                                "int8": wall_ms(q, args.threads, args.runs)}}
        if f.suffix == ".onnx":
            row["kernels_ms"] = {"fp32": onnx_profile(f, args.runs, args.threads),
                                 "int8": onnx_profile(q, args.runs, args.threads)}
        elif f.suffix == ".xml":
            row["kernels_ms"] = {"fp32": openvino_profile(f, args.runs, args.threads),
                                 "int8": openvino_profile(q, args.runs, args.threads)}
        else:
            row["int8_graph"] = tflite_ops(q)
        report["targets"][f.suffix.lstrip(".")] = row
        print(f"{f.name}: fp32 {row['p50_ms']['fp32']:.3f} ms, int8 {row['p50_ms']['int8']:.3f} ms",
              file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"int8_kernels_{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"int8_kernels_{stem}.md").write_text(markdown(stem, report))
    print(markdown(stem, report))
    return 0


def markdown(stem: str, r: dict) -> str:
    lines = [f"# int8 vs fp32 per kernel: {stem}", "",
             f"{r['threads']} thread(s), {r['runs']} runs, {r['date']}, load average at start "
             f"{r['load'][0]:.2f}. Kernel times come from each runtime's profiler (which adds "
             "its own overhead); p50 is `runner bench` without the profiler.", ""]
    for target, row in r["targets"].items():
        p50 = row["p50_ms"]
        lines += [f"## {target}: fp32 {p50['fp32']:.3f} ms, int8 {p50['int8']:.3f} ms (p50)", ""]
        if "kernels_ms" in row:
            lines += ["| precision | kernel | ms per run |", "|---|---|---|"]
            for prec in ("fp32", "int8"):
                for name, ms in list(row["kernels_ms"][prec].items())[:8]:
                    lines.append(f"| {prec} | {name} | {ms:.3f} |")
        else:
            g = row["int8_graph"]
            lines.append(f"int8 operators: {g['op_histogram']}; computing in float: "
                         f"{g['float_ops'] or 'none'} (fully integer: {g['fully_integer']}). "
                         "LiteRT's Python API has no per-operator timer.")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
