"""PNG plots of a `deploy guidelines` report (matplotlib, Agg backend).

- guideline curves: per guideline, each row's latency relative to the guideline's baseline
  row (1.0 = as fast), one line per runtime x precision at the fewest threads, the paper's
  ARM and GPU as dashed lines;
- per-layer time vs MACs (log-log), a panel per model x runtime, coloured by op class;
- share of time by op class, a bar per model x runtime.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.benchmark_plots import _plt

CLASS_COLOURS = {"conv": "tab:blue", "depthwise": "tab:cyan", "data movement": "tab:orange",
                 "element-wise": "tab:red", "pool": "tab:green", "linear": "tab:purple",
                 "other": "tab:gray", "between operators": "lightgray"}


def write_plots(report: dict[str, Any], folder: Path, stem: str) -> dict[str, str]:
    folder = Path(folder)
    out = {}
    if any(c.get("latency") for c in report["cells"]):
        out["curves"] = str(_curves(report, folder / f"{stem}_curves.png"))
    ok = [r for r in report.get("layers") or [] if r.get("status") == "ok"]
    if ok:
        out["layers_scatter"] = str(_scatter(ok, folder / f"{stem}_layers_time_vs_macs.png"))
        out["layers_share"] = str(_shares(ok, folder / f"{stem}_layers_share.png"))
    return out


def _save(fig, path: Path) -> Path:
    from edgebase.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def _curves(report: dict[str, Any], path: Path) -> Path:
    from deploy.guidelines_report import measured

    plt = _plt()
    guidelines = report["config"]["guidelines"]
    scale = report["config"]["scales"][-1]
    threads = str(min(report["config"]["threads"]))
    fig, axes = plt.subplots(1, len(guidelines), figsize=(4.2 * len(guidelines), 3.8),
                             squeeze=False)
    cols = [c for c in measured(report) if c[2] == threads]
    for ax, g in zip(axes[0], guidelines):
        rows = [v for v in report["variants"] if v["guideline"] == g and v["scale"] == scale]
        base = next(v for v in rows if v["baseline"])
        x = list(range(len(rows)))
        for key, label, style in (("paper_arm_images_per_s", "paper ARM", "k--"),
                                  ("paper_gpu_batches_per_s", "paper GPU", "k:")):
            ax.plot(x, [base[key] / v[key] for v in rows], style, label=label)
        for target, precision, _ in cols:
            ys = []
            for v in rows:
                cell = next((c for c in report["cells"] if c["variant"] == v["key"] and
                             c["target"] == target and c["precision"] == precision
                             and c["status"] == "ok"), None)
                b = next((c for c in report["cells"] if c["variant"] == base["key"] and
                          c["target"] == target and c["precision"] == precision
                          and c["status"] == "ok"), None)
                lat = (cell or {}).get("latency", {}).get(threads)
                blat = (b or {}).get("latency", {}).get(threads)
                ys.append(lat["p50_ms"] / blat["p50_ms"] if lat and blat else float("nan"))
            ax.plot(x, ys, "o-" if precision == "fp32" else "^-", label=f"{target} {precision}")
        ax.axhline(1.0, color="gray", linewidth=0.6)
        ax.set_xticks(x)
        ax.set_xticklabels([v["row"].replace("-fragment", "f").replace(", ", "\n") for v in rows],
                           fontsize=7, rotation=30, ha="right")
        ax.set_title(f"{g} (x{scale}, {threads} thread)", fontsize=9)
        ax.set_ylabel("latency / baseline row (1 = as fast)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    from deploy.guidelines_report import device_address, timing_tag

    where = device_address(report)
    fig.suptitle(f"ShuffleNet V2 guidelines at equal FLOPs on {timing_tag(report)}"
                 + (f" ({where})" if where else "") + ": "
                 f"relative latency per row (above 1 = slower than the guideline's choice)",
                 fontsize=9)
    return _save(fig, path)


def _scatter(records, path: Path) -> Path:
    from deploy.benchmark_plots import readable_log_axis

    plt = _plt()
    n = len(records)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.9 * rows), squeeze=False)
    for ax, r in zip(axes.flat, records):
        kind_of = {}
        for op in r["ops"]:
            if op.get("layer") and op["class"] != "between operators":  # colour by operator
                kind_of.setdefault(op["layer"], op["class"])
        for cls, colour in CLASS_COLOURS.items():
            pts = [(l["macs"], l["ms"]) for l in r["layers"]
                   if l["macs"] > 0 and l["ms"] > 0 and kind_of.get(l["name"]) == cls]
            if pts:
                ax.scatter(*zip(*pts), s=14, color=colour, label=cls, alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        readable_log_axis(ax, "y")
        rr = r["log_time_vs_log_macs_r"]
        ax.set_title(f"{r['model']} on {r['runtime']}" + (f" (r = {rr:.2f})" if rr else ""),
                     fontsize=9)
        ax.set_xlabel("MACs of the layer", fontsize=8)
        ax.set_ylabel("ms per inference", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.4)
    fig.suptitle("Per-layer time vs FLOPs (log-log): layers with equal MACs differ in time "
                 "by op class", fontsize=9)
    return _save(fig, path)


def _shares(records, path: Path) -> Path:
    from deploy.layer_profile import CLASSES

    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(records)), 4.4))
    labels = [f"{r['model'].replace('_', ' ')}\n{r['runtime']}" for r in records]
    bottom = [0.0] * len(records)
    for cls in CLASSES:
        vals = [100 * r["by_class_share"].get(cls, 0.0) for r in records]
        ax.bar(labels, vals, bottom=bottom, color=CLASS_COLOURS[cls], label=cls)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("% of wall time per inference")
    ax.tick_params(axis="x", labelsize=7, labelrotation=15)
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title("Where the time goes: convolutions (what FLOPs count) vs everything else "
                 "(LiteRT: operators timed alone)", fontsize=9)
    return _save(fig, path)
