"""Verdicts and Markdown for a `deploy guidelines` report.

Each guideline is judged as the paper states it, on the same two rows the paper's text
compares: the cost of the pattern = latency with it / latency without it - 1, at equal FLOPs
(G1: c1:c2 = 1:12 against 1:1; G2: g=8 against g=1; G3: 4 fragments in series and in
parallel against 1; G4: the bottleneck with ReLU and shortcut against neither). The paper's
cost comes from its images/s the same way. Here the guideline **holds** when the cost exceeds
the noise threshold (5 %, or twice the larger spread of the two rows' round medians), is
**within noise** when its size is below that, and is **reversed** when the pattern is faster
by more than the threshold.
"""
from __future__ import annotations

from typing import Any

NOISE_FLOOR = 0.05
# (guideline, pattern row, row without the pattern)
COMPARISONS = (("G1", "1:12", "1:1"), ("G2", "g=8", "g=1"),
               ("G3", "4-fragment-series", "1-fragment"),
               ("G3", "4-fragment-parallel", "1-fragment"),
               ("G4", "ReLU yes, shortcut yes", "ReLU no, shortcut no"))


def measured(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, precision, threads) columns that have at least one ok cell, in run order."""
    cols = []
    for t in report["config"]["targets"]:
        for p in report["config"]["precisions"]:
            for n in report["config"]["threads"]:
                if any(c["target"] == t and c["precision"] == p and c["status"] == "ok"
                       and str(n) in (c.get("latency") or {}) for c in report["cells"]):
                    cols.append((t, p, str(n)))
    return cols


def _cell(report, key: str, target: str, precision: str) -> dict[str, Any] | None:
    for c in report["cells"]:
        if c["variant"] == key and c["target"] == target and c["precision"] == precision:
            return c if c["status"] == "ok" else None
    return None


def _variant(report, guideline: str, row: str, scale: int) -> dict[str, Any] | None:
    return next((v for v in report["variants"] if v["guideline"] == guideline
                 and v["row"] == row and v["scale"] == scale), None)


def judge(cost: float, threshold: float) -> str:
    if cost > threshold:
        return "holds"
    if cost < -threshold:
        return "reversed"
    return "within noise"


def verdicts(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for g, pattern, plain in COMPARISONS:
        for scale in report["config"]["scales"]:
            with_, without = _variant(report, g, pattern, scale), _variant(report, g, plain, scale)
            if with_ is None or without is None:
                continue
            paper = {"arm": without["paper_arm_images_per_s"] / with_["paper_arm_images_per_s"] - 1,
                     "gpu": without["paper_gpu_batches_per_s"] / with_["paper_gpu_batches_per_s"]
                     - 1}
            row = {"guideline": g, "pattern": pattern, "against": plain, "scale": scale,
                   "paper_cost": paper, "paper_verdict": {k: judge(v, NOISE_FLOOR)
                                                          for k, v in paper.items()},
                   "measured": []}
            for target, precision, threads in measured(report):
                a = _cell(report, with_["key"], target, precision)
                b = _cell(report, without["key"], target, precision)
                la = (a or {}).get("latency", {}).get(threads)
                lb = (b or {}).get("latency", {}).get(threads)
                if not la or not lb:
                    continue
                cost = la["p50_ms"] / lb["p50_ms"] - 1
                threshold = max(NOISE_FLOOR, 2 * max(la.get("spread", 0), lb.get("spread", 0)))
                row["measured"].append({
                    "target": target, "precision": precision, "threads": int(threads),
                    "device": la.get("device"),  # None: timed on this host
                    "cost": cost, "threshold": threshold, "verdict": judge(cost, threshold),
                    "p50_ms": [la["p50_ms"], lb["p50_ms"]],
                    "loaded": bool(la.get("loaded") or lb.get("loaded"))})
            out.append(row)
    return out


def device_address(report: dict[str, Any]) -> str | None:
    """The board the files were timed on (None: this host; older reports kept a string)."""
    dev = report.get("device")
    return dev.get("address") if isinstance(dev, dict) else dev


def timing_tag(report: dict[str, Any]) -> str:
    """The CPU kind the timings are of (the report's file-name tag): the board's with
    ``--device``, else this host's."""
    dev = report.get("device")
    if isinstance(dev, dict) and dev.get("cpu_tag"):
        return dev["cpu_tag"]
    return report["machine"]["cpu_tag"]


def pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.0f}%"


def _col(t: str, p: str, n: str, where: str | None = None) -> str:
    return f"{t} {p} {n}t" + (f" on {where}" if where else "")


def verdict_table(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per comparison and scale; one column per runtime x precision x threads."""
    cols = measured(report)
    where = device_address(report)
    head = ["guideline", "pattern vs without", "scale", "paper ARM", "paper GPU",
            *(_col(*c, where) for c in cols)]
    body = []
    for v in report["verdicts"]:
        by = {(m["target"], m["precision"], str(m["threads"])): m for m in v["measured"]}
        cells = []
        for c in cols:
            m = by.get(c)
            cells.append("—" if m is None else
                         f"{pct(m['cost'])} {_short(m['verdict'])}" + ("*" if m["loaded"] else ""))
        body.append([v["guideline"], f"{v['pattern']} vs {v['against']}", f"x{v['scale']}",
                     pct(v["paper_cost"]["arm"]), pct(v["paper_cost"]["gpu"]), *cells])
    return head, body


def _short(verdict: str) -> str:
    return {"holds": "holds", "within noise": "noise", "reversed": "REVERSED"}[verdict]


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One sentence per comparison: how often it held here, the range, the paper's cost."""
    lines = []
    where = f"on {device_address(report)}" if device_address(report) else "here"
    for v in report["verdicts"]:
        ms = v["measured"]
        if not ms:
            continue
        held = sum(m["verdict"] == "holds" for m in ms)
        rev = sum(m["verdict"] == "reversed" for m in ms)
        lo, hi = min(m["cost"] for m in ms), max(m["cost"] for m in ms)
        word = ("holds" if held == len(ms) else "does not hold" if held == 0 else "holds partly")
        lines.append(
            f"{v['guideline']} ({v['pattern']} vs {v['against']}, x{v['scale']}): {word} {where} "
            f"- {held} of {len(ms)} measurements show the cost"
            + (f", {rev} the reverse" if rev else "")
            + f"; cost {pct(lo)} to {pct(hi)} (paper: ARM {pct(v['paper_cost']['arm'])}, "
              f"GPU {pct(v['paper_cost']['gpu'])})")
    return lines


def guideline_table(report: dict[str, Any], guideline: str, scale: int
                    ) -> tuple[list[str], list[list[str]]]:
    """The paper's table for one guideline and scale, with our images/s beside its numbers."""
    cols = measured(report)
    where = device_address(report)
    head = ["row", "widths", "MMAC", "MAC cost (M)", "paper ARM img/s", "paper GPU batch/s",
            *(f"{_col(*c, where)} img/s" for c in cols)]
    body = []
    for v in report["variants"]:
        if v["guideline"] != guideline or v["scale"] != scale:
            continue
        widths = ", ".join(f"{k}={w}" for k, w in v["widths"].items())
        if not v["widths_stated"]:
            widths += " (derived)"
        row = [v["row"], widths, f"{v['macs'] / 1e6:.1f}", f"{v['mac_cost'] / 1e6:.2f}",
               f"{v['paper_arm_images_per_s']:g}", f"{v['paper_gpu_batches_per_s']:g}"]
        for t, p, n in cols:
            c = _cell(report, v["key"], t, p)
            lat = (c or {}).get("latency", {}).get(n)
            row.append("failed" if c is None else f"{lat['images_per_s']:.1f}"
                       + ("*" if lat.get("loaded") else "") if lat else "—")
        body.append(row)
    return head, body


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _versions(report) -> str:
    return ", ".join(f"{k} {v}" for k, v in report["versions"].items())


def _device_lines(report: dict[str, Any]) -> list[str]:
    """What the board is (its fingerprint) and, for an emulator, that its timings are not a
    board's; nothing for a run on this host."""
    dev = report.get("device")
    if not isinstance(dev, dict):
        return []
    from deploy.device.summary import fingerprint_line

    lines = [f"- DEVICE: {fingerprint_line(dev['address'], dev['fingerprint'])}"
             if dev.get("fingerprint") else f"- DEVICE: {dev['address']}"]
    if dev.get("emulated"):
        lines.append(f"- EMULATED: that device is {dev['emulated']} on this host; its "
                     "latencies say whether the files run there, not how fast a real board is")
    return lines


def to_markdown(report: dict[str, Any], plots: dict[str, str], layers_md: str = "") -> str:
    from zoo.guidelines import BLOCKS, FEATURE

    m, cfg = report["machine"], report["config"]
    cpu, where = m["cpu"], device_address(report)
    loads = [lat["load"] for c in report["cells"] for lat in (c.get("latency") or {}).values()
             if lat.get("load") is not None]
    out = [f"# FLOPs are not speed: ShuffleNet V2's guidelines G1-G4 on {timing_tag(report)}"
           + (f" ({where})" if where else ""), ""]
    out += [f"- command: `{report['command']}`",
            f"- run: {report['started']} → {report['finished']}",
            f"- machine: {cpu['model']}, {cpu['cores']} cores usable, {cpu['isa']}"
            + ("; it made and checked the files, every latency was measured on the device "
               "below" if where else ""),
            *_device_lines(report),
            f"- load average{' of this host' if where else ''} (1/5/15 min) at start "
            f"{' / '.join(f'{x:.2f}' for x in m['load_average_start'])}, at end "
            f"{' / '.join(f'{x:.2f}' for x in m['load_average_end'])}"
            + (f"; 1-min load {'of ' + where + ' ' if where else ''}during the measurements "
               f"{min(loads):.2f} to {max(loads):.2f}" if loads else "")
            + " (the cores are shared with other work; a `*` marks a measurement taken while "
              "the 1-min load of the machine that ran it exceeded its usable cores)",
            f"- versions: {_versions(report)}",
            f"- paper: {report['paper']}; its ARM column is a Snapdragon 810, one thread, "
            f"images/s; its GPU column a GTX 1080Ti, batches of 8 per second, on wider "
            f"networks (GPU widths in the JSON)",
            f"- networks: {BLOCKS} stacked blocks on a 1x{FEATURE}x{FEATURE} feature map, the "
            f"paper's ARM widths at scale(s) {', '.join('x' + str(s) for s in cfg['scales'])}; "
            f"fixed FLOPs within a table (MMAC column); widths marked derived are not printed "
            f"in the paper (zoo/guidelines.py says how they were chosen)",
            "- files: each target's own converter; int8 by its PTQ pass with minmax ranges on "
            "seeded noise (latency only); every file checked against its PyTorch parent on "
            "random inputs before timing (cosine in the JSON)",
            f"- latency: batch 1, runner bench (inference call only"
            + (f"; on {where}, one runner process over SSH per file, thread count and round"
               if where else "") + f"), {cfg['warmup']} warm-up "
            f"runs, {cfg['runs']} timed runs per thread count in {cfg['rounds']} interleaved "
            f"rounds; p50 = median of the rounds' p50s; img/s = 1000 / p50 ms; threads: each "
            f"runtime's own pool at its default placement (OpenVINO keeps its CPU pinning on; "
            f"off measured the same: benchmarks/results/openvino_pinning_amd-avx2.md)"]
    for u in report.get("updates") or []:  # later partial runs (benchmarks/guidelines_update.py)
        out.append(f"- re-measured {u['started']} → {u['finished']} by `{u['command']}`, load "
                   f"average at start {' / '.join(f'{x:.2f}' for x in u['load_average_start'])}"
                   f", at end {' / '.join(f'{x:.2f}' for x in u['load_average_end'])}: "
                   + "; ".join(u["replaced"]))
    out += ["", "## Verdicts", "",
            "Cost of the pattern = latency with it / latency without it - 1 at equal FLOPs "
            "(positive: the guideline's advice pays). **holds**: cost above the noise "
            "threshold (5 %, or twice the spread of the rounds); **noise**: within it; "
            "**REVERSED**: the pattern is faster.", ""]
    out += [f"- {line}" for line in summary_lines(report)] + [""]
    out += [markdown_table(*verdict_table(report)), ""]
    if "curves" in plots:
        out += [f"![guideline curves]({plots['curves']})", ""]
    from zoo.guidelines import CLAIMS

    for g in cfg["guidelines"]:
        out += [f"## {g}: {CLAIMS[g]}", ""]
        for s in cfg["scales"]:
            out += [f"Scale x{s}:", "", markdown_table(*guideline_table(report, g, s)), ""]
    failed = [c for c in report["cells"] if c["status"] != "ok"]
    if failed:
        out += ["## Failed cells", ""]
        out += [f"- {c['variant']} {c['target']} {c['precision']}: {c.get('error')}"
                for c in failed] + [""]
    if layers_md:
        out += [layers_md, ""]
    return "\n".join(out)
