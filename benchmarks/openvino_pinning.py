"""Where does OpenVINO's CPU pinning put time on a host whose cores are shared?

    python benchmarks/openvino_pinning.py [MODEL.xml] [--runs N] [--rounds R] [--out STEM]

By default the CPU plugin pins the calling thread to one core for each inference
(sched_setaffinity before, the old mask restored after). The same IR is compiled twice, with
ENABLE_CPU_PINNING on and off (1 thread, f32, performance counters on; afresh each round),
and the two requests are run alternately, run by run, so a burst of other work hits both. Per setting and round: the
request's latency, the calling thread's CPU time (the rest is time off the CPU; taken around
the Python call, it can exceed the latency by a few tens of microseconds), and the sum
of the nodes' counters over the round (running means in whole microseconds, differenced:
device_runners.backends.openvino); latency - node sum is time between operators.
MODEL defaults to the ShuffleNetV2 x1.0 IR that `deploy guidelines` profiles
(out/guidelines/layers/openvino/shufflenet_v2_x1_0.xml). Writes STEM.json and STEM.md
(default benchmarks/results/openvino_pinning_<cpu>).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_MODEL = ROOT / "out" / "guidelines" / "layers" / "openvino" / "shufflenet_v2_x1_0.xml"
WARMUP = 3


def measure(path: Path, runs: int, rounds: int) -> list[dict]:
    import openvino as ov

    from device_runners.backends.openvino import OpenVINOBackend, counters, window_total_us

    core = ov.Core()
    model = core.read_model(str(path))
    feeds = OpenVINOBackend(path, threads=1).example(batch=1)
    out = []
    for r in range(rounds):
        # compiled afresh per round: a counter is a running mean in whole microseconds, so a
        # window far from compilation is known only to within (runs so far) us per node
        requests = {}
        for pin in (True, False):
            compiled = core.compile_model(model, "CPU", {
                "PERF_COUNT": True, "INFERENCE_NUM_THREADS": 1,
                "INFERENCE_PRECISION_HINT": ov.Type.f32, "ENABLE_CPU_PINNING": pin})
            request = compiled.create_infer_request()
            for i, x in enumerate(feeds.values()):
                request.set_input_tensor(i, ov.Tensor(x))
            for _ in range(WARMUP):
                request.infer()
            requests[pin] = (compiled, request, counters(request), [], [])
        load = os.getloadavg()[0]
        for _ in range(runs):  # alternating run by run
            for _, request, _, lat, cpu in requests.values():
                t = time.thread_time()
                request.infer()
                cpu.append((time.thread_time() - t) * 1e3)
                lat.append(request.latency)
        for pin, (_, request, before, lat, cpu) in requests.items():
            after = counters(request)
            nodes = sum(window_total_us(before.get(n, (0, ""))[0], WARMUP, m, WARMUP + runs)
                        for n, (m, _) in after.items()) / 1e3 / runs
            out.append({"round": r + 1, "pinning": pin, "runs": runs,
                        "latency_ms": float(np.mean(lat)), "thread_cpu_ms": float(np.mean(cpu)),
                        "node_sum_ms": nodes, "between_ms": float(np.mean(lat)) - nodes,
                        "load": max(load, os.getloadavg()[0])})
    return out


def markdown(report: dict) -> str:
    from deploy.guidelines_report import markdown_table

    rows = [[str(r["round"]), "on" if r["pinning"] else "off", f"{r['latency_ms']:.2f}",
             f"{r['thread_cpu_ms']:.2f}", f"{r['latency_ms'] - r['thread_cpu_ms']:.2f}",
             f"{r['node_sum_ms']:.2f}", f"{r['between_ms']:.2f}",
             f"{100 * r['node_sum_ms'] / r['latency_ms']:.1f}%", f"{r['load']:.2f}"]
            for r in report["rounds"]]
    means = []
    for pin in (True, False):
        rs = [r for r in report["rounds"] if r["pinning"] == pin]
        means.append(f"pinning {'on' if pin else 'off'}: latency "
                     f"{np.mean([r['latency_ms'] for r in rs]):.2f} ms, off CPU "
                     f"{np.mean([r['latency_ms'] - r['thread_cpu_ms'] for r in rs]):.2f} ms, "
                     f"between operators {np.mean([r['between_ms'] for r in rs]):.2f} ms")
    return "\n".join([
        f"# OpenVINO CPU pinning on a shared host ({report['cpu_tag']})", "",
        f"- command: `{report['command']}`",
        f"- run: {report['started']}; machine: {report['cpu']}; openvino {report['openvino']}",
        f"- model: {report['model']} (fp32, batch 1, 1 thread, performance counters on); "
        f"compiled afresh per round, {report['warmup']} warm-up runs, then {report['runs']} "
        f"runs of each setting, alternating run by run", "",
        markdown_table(["round", "pinning", "latency ms", "thread CPU ms", "off CPU ms",
                        "node sum ms", "between operators ms", "nodes / latency", "load"],
                       rows), "", f"Mean over the rounds: {'; '.join(means)}.", ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: no such IR (run `deploy guidelines --layers "
                         f"shufflenet_v2_x1_0 --target openvino ...` first, or name one)")
    import openvino as ov

    from device_runners import sysinfo
    from edgebase.cli_flags import write_json
    from edgebase.files import write_text_atomic

    cpu = sysinfo.cpu_info()
    tag = sysinfo.cpu_tag(cpu)
    stem = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / \
        f"openvino_pinning_{tag}"
    report = {"command": "python benchmarks/openvino_pinning.py " + " ".join(argv or sys.argv[1:]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "cpu": f"{cpu.model}, {cpu.cores} cores usable, {cpu.isa}", "cpu_tag": tag,
              "openvino": ov.__version__, "model": args.model.name, "warmup": WARMUP,
              "runs": args.runs, "rounds": measure(args.model, args.runs, args.rounds)}
    write_json(report, str(stem) + ".json")
    write_text_atomic(Path(str(stem) + ".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
