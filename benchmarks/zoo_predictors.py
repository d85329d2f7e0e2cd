"""How well do FLOPs, memory access cost and operator count predict latency across the zoo?

    python benchmarks/zoo_predictors.py [REPORT.json] [--out STEM]

REPORT is a `deploy benchmark` JSON of fp32 files at 224x224 (default
benchmarks/results/zoo224/benchmark.json); nothing is timed here, its measured p50s are
reused. Per runtime and thread count, latency is fitted by least squares against each
predictor alone (latency = a * x + b) and the R^2 of each fit is reported, with the Spearman
rank correlation. Predictors come from zoo.facts on the same architectures: MACs ("FLOPs"),
memory access cost (ShuffleNet V2's MAC, BN and activations fused), and operator count (the
layers that cost anything: convolutions, linear, pooling and the element-wise / data-movement
ops; fused BN and activations excluded). Writes STEM.json, STEM.md and STEM.png (default
benchmarks/results/zoo_predictors_<cpu>).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
PREDICTORS = {"macs": "MACs (FLOPs)", "mac_cost": "memory access cost", "op_count": "op count"}


def facts_of(name: str) -> dict[str, int]:
    from deploy.export import load_source
    from zoo.facts import model_facts

    src = load_source(name)
    f = model_facts(src.model, src.entry.input_size)
    return {"macs": f.macs, "mac_cost": f.mac_cost,
            "op_count": sum(1 for l in f.layers if l.macs or l.mac_cost)}


def r2(x: np.ndarray, y: np.ndarray) -> float:
    a, b = np.polyfit(x, y, 1)
    resid = y - (a * x + b)
    return float(1 - (resid ** 2).sum() / ((y - y.mean()) ** 2).sum())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def analyse(report: dict) -> dict:
    models = [m["name"] for m in report["models"] if "error" not in m]
    facts = {m: facts_of(m) for m in models}
    fits = []
    for target in report["config"]["targets"]:
        for threads in map(str, report["config"]["threads"]):
            pts = [(c["model"], c["latency"][threads]["p50_ms"],
                    bool(c["latency"][threads].get("loaded"))) for c in report["cells"]
                   if c["target"] == target and c["precision"] == "fp32"
                   and c["status"] == "ok" and threads in (c.get("latency") or {})
                   and not c.get("precision_hint")]
            if len(pts) < 3:
                continue
            y = np.array([p[1] for p in pts])
            row = {"target": target, "threads": int(threads), "models": len(pts),
                   "points": [{"model": m, "p50_ms": ms, "loaded": ld, **facts[m]}
                              for m, ms, ld in pts]}
            for key in PREDICTORS:
                x = np.array([facts[m][key] for m, _, _ in pts], dtype=np.float64)
                row[key] = {"r2": r2(x, y), "spearman": spearman(x, y)}
            fits.append(row)
    return {"source": report.get("command"), "measured": report.get("started"),
            "machine": report.get("machine"), "facts": facts, "fits": fits}


def markdown(result: dict, source: Path, png: str) -> str:
    m = result["machine"] or {}
    cpu = m.get("cpu", {})
    load = m.get("load_average_start")
    lines = ["# Zoo at 224x224: how well FLOPs, memory access cost and op count predict latency",
             "", f"- latencies reused from `{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source}`"
             f" (`{result['source']}`, measured {result['measured']}"
             + (f", load average at start {' / '.join(f'{x:.2f}' for x in load)}" if load else "")
             + f"); CPU {cpu.get('model', '?')}, {cpu.get('cores', '?')} cores shared",
             "- fit: latency = a * predictor + b per runtime and thread count; R^2 of the fit, "
             "Spearman rank correlation in brackets; predictors from zoo.facts", "",
             "| target | threads | models | " + " | ".join(f"R² {v}" for v in PREDICTORS.values())
             + " |", "|---|---|---|" + "---|" * len(PREDICTORS)]
    for f in result["fits"]:
        lines.append(f"| {f['target']} | {f['threads']} | {f['models']} | " + " | ".join(
            f"{f[k]['r2']:.2f} ({f[k]['spearman']:.2f})" for k in PREDICTORS) + " |")
    best = {}
    for f in result["fits"]:
        k = max(PREDICTORS, key=lambda k: f[k]["r2"])
        best[k] = best.get(k, 0) + 1
    lines += ["", "Best single predictor (highest R²) in "
              + ", ".join(f"{n} of {len(result['fits'])} fits: {PREDICTORS[k]}"
                          for k, n in sorted(best.items(), key=lambda kv: -kv[1])) + ".", "",
              "| model | MMAC | MAC cost (M) | ops |", "|---|---|---|---|"]
    for name, fa in result["facts"].items():
        lines.append(f"| {name} | {fa['macs'] / 1e6:.0f} | {fa['mac_cost'] / 1e6:.2f} | "
                     f"{fa['op_count']} |")
    lines += ["", f"![latency vs predictors]({png})", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = [f for f in result["fits"] if f["threads"] == min(x["threads"] for x in result["fits"])]
    fig, axes = plt.subplots(1, len(PREDICTORS), figsize=(5 * len(PREDICTORS), 4.2))
    for ax, (key, label) in zip(axes, PREDICTORS.items()):
        for f in fits:
            x = [p[key] for p in f["points"]]
            y = [p["p50_ms"] for p in f["points"]]
            ax.scatter(x, y, s=18, label=f"{f['target']} (R² {f[key]['r2']:.2f})")
            a, b = np.polyfit(np.array(x, float), np.array(y), 1)
            xs = np.linspace(min(x), max(x), 20)
            ax.plot(xs, a * xs + b, linewidth=0.8)
        for p in fits[0]["points"]:
            ax.annotate(p["model"].replace("mobilenet", "mnet").replace("shufflenet", "snet"),
                        (p[key], p["p50_ms"]), fontsize=6, alpha=0.7)
        ax.set_xlabel(label)
        ax.set_ylabel(f"p50 ms, batch 1, {fits[0]['threads']} thread")
        ax.legend(fontsize=7)
    fig.suptitle("Zoo at 224x224: latency against three predictors (one line per runtime)",
                 fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main(argv=None) -> int:
    from device_runners.sysinfo import cpu_tag
    from edgebase.files import write_text_atomic

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", nargs="?", default=str(RESULTS / "zoo224" / "benchmark.json"))
    p.add_argument("--out", help="output stem (default benchmarks/results/zoo_predictors_<cpu>)")
    args = p.parse_args(argv)
    source = Path(args.report)
    if not source.is_file():
        print(f"zoo_predictors: {source}: no such report (a `deploy benchmark` JSON)",
              file=sys.stderr)
        return 2
    report = json.loads(source.read_text())
    result = analyse(report)
    stem = Path(args.out) if args.out else RESULTS / f"zoo_predictors_{cpu_tag()}"
    png = stem.with_suffix(".png")
    plot(result, png)
    write_text_atomic(stem.with_suffix(".json"), json.dumps(result, indent=2) + "\n")
    write_text_atomic(stem.with_suffix(".md"), markdown(result, source.resolve(), png.name))
    print(f"wrote {stem}.json, .md, .png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
