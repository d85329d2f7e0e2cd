"""The report of benchmarks/fuzz_runner.py: outcome names, the JSON it writes and its Markdown."""
from __future__ import annotations

import json
from pathlib import Path

FAILURES = ("traceback", "crash", "hang", "memory", "messy")
OUTCOMES = ("ran", "error", "child crash") + FAILURES


def markdown(r: dict) -> str:
    total = {o: 0 for o in OUTCOMES}
    runs = 0
    for f in r["formats"].values():
        for c in f["commands"].values():
            for how in ("in_process", "cli"):
                for o, k in c[how].items():
                    total[o] += k
                    runs += k
    fails = sum(total[o] for o in FAILURES)
    lines = [
        "# Runner fuzzing", "",
        f"`{r['command']}` on {r['cpu']['model']} ({r['cpu']['tag']}, {r['cpu']['cores']} "
        f"cores), {r['date']}; wall time {r['wall_s'] / 60:.1f} min; load average "
        f"{r['load_avg_start'][0]:.2f} at the start, {r['load_avg_end'][0]:.2f} at the end "
        "(the machine was shared).", "",
        f"{r['count']} mutated files per format, seed {r['seed']}; each through `runner bench` "
        "and `runner verify` (`runner unpack` for the container) in-process via "
        "`device_runners.cli.main` with isolation on, and "
        f"{r['cli_sample']} cases per format also through the `runner` subprocess. "
        f"A command counts as a hang after {r['bound_s']:.0f} s, as a memory failure above "
        f"{r['mem_limit_mb']:.0f} MB for the runner's process tree.", "",
        f"**{runs} runs: {fails} failures** ({', '.join(f'{o} {total[o]}' for o in FAILURES)}); "
        f"{total['ran']} ran, {total['error']} clean one-line errors, {total['child crash']} "
        "crashes or time-outs of the isolated child reported as one line.", "",
        "| format | command | path | ran | error | child crash | traceback | crash | hang | "
        "memory | messy | s p50 | s max |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for fmt, f in r["formats"].items():
        for name, c in f["commands"].items():
            for how in ("in_process", "cli"):
                k = c[how]
                timing = (f"{c['seconds_p50']:.2f} | {c['seconds_max']:.2f}"
                          if how == "in_process" else " | ")
                lines.append(f"| {fmt} | {name} | {how.replace('_', '-')} | "
                             + " | ".join(str(k[o]) for o in OUTCOMES) + f" | {timing} |")
    lines += ["", "Mutations per format, cases the mutation left unchanged, subprocess agreement "
              "(same outcome and exit status as in-process), minutes and load average:", ""]
    for fmt, f in r["formats"].items():
        muts = ", ".join(f"{k} {v}" for k, v in sorted(f["mutations"].items()))
        sampled = sum(sum(c["cli"].values()) for c in f["commands"].values())
        lines.append(f"- **{fmt}**: {muts}; unchanged {f['identical_after_mutation']}; "
                     f"subprocess agrees in {f['cli_agree']} of {sampled}; "
                     f"{f['seconds'] / 60:.1f} min, load {f['load_avg_start'][0]:.2f} -> "
                     f"{f['load_avg_end'][0]:.2f}")
    lines += ["", "Most frequent error lines (paths, numbers and quoted values blanked):", ""]
    for fmt, f in r["formats"].items():
        for msg, k in f["top_messages"][:5]:
            lines.append(f"- {fmt} ({k}): `{msg}`")
    if r["failures"]:
        lines += ["", "## Failures", ""]
        for x in r["failures"][:40]:
            first = (x["stderr"].strip().splitlines() or [""])[-1][:200]
            lines.append(f"- {x['format']} #{x['case']} ({x['mutation']}), {x['command']} "
                         f"{x['path']}: **{x['outcome']}** exit {x['rc']}: `{first}` "
                         f"(replay: `{x['replay']}`)")
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict) -> None:
    """benchmarks/results/fuzz_runner.{json,md}, each written whole or not at all."""
    from edgebase.files import write_text_atomic

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(out.with_suffix(".md"), markdown(report))
