"""Tables, Markdown, JSON and plots of a ``deploy benchmark`` report (deploy.benchmark).

``python -m deploy.benchmark_report OUT.md REPORT.json...`` joins several reports (e.g. the
trained CIFAR-10 run and the 224x224 zoo latency run) into one Markdown file.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

EAGER = "pytorch eager"


def _ms(v: float | None) -> str:
    return "—" if v is None else (f"{v:.2f}" if v >= 1 else f"{v:.3f}")


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _pct(v: float | None, sign: bool = False) -> str:
    return "—" if v is None else (f"{v:+.2f}" if sign else f"{v:.2f}")


def rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table: per model a PyTorch eager row, then its cells."""
    threads = [str(t) for t in report["config"]["threads"]]
    top = threads[-1]
    head = (["model", "target", "precision", "status", "size", "top-1 %", "Δ top-1",
             "agree %"] + [f"p50/p90 ms @{t}t" for t in threads]
            + [f"speed-up @{t}t" for t in threads] + [f"GMAC/s @{top}t", f"% peak @{top}t", "note"])
    out = []
    for m in report["models"]:
        name = m["name"]
        if "error" in m:
            continue  # its cells carry the error
        eager = m["eager"]
        gm = eager_rates(m, report, top)
        out.append([name, EAGER + (" (host)" if report.get("device") else ""), "fp32", "ok", "—", _pct(m.get("torch_top1")),
                    "0.00" if "torch_top1" in m else "—", "100.00" if "torch_top1" in m else "—"]
                   + [f"{_ms(eager[t]['p50_ms'])} / {_ms(eager[t]['p90_ms'])}{_flag(eager[t])}"
                      for t in threads]
                   + ["1.00×" for _ in threads]
                   + [_rate(gm[0]), _share(gm[1]), _with_node(weights_note(m), m)])
    for c in report["cells"]:
        # a failed cell's partial measurements stay in the JSON, out of the table
        lat = (c.get("latency") or {}) if c["status"] == "ok" else {}
        status = c["status"] if not c.get("reused") else "ok (reused)"
        last = lat.get(top, {})
        out.append([c["model"], c["target"], precision_label(c), status, _size(c.get("size_bytes")),
                    _pct(c.get("top1")), _pct(c.get("delta_top1"), sign=True),
                    _pct(c.get("agreement"))]
                   + [f"{_ms(lat[t]['p50_ms'])} / {_ms(lat[t]['p90_ms'])}{_flag(lat[t])}"
                      if t in lat else "—" for t in threads]
                   # no speed-up across machines: device rows have none
                   + [f"{lat[t]['speedup']:.2f}×{_flag(lat[t])}" if lat.get(t, {}).get("speedup")
                      else "—" for t in threads]
                   + [_rate(last.get("gmacs")), _share(last.get("peak_share")),
                      c.get("error") or _with_node("emulated device" if c.get("emulated") else "", c)])
    order = {m["name"]: i for i, m in enumerate(report["models"])}
    out.sort(key=lambda r: order.get(r[0], 0))  # stable: eager row first within a model
    return head, out


def precision_label(cell: dict[str, Any]) -> str:
    """The file's precision, and the arithmetic when the runtime did not compute in it
    (a runtime-default row: OpenVINO's bf16 on AMX Xeons)."""
    ran = cell.get("inference_precision")
    if cell.get("precision_hint") == "auto":
        return f"{cell['precision']} as {ran or '?'} (runtime default)"
    if ran and ran != "f32" and cell["precision"] != "int8":
        return f"{cell['precision']} as {ran}"
    return cell["precision"]


LOADED = "*"  # marks a measurement taken while the load average exceeded the usable cores


def _flag(lat: dict[str, Any]) -> str:
    return LOADED if lat.get("loaded") else ""


def load_warning(report: dict[str, Any]) -> str | None:
    """One line when any latency was measured under load (None otherwise)."""
    from deploy.benchmark import worst_load

    worst = worst_load(report)
    if worst is None:
        return None
    cores = report["machine"]["cpu"]["cores"]
    return (f"{LOADED} measured while the 1-min load average (up to {worst:.1f}) exceeded the "
            f"{cores} usable cores: other work competed for the CPU, so these latencies and "
            f"speed-ups are uncertain; rerun on an idle machine for headline figures")


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:.3g}"


def _share(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2g}"


def eager_rates(model: dict[str, Any], report: dict[str, Any], threads: str):
    from deploy.benchmark import rates
    from device_runners.sysinfo import CpuInfo

    cpu = CpuInfo.from_dict(report["machine"]["cpu"])
    return rates(model.get("macs"), model["eager"][threads]["p50_ms"], int(threads), cpu)


def _with_node(note: str, record: dict[str, Any]) -> str:
    """A cluster run's rows say which node (and CPU kind) timed them."""
    node = record.get("timed_on")
    where = f"timed on {node['node']} ({node['cpu']})" if node else ""
    return "; ".join(x for x in (note, where) if x)


def weights_note(m: dict[str, Any]) -> str:
    w = m.get("weights") or {}
    if not w.get("trained"):
        return "random-init weights: latency only"
    return f"trained weights {str(w.get('sha256', ''))[:12]}"


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in body]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def text_table(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])


def latency_line(cfg: dict[str, Any]) -> str:
    """How latency was measured: interleaved rounds since they exist; reports from before them
    (no ``rounds`` in their config) timed PyTorch first, then each file, once."""
    if "rounds" not in cfg:
        return (f"- latency: batch 1, {cfg['warmup']} warm-up + {cfg['runs']} timed runs per "
                f"thread count, inference call only (runner bench); PyTorch eager fp32 timed the "
                f"same way in the same run, before the files (one pass, not interleaved); "
                f"speed-up = eager p50 / file p50")
    return (f"- latency: batch 1, {cfg['runs']} timed runs per thread count in "
            f"{cfg['rounds']} interleaved round(s) (each: {cfg['warmup']} warm-up runs, then "
            f"PyTorch eager fp32 and every file, inference call only, runner bench); p50 = "
            f"median of the rounds' p50s; speed-up = median over rounds of eager p50 / file p50")


def cluster_line(cluster: dict[str, Any]) -> str:
    """Where a cluster sweep ran: nodes and their CPUs, retried and resumed cells."""
    nodes = ", ".join(f"{n['node']} ({n['cpu']}, {n['cores']} cores)" for n in cluster["nodes"])
    retried = sorted({r["cell"] for r in cluster["retried"]})
    rows = (f"timed the files on {cluster['device']}, its rows name the device"
            if cluster.get("device") else "its rows name the node")
    return (f"cluster: {cluster['cells']} cells as Ray tasks at {cluster['address']} on "
            f"{len(cluster['nodes'])} node(s): {nodes or 'none'}; each time cell had its node's "
            f"timing slot to itself and {rows}; retried after a lost node: "
            f"{', '.join(retried) if retried else 'none'}; resumed from an earlier run: "
            f"{len(cluster['resumed'])}")


def header_lines(report: dict[str, Any]) -> list[str]:
    cpu, mach = report["machine"]["cpu"], report["machine"]
    cfg = report["config"]
    v = report["versions"]
    models = [m for m in report["models"] if "error" not in m]
    imgs = {(m.get("data"), m.get("images")) for m in models if m.get("images")}
    lines = [
        f"- command: `{report['command']}`",
        f"- run: {report['started']} → {report['finished']}",
        f"- machine: {cpu['model']}, {cpu['cores']} cores usable, {cpu['isa']}; "
        f"flags {' '.join(cpu.get('flags') or ()) or 'unknown'}",
        *(f"- {a} peak: {u['derivation']}" for a, u in (cpu.get("peaks") or {}).items()),
        *([] if cpu.get("peaks") else [f"- peak: {cpu['peak_derivation']}"]),
        f"- load average (1/5/15 min) at start {_load(mach['load_average_start'])}, at end "
        f"{_load(mach['load_average_end'])}; per-measurement 1-min load is in the JSON",
        f"- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        latency_line(cfg) + "; GMAC/s = MACs / p50; % peak against " + (
            "the peak of the arithmetic the file ran in (int8 files: int8; float files: the "
            "precision the runtime computed in, f32 unless a row says otherwise) on the cores used"
            if cpu.get("peaks") else  # reports from before per-arithmetic peaks
            "the fp32 FMA peak of the cores used, int8 files included"),
    ]
    warning = load_warning(report)
    if warning:
        lines.append(f"- {warning}")
    dev = report.get("device")
    if dev:
        from deploy.device.summary import fingerprint_line

        lines.append(f"- DEVICE: file latencies, GMAC/s and % peak measured on "
                     f"{dev['address']} (runner bench over SSH, its own peak); PyTorch eager, "
                     f"accuracy and the machine line above are this host's; no speed-up "
                     f"across machines")
        if dev.get("emulated"):
            lines.append(f"- EMULATED: that device is {dev['emulated']} on this host; its "
                         "latencies say whether the files run there, not how fast a real "
                         "board is: compare them with other emulated runs only")
        if dev.get("fingerprint"):
            lines.append("- " + fingerprint_line(dev["address"], dev["fingerprint"]))
    if report.get("cluster"):
        lines.append(f"- {cluster_line(report['cluster'])}")
    if "int8" in cfg["precisions"]:
        lines.append(f"- int8 calibration: {cfg.get('calib') or 'none given: the export stage default'}")
    if imgs:
        lines.append("- accuracy: " + "; ".join(f"{n} images of {d}" for d, n in sorted(imgs))
                     + " — the same images for PyTorch and every file; Δ top-1 is in points vs "
                       "PyTorch fp32; agree % = share of images with the same top-1 class")
    else:
        lines.append("- accuracy: not measured in this run (latency only)")
    return lines


def _load(v) -> str:
    return " / ".join(f"{x:.2f}" for x in v)


def to_markdown(report: dict[str, Any], title: str = "deploy benchmark",
                plots: dict[str, str] | None = None, level: int = 1,
                notes: tuple[str, ...] = ()) -> str:
    head, body = rows(report)
    parts = [f"{'#' * level} {title}", ""]
    if notes:
        parts += [f"> {n}" for n in notes] + [""]
    parts += [*header_lines(report), ""]
    summary = summary_lines(report)
    if summary:
        parts += ["Summary:", "", *summary, ""]
    parts += [markdown_table(head, body), ""]
    for caption, file in (plots or {}).items():
        parts += [f"![{caption}]({file})", ""]
    return "\n".join(parts)


def write_json(report: dict[str, Any], path: Path) -> None:
    from edgebase.files import write_text_atomic

    write_text_atomic(Path(path), json.dumps(report, indent=2) + "\n")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the table says, per model: best target and its speed-up over PyTorch eager, the
    int8 accuracy delta per target, and where int8 is slower than fp32."""
    ok = [c for c in report["cells"] if c["status"] == "ok" and c.get("latency")]
    lines = []
    for m in report["models"]:
        mine = [c for c in ok if c["model"] == m["name"]]
        if not mine:
            continue
        parts = []
        for threads in sorted(mine[0]["latency"], key=int):  # the best file per thread count
            timed = [c for c in mine if threads in c["latency"]]
            best = min(timed, key=lambda c: c["latency"][threads]["p50_ms"])
            lat = best["latency"][threads]
            versus = (f"{lat['speedup']:.1f}× PyTorch eager" if lat.get("speedup")
                      else f"on {lat.get('device', 'the device')}"
                      + (", emulated" if lat.get("emulated") else ""))
            parts.append(f"fastest at {threads} thread(s): {best['target']} {best['precision']} "
                         f"{_ms(lat['p50_ms'])} ms ({versus}"
                         f"{', measured under load ' + LOADED if lat.get('loaded') else ''})")
        for c in mine:
            if c["precision"] != "int8":
                continue
            fp32 = next((f for f in mine if f["target"] == c["target"]
                         and f["precision"] == "fp32"), None)
            if c.get("top1") is not None and fp32 and fp32.get("top1") is not None:
                parts.append(f"{c['target']} int8 top-1 {c['top1'] - fp32['top1']:+.2f} points "
                             f"vs its fp32")
            slower = [f"{_ms(c['latency'][t]['p50_ms'])} vs {_ms(fp32['latency'][t]['p50_ms'])} "
                      f"ms at {t} thread(s)" for t in sorted(c["latency"], key=int)
                      if fp32 and t in fp32["latency"]
                      and c["latency"][t]["p50_ms"] > fp32["latency"][t]["p50_ms"]]
            if slower:
                parts.append(f"{c['target']} int8 slower than fp32 ({', '.join(slower)})")
        lines.append(f"- {m['name']}: " + "; ".join(parts))
    bad = [c for c in report["cells"] if c["status"] != "ok"]
    for status in ("failed", "unavailable"):
        cells = [c for c in bad if c["status"] == status]
        if cells:
            msgs = sorted({c["error"] for c in cells})
            lines.append(f"- {len(cells)} cell(s) {status}: " + " | ".join(msgs))
    return lines


def _main(argv: list[str] | None = None) -> int:
    import argparse

    from deploy.benchmark_plots import write_plots
    from edgebase.files import write_text_atomic

    p = argparse.ArgumentParser(prog="python -m deploy.benchmark_report",
                                description="join benchmark reports into one Markdown file")
    p.add_argument("output", type=Path, help="Markdown file to write (e.g. BENCHMARKS.md)")
    p.add_argument("--intro", type=Path, help="Markdown to put first")
    p.add_argument("--section", nargs=2, action="append", default=[],
                   metavar=("TITLE", "JSON"), help="a section: its title and report JSON")
    p.add_argument("--note", nargs=2, action="append", default=[], metavar=("TITLE", "TEXT"),
                   help="a line of text under the section with that title")
    p.add_argument("--text", nargs=2, action="append", default=[], metavar=("TITLE", "TEXT"),
                   help="a section of text only (e.g. a part that could not run)")
    args = p.parse_args(argv)
    notes: dict[str, list[str]] = {}
    for title, text in args.note:
        notes.setdefault(title, []).append(text)
    parts = [args.intro.read_text().rstrip(), ""] if args.intro else []
    for title, file in args.section:
        report = json.loads(Path(file).read_text())
        base = args.output.resolve().parent
        plots = {c: Path(f).resolve().relative_to(base).as_posix()
                 for c, f in write_plots(report, Path(file).parent).items()}
        parts.append(to_markdown(report, title, plots, level=2,
                                 notes=tuple(notes.get(title, ()))))
    for title, text in args.text:
        parts += [f"## {title}", "", text, ""]
    write_text_atomic(args.output, "\n".join(parts).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
