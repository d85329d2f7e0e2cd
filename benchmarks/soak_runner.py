"""Soak the device runner: ``runner bench`` back to back for N minutes per runtime, watching
resident memory and latency.

    .venv/bin/python benchmarks/soak_runner.py [--minutes 10]
        [--runtimes onnxruntime,litert,openvino,executorch] [--threads 1] [--sample-s 2]
        [--model FILE --runtimes R] [--window-s 60]

The model is a real CIFAR-10 export, ``deploy export shufflenet_v2_x0_5.cifar10 --target T``
for the target each runtime runs (made once into out/soak). Per runtime, one process runs
``device_runners.bench.bench`` -- what ``runner bench FILE --min-time 60`` calls, isolated
check, load, bind and timed loop included -- once a minute, back to back, so a leak in loading
or in inference accumulates in that one process. This script reads that process's resident
memory (VmRSS) every --sample-s seconds from outside and records the p50 of every minute and
the load average at its end. Goals: RSS growth (median of the last minute's samples over the
first minute's) at most 5 %, p50 drift (last minute vs first) at most 5 %. Latency drift is
only meaningful on an otherwise idle machine: the load average is printed beside it.
Results: benchmarks/results/soak_runner.{md,json}. Exit 1 if a goal is missed.
--window-s shortens the "minute" (to check the script quickly); --model soaks another file.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "shufflenet_v2_x0_5.cifar10"
RUNTIMES = ("onnxruntime", "litert", "openvino", "executorch")
GOAL_PCT = 5.0


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


def export(runtime: str, work: Path, log) -> Path:
    """The CIFAR-10 model exported (and validated) for ``runtime``'s target, reused if present."""
    from edgebase.capabilities import TARGETS

    target = next((t for t in TARGETS.values() if t.runtime == runtime), None)
    if target is None:
        raise SystemExit(f"soak_runner: no export target runs on {runtime}")
    folder = work / target.name
    path = folder / target.file_name(MODEL, "fp32")
    if not path.is_file():
        log(f"exporting {MODEL} for {runtime} (deploy export --target {target.name})")
        p = subprocess.run([sys.executable, "-m", "deploy.cli", "export", MODEL, "--target",
                            target.name, "--threads", "1", "--output", str(folder)],
                           cwd=REPO, env=_env(), capture_output=True, text=True)
        if p.returncode or not path.is_file():
            tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"deploy export --target {target.name} failed: {tail}")
    return path


# ---- the soaked process -----------------------------------------------------------------
def child(model: str, runtime: str, minutes: int, threads: int, window_s: float) -> int:
    """One ``bench`` of a minute after another; a JSON line after each."""
    from device_runners.bench import bench

    for minute in range(1, minutes + 1):
        r = bench(model, runtime=runtime, threads=threads, warmup=5, min_time=window_s,
                  isolate=True)
        print(json.dumps({"minute": minute, "p50_ms": r.p50_ms, "mean_ms": r.mean_ms,
                          "p90_ms": r.p90_ms, "runs": r.runs, "load_avg": os.getloadavg()[0],
                          "inference_precision": r.inference_precision,
                          "runtime_version": r.runtime_version}), flush=True)
    return 0


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def soak(path: Path, runtime: str, args, bar) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(path), "--runtimes",
           runtime, "--minutes", str(args.minutes), "--threads", str(args.threads),
           "--window-s", str(args.window_s)]
    err_file = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty runtime never blocks
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=err_file, text=True)
    t0 = time.monotonic()
    samples, minutes, edges = [], [], [0.0]
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], args.sample_s)
        rss = _rss_mb(proc.pid)
        if rss is not None:
            samples.append((round(time.monotonic() - t0, 2), round(rss, 1)))
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            minutes.append(json.loads(line))
            edges.append(time.monotonic() - t0)
            bar.update()
    proc.wait()
    err_file.seek(0)
    err = err_file.read()
    err_file.close()
    if proc.returncode or len(minutes) != args.minutes:
        tail = (err.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"runtime": runtime, "model": str(path), "error": tail}
    for m, lo, hi in zip(minutes, edges, edges[1:]):
        inside = [r for t, r in samples if lo <= t <= hi]
        m["rss_median_mb"] = statistics.median(inside) if inside else None
        m["rss_max_mb"] = max(inside) if inside else None
        m["rss_samples"] = len(inside)
    first, last = minutes[0], minutes[-1]
    growth = 100 * (last["rss_median_mb"] / first["rss_median_mb"] - 1)
    drift = 100 * (last["p50_ms"] / first["p50_ms"] - 1)
    return {"runtime": runtime, "model": str(path.relative_to(REPO) if path.is_relative_to(REPO)
                                               else path),
            "runtime_version": first["runtime_version"],
            "inference_precision": first["inference_precision"], "threads": args.threads,
            "minutes": minutes, "rss_samples": samples,
            "rss_growth_pct": round(growth, 2), "p50_drift_pct": round(drift, 2),
            "rss_ok": abs(growth) <= GOAL_PCT if args.minutes > 1 else None,
            "p50_ok": abs(drift) <= GOAL_PCT if args.minutes > 1 else None,
            "load_avg_max": max(m["load_avg"] for m in minutes)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


SAME = ("minutes", "window_s", "threads", "sample_s", "model")


def kept_rows(args, runtimes: list[str]) -> list[dict]:
    """The previous report's rows of the runtimes not soaked now, when it soaked with the same
    settings; each carries the date and command of its own run."""
    path = args.out.with_suffix(".json")
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    now = {"minutes": args.minutes, "window_s": args.window_s, "threads": args.threads,
           "sample_s": args.sample_s, "model": str(args.model) if args.model else
           f"{MODEL} (CIFAR-10, 32x32) as exported by deploy export"}
    if any(old.get(k) != now[k] for k in SAME):
        return []
    return [{"date": old.get("date"), "command": old.get("command"), **x}
            for x in old.get("runtimes", []) if x.get("runtime") not in runtimes]


def markdown(r: dict) -> str:
    cores = r["cpu"]["cores"]
    lines = ["# Runner soak", "",
             f"`{r['command']}` on {r['cpu']['model']} ({r['cpu']['tag']}, {cores} cores), "
             f"{r['date']}; model {r['model']}; "
             f"{r['minutes']} minutes per runtime, {r['threads']} thread(s), RSS of the runner "
             f"process sampled every {r['sample_s']} s. Each minute is one `runner bench "
             f"--min-time {r['window_s']:g}` (device_runners.bench.bench: isolated check, "
             "load, timed loop) in the same process. Goals: RSS growth and p50 drift, last "
             f"minute vs first, at most {GOAL_PCT:.0f} %.", ""]
    earlier = [x for x in r["runtimes"] if x.get("command") not in (None, r["command"])]
    if earlier:
        lines += ["Rows from earlier runs with the same settings: " + "; ".join(
            f"{x['runtime']}: `{x['command']}`" for x in earlier) + ".", ""]
    if r["window_s"] != 60:
        lines += [f"A minute here lasts {r['window_s']:g} s (--window-s): a check of the "
                  "script, not a soak.", ""]
    if r["minutes"] < 2:
        lines += ["One minute only: first and last minute are the same, so growth and drift "
                  "are not measured (a check of the script, not a soak).", ""]
    lines += ["| runtime | measured (UTC) | minutes | p50 first ms | p50 last ms | p50 drift | "
              "RSS first MB | RSS last MB | RSS growth | max load avg | verdict |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for x in r["runtimes"]:
        if "error" in x:
            lines.append(f"| {x['runtime']} | | - | | | | | | | | not run: {x['error']} |")
            continue
        f, la = x["minutes"][0], x["minutes"][-1]

        def verdict(ok, what):
            return f"{what} n/a" if ok is None else f"{what} {'PASS' if ok else 'FAIL'}"
        loaded = " (under load)" if x["load_avg_max"] > cores else ""
        lines.append(
            f"| {x['runtime']} {x['runtime_version']} | {(x.get('date') or r['date'])[:16]} | "
            f"{len(x['minutes'])} | "
            f"{f['p50_ms']:.3f} | {la['p50_ms']:.3f} | {x['p50_drift_pct']:+.1f} % | "
            f"{f['rss_median_mb']:.1f} | {la['rss_median_mb']:.1f} | "
            f"{x['rss_growth_pct']:+.1f} % | {x['load_avg_max']:.2f} | "
            f"{verdict(x['rss_ok'], 'RSS')}, {verdict(x['p50_ok'], 'p50')}{loaded} |")
    lines += ["", "Per minute (p50 ms / runs / RSS median MB / load average at the minute's end):",
              ""]
    for x in r["runtimes"]:
        if "error" in x:
            continue
        per = "; ".join(f"{m['minute']}: {m['p50_ms']:.3f} / {m['runs']} / "
                        f"{m['rss_median_mb']:.1f} / {m['load_avg']:.2f}" for m in x["minutes"])
        lines.append(f"- {x['runtime']}: {per}")
    lines += ["", f"Load average above {cores} (the core count) means other work shared the "
              "cores: latency drift then reflects that work, not the runner."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=int, default=10, help="minutes per runtime (default 10)")
    p.add_argument("--runtimes", default=",".join(RUNTIMES),
                   help=f"comma-separated, of: {', '.join(RUNTIMES)}")
    p.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    p.add_argument("--sample-s", type=float, default=2.0, help="seconds between RSS samples")
    p.add_argument("--work", type=Path, default=REPO / "out" / "soak",
                   help="exported model files (default out/soak)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "soak_runner",
                   help="results path without suffix (.md and .json are written)")
    p.add_argument("--model", type=Path, help="soak this model file instead of the CIFAR-10 "
                   "export (with one --runtimes entry that reads it)")
    p.add_argument("--window-s", type=float, default=60.0, help="seconds in a 'minute' "
                   "(default 60; shorter only to check the script)")
    p.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        p.error(f"unknown runtime(s) {', '.join(bad) or '(none)'}; valid: {', '.join(RUNTIMES)}")
    if args.minutes < 1 or args.threads < 1 or args.sample_s <= 0 or args.window_s <= 0:
        p.error("--minutes and --threads must be at least 1, --sample-s and --window-s positive")
    if args.model and (len(runtimes) != 1 or not args.model.is_file()):
        p.error("--model needs an existing file and exactly one --runtimes entry")
    if args.child:
        return child(args.child, runtimes[0], args.minutes, args.threads, args.window_s)

    from tqdm import tqdm

    from device_runners import sysinfo

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    cpu = sysinfo.cpu_info()
    t_start = time.time()
    results = []
    bar = tqdm(total=args.minutes * len(runtimes), unit="min", desc="soak", dynamic_ncols=True)
    for runtime in runtimes:
        bar.set_postfix(runtime=runtime)
        try:
            path = args.model.resolve() if args.model else export(runtime, args.work, log)
        except RuntimeError as e:
            results.append({"runtime": runtime, "error": str(e)})
            bar.update(args.minutes)
            continue
        results.append({**soak(path, runtime, args, bar), "date": _now(),
                        "command": "benchmarks/soak_runner.py " + shlex.join(sys.argv[1:])})
    bar.close()
    # runtimes soaked earlier with the same settings stay in the report (each row says when)
    results = kept_rows(args, runtimes) + results
    report = {"what": "runner bench back to back in one process per runtime: RSS and p50 per "
                      "minute", "command": "benchmarks/soak_runner.py " + shlex.join(sys.argv[1:]),
              "date": _now(),
              "cpu": {"tag": sysinfo.cpu_tag(cpu), "model": cpu.model, "cores": cpu.cores},
              "model": str(args.model) if args.model else
              f"{MODEL} (CIFAR-10, 32x32) as exported by deploy export",
              "minutes": args.minutes, "window_s": args.window_s, "threads": args.threads,
              "sample_s": args.sample_s,
              "goal_pct": GOAL_PCT, "wall_s": round(time.time() - t_start, 1),
              "runtimes": results}
    from edgebase.files import write_text_atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    write_text_atomic(args.out.with_suffix(".md"), text)
    print(text)
    missed = [x["runtime"] for x in results
              if "error" in x or x.get("rss_ok") is False or x.get("p50_ok") is False]
    log(f"wrote {args.out.with_suffix('.md')} and .json"
        + (f"; goals missed or not run: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
