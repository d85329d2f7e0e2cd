"""PNG plots of a ``deploy benchmark`` report (matplotlib, Agg backend: no display needed).

- accuracy vs latency: one panel per target, a point per model and precision, the PyTorch
  eager fp32 point of each model for reference;
- MACs vs latency: measured p50 against MACs (left) and against memory access cost (right),
  one series per target, with the rank correlation of each: how well FLOPs predict speed here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

ACCURACY = "accuracy_vs_latency.png"
MACS = "macs_vs_latency.png"
MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def plot_files(folder: Path) -> dict[str, str]:
    return {"top-1 vs latency per target": str(Path(folder) / ACCURACY),
            "MACs and memory access cost vs measured latency": str(Path(folder) / MACS)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_threads(report: dict[str, Any]) -> str:
    """The thread count the plots show: the fewest (on a shared machine, the least disturbed
    by other work)."""
    return str(min(report["config"]["threads"]))


def _ok(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in report["cells"] if c["status"] == "ok" and c.get("latency")]


def _short(name: str) -> str:
    return name.replace(".cifar10", "").replace("mobilenet_", "mnet_").replace("shufflenet_", "shuf_")


def rank_correlation(x, y) -> float | None:
    """Spearman's rho (ties get the mean rank); None below three points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return None

    def ranks(v):
        order = v.argsort()
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for u in np.unique(v):  # average ties
            r[v == u] = r[v == u].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def plot_accuracy(report: dict[str, Any], path: Path) -> Path | None:
    """Top-1 vs p50 latency (most threads), one panel per target; None without accuracy."""
    cells = [c for c in _ok(report) if c.get("top1") is not None]
    if not cells:
        return None
    plt = _plt()
    top = plot_threads(report)
    targets = [t for t in report["config"]["targets"] if any(c["target"] == t for c in cells)]
    models = [m for m in report["models"] if m.get("torch_top1") is not None]
    colors = {m["name"]: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 4.6), sharey=True,
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        for m in ([] if report.get("device") else models):  # eager ran on the host
            ax.scatter(m["eager"][top]["p50_ms"], m["torch_top1"], marker="x", s=40,
                       color=colors[m["name"]], alpha=0.6)
        for c in (c for c in cells if c["target"] == target):
            x, y = c["latency"][top]["p50_ms"], c["top1"]
            ax.scatter(x, y, marker=MARKERS.get(c["precision"], "D"), s=55,
                       color=colors.get(c["model"], "k"), edgecolor="k", linewidth=0.5)
            if c["precision"] == report["config"]["precisions"][0]:
                ax.annotate(_short(c["model"]), (x, y), textcoords="offset points",
                            xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_title(f"{target} ({top} thread(s))")
        ax.set_xlabel("p50 latency, ms (log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("top-1 %")
    handles = [plt.Line2D([], [], marker=MARKERS.get(p, "D"), linestyle="", color="gray",
                          markeredgecolor="k", label=p)
               for p in report["config"]["precisions"]]
    if not report.get("device"):
        handles.append(plt.Line2D([], [], marker="x", linestyle="", color="gray",
                                  label="PyTorch eager fp32"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(f"top-1 vs latency, batch 1 ({report['models'][0].get('images', '?')} images)"
                 + _on_device(report))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_macs(report: dict[str, Any], path: Path, precision: str = "fp32") -> Path | None:
    """p50 latency vs MACs and vs memory access cost across the models, per target."""
    models = {m["name"]: m for m in report["models"] if m.get("macs")}
    if len(models) < 2:
        return None
    plt = _plt()
    top = plot_threads(report)
    series: dict[str, list[tuple[str, float]]] = {} if report.get("device") else {
        "PyTorch eager": [(n, m["eager"][top]["p50_ms"]) for n, m in models.items()]}
    for c in _ok(report):
        if c["precision"] == precision and c["model"] in models:
            series.setdefault(c["target"], []).append((c["model"], c["latency"][top]["p50_ms"]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), sharey=True)
    for ax, key, label in ((axes[0], "macs", "MACs (millions)"),
                           (axes[1], "mac_cost", "memory access cost (million elements)")):
        for i, (name, points) in enumerate(series.items()):
            xs = [models[n][key] / 1e6 for n, _ in points]
            ys = [ms for _, ms in points]
            rho = rank_correlation(xs, ys)
            tag = f"{name} (ρ={rho:.2f})" if rho is not None else name
            ax.scatter(xs, ys, label=tag, s=40, marker="x" if i == 0 else "o",
                       color=plt.cm.tab10(i), alpha=0.85)
            if i == 1 or (i == 0 and len(series) == 1):
                for (n, _), x, y in zip(points, xs, ys):
                    ax.annotate(_short(n), (x, y), textcoords="offset points", xytext=(4, 3),
                                fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label + ", log scale")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, title="ρ = Spearman rank correlation", title_fontsize=8)
    axes[0].set_ylabel(f"p50 latency, ms, {top} thread(s), batch 1 (log scale)")
    size = sorted({m["input_size"] for m in models.values()})
    fig.suptitle(f"FLOPs are not speed: measured latency vs MACs and memory access cost "
                 f"({precision}, {'/'.join(map(str, size))}×{'/'.join(map(str, size))} input)"
                 + _on_device(report))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _on_device(report: dict[str, Any]) -> str:
    dev = report.get("device")
    return f"\nfiles timed on the device {dev['address']}" if dev else ""


def write_plots(report: dict[str, Any], folder: Path) -> dict[str, str]:
    """Every plot the report has data for; {caption: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = plot_files(folder)
    out = {}
    for (caption, file), fn in zip(files.items(), (plot_accuracy, plot_macs)):
        if fn(report, Path(file)) is not None:
            out[caption] = file
    return out
