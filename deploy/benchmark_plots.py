"""PNG plots of a ``deploy benchmark`` report (matplotlib, Agg backend: no display needed).

- accuracy vs latency: one panel per target, a point per model, precision and thread count
  (filled: fewest threads, hollow: the next), the PyTorch eager fp32 points for reference;
- MACs vs latency: measured p50 against MACs (left) and against memory access cost (right),
  one series per target, with the rank correlation of each: how well FLOPs predict speed here;
  a row per thread count.
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


def plot_threads(report: dict[str, Any]) -> list[str]:
    """Every thread count the run timed, fewest first."""
    return [str(t) for t in sorted(report["config"]["threads"])]


def _fill(i: int, color) -> dict[str, Any]:
    """Filled markers for the fewest threads, hollow for the next (a legend entry says so)."""
    return ({"facecolor": color, "edgecolor": "k"} if i == 0 else
            {"facecolor": "none", "edgecolor": color, "linewidth": 1.4})


def readable_log_axis(ax, which: str = "x") -> None:
    """A log axis labelled in plain numbers (0.5, 1, 2, 5, 10) often enough to read values
    off it: 1-2-5 steps over a decade or more, every integer multiple over less, evenly
    spaced ticks over a range too narrow for either. Call after plotting (reads the limits)."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    span = math.log10(hi / lo) if lo > 0 and hi > lo else 0.0
    if span >= 1.0:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    elif span >= 0.4:
        axis.set_major_locator(LogLocator(base=10, subs=tuple(range(1, 10))))
    else:
        axis.set_major_locator(MaxNLocator(5))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _load_note(report: dict[str, Any]) -> str:
    """A second title line when latencies were measured under load (see the report)."""
    from deploy.benchmark import worst_load

    worst = worst_load(report)
    if worst is None:
        return ""
    return (f"\nmeasured under load: 1-min load average up to {worst:.1f} > "
            f"{report['machine']['cpu']['cores']} usable cores, latencies uncertain")


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
    """Top-1 vs p50 latency, one panel per target, every thread count (filled: fewest threads,
    hollow: the next, a line joining one file's points); None without accuracy."""
    cells = [c for c in _ok(report) if c.get("top1") is not None]
    if not cells:
        return None
    plt = _plt()
    threads = plot_threads(report)[:2]  # two styles; more thread counts stay in the table
    targets = [t for t in report["config"]["targets"] if any(c["target"] == t for c in cells)]
    models = [m for m in report["models"] if m.get("torch_top1") is not None]
    colors = {m["name"]: plt.cm.tab10(i % 10) for i, m in enumerate(models)}
    fig, axes = plt.subplots(1, len(targets), figsize=(5.4 * len(targets), 5.0), sharey=True,
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        for m in ([] if report.get("device") else models):  # eager ran on the host
            xs = [m["eager"][t]["p50_ms"] for t in threads if t in m["eager"]]
            ax.plot(xs, [m["torch_top1"]] * len(xs), color=colors[m["name"]], lw=0.6, alpha=0.5)
            for i, t in enumerate(threads):
                if t in m["eager"]:
                    ax.scatter(m["eager"][t]["p50_ms"], m["torch_top1"], marker="X", s=60,
                               **_fill(i, colors[m["name"]]))
        for c in (c for c in cells if c["target"] == target):
            color = colors.get(c["model"], "k")
            xs = [c["latency"][t]["p50_ms"] for t in threads if t in c["latency"]]
            ax.plot(xs, [c["top1"]] * len(xs), color=color, lw=0.6, alpha=0.5)
            for i, t in enumerate(threads):
                if t in c["latency"]:
                    ax.scatter(c["latency"][t]["p50_ms"], c["top1"], s=55,
                               marker=MARKERS.get(c["precision"], "D"), **_fill(i, color))
        ax.set_xscale("log")
        readable_log_axis(ax, "x")
        ax.set_title(target)
        ax.set_xlabel("p50 latency per image, ms (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelleft=True)
    axes[0][0].set_ylabel("top-1 %")
    line = plt.Line2D
    handles = [line([], [], marker=MARKERS.get(p, "D"), linestyle="", color="gray",
                    markeredgecolor="k", label=p) for p in report["config"]["precisions"]]
    if not report.get("device"):
        handles.append(line([], [], marker="X", linestyle="", color="gray",
                            markeredgecolor="k", label="PyTorch eager fp32"))
    for i, t in enumerate(threads):
        handles.append(line([], [], marker="o", linestyle="", label=f"{t} thread(s)",
                            markerfacecolor="gray" if i == 0 else "none",
                            markeredgecolor="k" if i == 0 else "gray"))
    handles += [line([], [], marker="s", linestyle="", color=colors[m["name"]],
                     label=_short(m["name"])) for m in models]
    per_row = 10
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), per_row),
               frameon=False, fontsize=8)
    rows = -(-len(handles) // per_row)
    fig.suptitle(f"top-1 vs latency, batch 1, {' and '.join(threads)} thread(s) "
                 f"({report['models'][0].get('images', '?')} images){_load_note(report)}"
                 + _on_device(report))
    fig.tight_layout(rect=(0, 0.05 * rows + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_macs(report: dict[str, Any], path: Path, precision: str = "fp32") -> Path | None:
    """p50 latency vs MACs and vs memory access cost across the models, per target."""
    models = {m["name"]: m for m in report["models"] if m.get("macs")}
    if len(models) < 2:
        return None
    plt = _plt()
    threads = plot_threads(report)
    fig, grid = plt.subplots(len(threads), 2, figsize=(13, 5.0 * len(threads)), sharey="row",
                             squeeze=False)
    for top, axes in zip(threads, grid):
        _plot_macs_row(plt, axes, report, models, top, precision)
    size = sorted({m["input_size"] for m in models.values()})
    fig.suptitle(f"FLOPs are not speed: measured latency vs MACs and memory access cost "
                 f"({precision}, {'/'.join(map(str, size))}×{'/'.join(map(str, size))} input)"
                 f"{_load_note(report)}" + _on_device(report))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _plot_macs_row(plt, axes, report, models, top: str, precision: str) -> None:
    series: dict[str, list[tuple[str, float]]] = {} if report.get("device") else {
        "PyTorch eager": [(n, m["eager"][top]["p50_ms"]) for n, m in models.items()
                          if top in m.get("eager", {})]}
    for c in _ok(report):
        if c["precision"] == precision and c["model"] in models and top in c["latency"]:
            series.setdefault(c["target"], []).append((c["model"], c["latency"][top]["p50_ms"]))
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
        readable_log_axis(ax, "x")
        readable_log_axis(ax, "y")
        ax.set_xlabel(label + ", log scale")
        ax.set_title(f"{top} thread(s)", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, title="ρ = Spearman rank correlation", title_fontsize=8)
    axes[0].set_ylabel(f"p50 latency, ms, {top} thread(s), batch 1 (log scale)")


def _on_device(report: dict[str, Any]) -> str:
    dev = report.get("device")
    if not dev:
        return ""
    emulated = f" (EMULATED: {dev['emulated']}, not a board's speed)" if dev.get("emulated") else ""
    return f"\nfiles timed on the device {dev['address']}{emulated}"


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
