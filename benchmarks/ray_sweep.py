"""`deploy benchmark` in this process vs on a Ray cluster of NODES nodes on 127.0.0.1: the same
sweep, fresh output folders (nothing reused), the real CLI both times.

Measures the wall time of each, whether accuracy stayed identical, how far each row's p50 on
the cluster is from the local one (latency consistency), every cell's duration and node, and
from those durations a simple model of the wall time on N nodes. Writes
benchmarks/results/ray_sweep.json and .md. All nodes of a loopback cluster share this
machine's cores, so the measured cluster wall time is what one machine gives, not N.

    .venv/bin/python benchmarks/ray_sweep.py [--models ...] [--targets ...] [--limit N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sweep_args(a, out: Path) -> list[str]:
    args = ["benchmark", *a.models, "--target", ",".join(a.targets), "--precisions",
            ",".join(a.precisions), "--threads", a.threads, "--runs", str(a.runs), "--rounds",
            str(a.rounds), "--output", str(out), "--json", str(out / "report.json")]
    if a.limit:
        args += ["--limit", str(a.limit)]
    if a.calib:
        args += ["--calib", a.calib]
    return args


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[float, dict]:
    env = dict(env or os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    load = os.getloadavg()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "deploy.cli", *args], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 1):  # 1: a failed cell, still a report
        raise SystemExit(f"deploy {' '.join(args)} failed:\n{r.stderr[-3000:]}")
    out = Path(args[args.index("--json") + 1])
    return wall, {"report": json.loads(out.read_text()), "load_start": load,
                  "load_end": os.getloadavg(), "exit": r.returncode}


def consistency(local: dict, remote: dict) -> dict:
    """Per row and thread count: cluster p50 / local p50; accuracy equal or not."""
    key = lambda c: (c["model"], c["target"], c["precision"], c.get("precision_hint"))  # noqa: E731
    lrows = {key(c): c for c in local["cells"]}
    ratios, rows, same_acc = [], [], True
    for c in remote["cells"]:
        lc = lrows.get(key(c))
        if not lc or c["status"] != "ok" or lc["status"] != "ok":
            continue
        same_acc &= all(c.get(k) == lc.get(k) for k in ("top1", "agreement"))
        for t, lat in c["latency"].items():
            r = lat["p50_ms"] / lc["latency"][t]["p50_ms"]
            ratios.append(r)
            rows.append({"row": " ".join(str(x) for x in key(c) if x), "threads": t,
                         "local_p50_ms": lc["latency"][t]["p50_ms"],
                         "cluster_p50_ms": lat["p50_ms"], "ratio": r,
                         "local_speedup": lc["latency"][t]["speedup"],
                         "cluster_speedup": lat["speedup"], "node": c["timed_on"]["node"]})
    eager = [{"model": rm["name"], "threads": t, "local_p50_ms": lm["eager"][t]["p50_ms"],
              "cluster_p50_ms": rm["eager"][t]["p50_ms"]}
             for lm, rm in zip(local["models"], remote["models"]) if "eager" in rm
             for t in rm["eager"]]
    return {"accuracy_identical": same_acc, "rows": rows, "eager": eager,
            "ratio_median": statistics.median(ratios) if ratios else None,
            "ratio_min": min(ratios, default=None), "ratio_max": max(ratios, default=None)}


def scaling(remote: dict, cpus: int) -> dict:
    """Cell durations and the modelled wall time on N nodes of ``cpus`` CPUs each:
    max(longest model chain, CPU work / (N x cpus) + timing work / N). Timing cells run only
    on a node free of other cells, so at worst they follow the CPU work."""
    by_kind: dict[str, list[float]] = {}
    for p in remote["cluster"]["placements"]:
        by_kind.setdefault(p["cell"].rsplit(" ", 1)[1], []).append(p["seconds"])
    cpu_work = sum(s for k, v in by_kind.items() if k != "time" for s in v)
    time_work = sum(by_kind.get("time", []))
    chains = {}
    for p in remote["cluster"]["placements"]:
        model = p["cell"].split(" ", 1)[0]
        chains.setdefault(model, {}).setdefault(p["cell"].rsplit(" ", 1)[1], []).append(p["seconds"])
    chain = max((max(c.get("parent", [0]) + [0]) + max(c.get("export", [0]))
                 + max(c.get("evaluate", [0])) + sum(c.get("time", [0]))
                 for c in chains.values()), default=0.0)
    model = {n: max(chain, cpu_work / (n * cpus) + time_work / n) for n in (1, 2, 4, 8, 16, 32)}
    return {"cells": {k: {"count": len(v), "seconds_total": sum(v), "seconds_median":
                          statistics.median(v)} for k, v in by_kind.items()},
            "cpu_work_s": cpu_work, "timing_work_s": time_work, "longest_chain_s": chain,
            "modelled_wall_s": model}


def markdown(res: dict) -> str:
    a, loc, clu = res["args"], res["local"], res["cluster"]
    con, sc = res["consistency"], res["scaling"]
    rep = clu["report"]
    lines = [
        "# Sweep on a Ray cluster vs in one process",
        "",
        f"- command (both, the cluster run adds `--cluster <address>`): `deploy {' '.join(res['command'])}`",
        f"- {'subset of the ' if res['subset_note'] else ''}CIFAR-10 matrix: "
        f"{len(a['models'])} models x {len(a['targets'])} "
        f"targets x {len(a['precisions'])} precisions x threads {a['threads']}, "
        f"{a['limit'] or 'all 10,000'} test images, {a['runs']} timed runs in {a['rounds']} "
        f"rounds" + (f" ({res['subset_note']})" if res["subset_note"] else ""),
        f"- machine: {rep['machine']['cpu']['model']}, {rep['machine']['cpu']['cores']} cores; "
        f"cluster: {a['nodes']} Ray nodes on 127.0.0.1 with {a['cpus']} CPU(s) and one timing "
        f"slot each, all sharing these cores; ray {res['ray']}",
        f"- measured {res['date']}; load average (1/5/15 min) at the start of the local run "
        f"{_load(loc['load_start'])}, of the cluster run {_load(clu['load_start'])}, at its end "
        f"{_load(clu['load_end'])}" + (" (other work shared the machine: see below)"
                                        if max(loc["load_start"][0], clu["load_start"][0])
                                        > rep["machine"]["cpu"]["cores"] else ""),
        "",
        "| run | wall time | cells | retried |",
        "|---|---|---|---|",
        f"| local (this process, one cell at a time) | {loc['wall_s']:.0f} s | "
        f"{len(rep['cells'])} rows | — |",
        f"| Ray, {a['nodes']} nodes on loopback (+{res['cluster_start_s']:.1f} s to start "
        f"the cluster) | {clu['wall_s']:.0f} s | {rep['cluster']['cells']} cells | "
        f"{len(rep['cluster']['retried'])} |",
        "",
        f"Accuracy identical in every row: **{'yes' if con['accuracy_identical'] else 'NO'}**.",
        "",
        f"Latency consistency: cluster p50 / local p50 per row and thread count, median "
        f"{_r(con['ratio_median'])} (range {_r(con['ratio_min'])}–{_r(con['ratio_max'])}).",
        "",
        "| row | threads | local p50 ms | cluster p50 ms | ratio | local speed-up | cluster speed-up | node |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {r['row']} | {r['threads']} | {r['local_p50_ms']:.3f} | {r['cluster_p50_ms']:.3f} "
          f"| {r['ratio']:.2f} | {r['local_speedup']:.1f}× | {r['cluster_speedup']:.1f}× | "
          f"{r['node']} |" for r in con["rows"]),
        "",
        "Cell durations on the cluster (seconds, under the load above):",
        "",
        "| kind | cells | total s | median s |",
        "|---|---|---|---|",
        *(f"| {k} | {v['count']} | {v['seconds_total']:.1f} | {v['seconds_median']:.1f} |"
          for k, v in sc["cells"].items()),
        "",
        "Modelled wall time on N nodes of the same kind ("
        f"{a['cpus']} CPU each; CPU work {sc['cpu_work_s']:.0f} s, timing work "
        f"{sc['timing_work_s']:.0f} s, longest per-model chain {sc['longest_chain_s']:.0f} s):",
        "",
        "| nodes | " + " | ".join(str(n) for n in sc["modelled_wall_s"]) + " |",
        "|---|" + "---|" * len(sc["modelled_wall_s"]),
        "| wall s | " + " | ".join(f"{v:.0f}" for v in sc["modelled_wall_s"].values()) + " |",
        "",
        res["paragraph"],
        "",
    ]
    return "\n".join(lines)


def _load(v) -> str:
    return " / ".join(f"{x:.2f}" for x in v)


def _r(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["squeezenet1_1.cifar10",
                                                   "shufflenet_v2_x0_5.cifar10"])
    p.add_argument("--targets", nargs="+", default=["onnx", "openvino"])
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calib", default=str(REPO.parent / "shared" / "data" / "cifar10.zip"))
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--subset-note", default="a subset: the full matrix twice would take hours "
                   "on two shared cores")
    p.add_argument("--paragraph", default="", help="the scaling paragraph, written after "
                   "reading the numbers")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ray_sweep"))
    p.add_argument("--render", action="store_true", help="measure nothing: rewrite the .md "
                   "from the .json (with --paragraph)")
    a = p.parse_args()
    out = Path(a.out)
    if a.render:
        res = json.loads(out.with_suffix(".json").read_text())
        res["paragraph"] = a.paragraph or res["paragraph"]
        out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
        out.with_suffix(".md").write_text(markdown(res))
        return

    import ray

    from deploy.sweep.loopback import LoopbackCluster

    work = Path(tempfile.mkdtemp(prefix="ray_sweep_"))
    local_wall, local = run_cli(sweep_args(a, work / "local"))
    t0 = time.perf_counter()
    with LoopbackCluster(nodes=a.nodes, cpus=a.cpus) as cluster:
        start = time.perf_counter() - t0
        env = dict(os.environ, **cluster.env)
        clu_wall, clu = run_cli(sweep_args(a, work / "cluster") + ["--cluster", cluster.address],
                                env)
    res = {"args": vars(a), "command": sweep_args(a, Path("OUT")), "ray": ray.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "subset_note": a.subset_note, "paragraph": a.paragraph, "cluster_start_s": start,
           "local": dict(local, wall_s=local_wall), "cluster": dict(clu, wall_s=clu_wall),
           "consistency": consistency(local["report"], clu["report"]),
           "scaling": scaling(clu["report"], a.cpus)}
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(f"local {local_wall:.0f} s, cluster {clu_wall:.0f} s; wrote {out}.json, {out}.md")


if __name__ == "__main__":
    main()
