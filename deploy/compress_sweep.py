"""`deploy compress` over several settings (``--prune 0.5,0.6 --share-bits 5,6``): one cell per
setting (deploy.sweep.compress_cells), run by the local executor (this process, in order) or on
a Ray cluster (deploy.sweep.independent), and one summary, ``<output>/sweep.json``, with a
readable table of it."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from deploy.sweep.compress_cells import ModelSpec
from deploy.sweep.independent import Work
from deploy.sweep.task_pool import retried_cells

SUMMARY = "sweep.json"


def run_sweep(spec: ModelSpec, cells: list, executor, output_dir: Path, command: str
              ) -> dict[str, Any]:
    """Run every cell; the summary (also written to ``output_dir/sweep.json``)."""
    import json

    from deploy.sweep.compress_cells import run_cell, run_remote
    from deploy.toolchain import versions
    from edgebase.files import write_text_atomic

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_start = os.getloadavg()
    work = Work(local=lambda c, log: run_cell(spec, c.config, log), remote=run_remote,
                remote_args=lambda c: (spec, c.config, c.key))
    rows = executor.run(cells, work, output_dir)
    first = cells[0].config
    summary = {
        "command": command, "model": spec.name, "target": first.target,
        "started": started, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
        "versions": versions(),
        "settings": {"prune": sorted({c.prune for c in cells}),
                     "share_bits": sorted({c.share_bits for c in cells}),
                     "prune_layers": first.prune_layers, "share_layers": first.share_layers,
                     "share_scale": first.share_scale,
                     "epochs": first.finetune.epochs,
                     "eval_data": str(first.eval_data) if first.eval_data else None,
                     "eval_limit": first.eval_limit},
        "executor": executor.record,
        "cells": rows,
        "failed": sum(r["status"] != "ok" for r in rows),
    }
    write_text_atomic(Path(output_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def text_table(summary: dict[str, Any]) -> str:
    """Setting, folder, container bytes, ratio vs the target file, top-1 drop, status."""
    head = ("setting", "folder", "container bytes", f"x vs {summary['target']} file",
            "top-1", "drop", "status")
    body = []
    for r in summary["cells"]:
        ok = r["status"] == "ok"
        top1 = r.get("top1")
        body.append((r["setting"], r["folder"] + "/",
                     f"{r['container_bytes']:,}" if ok else "-",
                     f"{r['ratio']:.1f}x" if ok else "-",
                     f"{top1:.2f} %" if top1 is not None else "-",
                     f"{r['top1_drop']:.2f}" if top1 is not None else "-",
                     "ok" if ok else f"FAILED: {r['error']}"))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    text = [line.format(*head), line.format(*("-" * w for w in widths))]
    text += [line.format(*row) for row in body]
    resumed = (summary["executor"] or {}).get("resumed") or []
    images = next((r.get("images") for r in summary["cells"] if r.get("images")), None)
    if images:
        text.append(f"top-1 of the decoded file on {images} images; drop vs the dense "
                    f"PyTorch parent")
    if resumed:
        text.append(f"{len(resumed)} of {len(summary['cells'])} settings finished in an "
                    f"earlier run of this sweep: not run again")
    retried = retried_cells((summary["executor"] or {}).get("retried") or [])
    if retried:
        text.append(f"{len(retried)} setting(s) ran again after losing their node or worker: "
                    f"{', '.join(retried)}")
    return "\n".join(text)
