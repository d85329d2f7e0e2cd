"""Replace part of a `deploy guidelines` report with a newer partial run of the same command.

    python benchmarks/guidelines_update.py BASE.json [--cells PART.json] [--layers PART.json]

--cells: every cell of PART (a variant x target x precision, all its thread counts) replaces
the base's cell of the same key. A guideline's rows are compared with each other, so PART
must hold every row of each guideline x target x precision it brings (they were timed in the
same interleaved rounds), and its thread counts must be the base's.
--layers: PART's per-layer records replace the base's of the same model and runtime.
Verdicts are recomputed and the Markdown and plots rewritten beside BASE; the report lists
each update (its command, times, load) so no number is passed off as part of the first run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _update_record(part: dict, what: list[str]) -> dict:
    m = part["machine"]
    return {"command": part["command"], "started": part["started"],
            "finished": part["finished"], "load_average_start": m["load_average_start"],
            "load_average_end": m["load_average_end"], "replaced": what}


def merge_cells(base: dict, part: dict) -> list[str]:
    if list(part["config"]["threads"]) != list(base["config"]["threads"]):
        raise SystemExit(f"--cells: threads {part['config']['threads']} != the base's "
                         f"{base['config']['threads']}")
    rows = {(v["guideline"], v["scale"]): {x["key"] for x in part["variants"]
                                           if (x["guideline"], x["scale"]) ==
                                           (v["guideline"], v["scale"])}
            for v in part["variants"]}
    keys = {(c["variant"], c["target"], c["precision"]) for c in part["cells"]}
    for v in part["variants"]:
        for t in {c["target"] for c in part["cells"]}:
            for p in {c["precision"] for c in part["cells"]}:
                missing = rows[(v["guideline"], v["scale"])] - {k for k, tt, pp in keys
                                                               if (tt, pp) == (t, p)}
                if missing:
                    raise SystemExit(f"--cells: {t} {p} lacks rows {sorted(missing)}")
    index = {(c["variant"], c["target"], c["precision"]): i for i, c in enumerate(base["cells"])}
    for c in part["cells"]:
        key = (c["variant"], c["target"], c["precision"])
        if key not in index:
            raise SystemExit(f"--cells: {' '.join(key)} is not in the base report")
        base["cells"][index[key]] = c
    return [f"cells {' '.join(k)}" for k in sorted(keys)]


def merge_layers(base: dict, part: dict) -> list[str]:
    recs = base.setdefault("layers", [])
    index = {(r["model"], r["runtime"]): i for i, r in enumerate(recs)}
    out = []
    for r in part.get("layers") or []:
        key = (r["model"], r["runtime"])
        if key in index:
            recs[index[key]] = r
        else:
            recs.append(r)
        out.append(f"per-layer {r['model']} on {r['runtime']}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("--cells", type=Path)
    ap.add_argument("--layers", type=Path)
    args = ap.parse_args(argv)
    if not args.cells and not args.layers:
        raise SystemExit("name --cells and/or --layers")
    from deploy.guidelines_plots import write_plots
    from deploy.guidelines_report import device_address, timing_tag, to_markdown, verdicts
    from deploy.layer_profile import layers_markdown
    from edgebase.cli_flags import write_json
    from edgebase.files import write_text_atomic

    base = json.loads(args.base.read_text())
    updates = base.setdefault("updates", [])
    for path, merge in ((args.cells, merge_cells), (args.layers, merge_layers)):
        if path:
            part = json.loads(path.read_text())
            where = (timing_tag(part), device_address(part))
            if where != (timing_tag(base), device_address(base)):
                raise SystemExit(f"{path}: measured on {where}, the base on "
                                 f"{(timing_tag(base), device_address(base))} (CPU, device)")
            updates.append(_update_record(part, merge(base, part)))
    base["verdicts"] = verdicts(base)
    plots = write_plots(base, args.base.parent, args.base.stem)
    base["plots"] = {k: Path(v).name for k, v in plots.items()}
    write_json(base, str(args.base))
    md = args.base.with_suffix(".md")
    write_text_atomic(md, to_markdown(base, base["plots"],
                                      layers_markdown(base.get("layers"), base["plots"])) + "\n")
    print(f"wrote {args.base}, {md}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
