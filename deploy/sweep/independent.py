"""Executors for a sweep of independent CPU cells (``deploy compress`` settings): each cell
makes one file and a summary row, needs no other cell and may run anywhere.

Both executors keep the head's journal (deploy.sweep.journal) under ``<output>/.sweep``: a cell
whose row is there and whose files in the output folder are still as made is not run again
(a re-run of the same command resumes), a failed one is. ``LocalExecutor`` runs the cells in
this process, in order, one at a time; ``RayExecutor`` runs them as Ray tasks (one CPU each,
a lost node's cell retried on a live one) and lays their files down in the output folder
(atomic writes) as each comes back.

A cell has ``key``, ``label`` and ``config.output_dir``; ``work`` is a pair of functions:
``local(cell, log) -> row`` and ``remote`` (a module-level function run as a Ray task,
returning ``{"row", "files"}`` or ``{"error"}``) with its arguments from ``remote_args(cell)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy.sweep.artifacts import files_if_unchanged, pack, unpack
from deploy.sweep.journal import Journal


@dataclass(frozen=True)
class Work:
    local: Callable[[Any, Callable[[str], None]], dict[str, Any]]
    remote: Callable[..., dict[str, Any]]
    remote_args: Callable[[Any], tuple]


class _Head:
    """The journal and the rows of a sweep, on the machine that runs the command."""

    def __init__(self, cells: list, output_dir: Path, bar):
        self.cells, self.output_dir, self.bar = cells, Path(output_dir), bar
        self.journal = Journal(self.output_dir / ".sweep" / "cells")
        self.rows: dict[str, dict[str, Any]] = {}  # key -> row
        self.resumed: list[str] = []

    def resume(self) -> list:
        """The cells still to run; the others' rows from an earlier run of this sweep."""
        for cell in self.cells:
            rec = self.journal.get(cell.key)
            if rec is None or rec["row"].get("status") != "ok":
                continue  # never finished, or failed: it runs again
            if files_if_unchanged(Path(rec["row"]["file"]), rec["file_hashes"]) is None:
                continue  # its files were changed or removed since
            self.rows[cell.key] = rec["row"]
            self.resumed.append(cell.label)
        if self.resumed:
            self.bar.write(f"resuming: {len(self.resumed)} of {len(self.cells)} cells finished "
                           f"in an earlier run of this sweep (skipped: "
                           f"{'; '.join(self.resumed)})")
        self.bar.update(done=len(self.resumed))
        return [c for c in self.cells if c.key not in self.rows]

    def finish(self, cell, row: dict[str, Any], hashes: dict[str, str] | None) -> None:
        row = dict(row, key=cell.key)
        self.rows[cell.key] = row
        if row["status"] == "ok":  # a failed cell is not journalled: it runs again
            self.journal.put(cell.key, {"cell": cell.label, "row": row, "file_hashes": hashes})
        else:
            self.bar.write(f"{cell.label}: FAILED: {row.get('error')}")
        self.bar.update(done=1, failed=int(row["status"] != "ok"))

    def ordered(self) -> list[dict[str, Any]]:
        return [self.rows[c.key] for c in self.cells]


class LocalExecutor:
    name = "local"
    record: dict[str, Any] | None = None

    def run(self, cells: list, work: Work, output_dir: Path) -> list[dict[str, Any]]:
        import sys

        from deploy.sweep.progress import SweepProgress

        bar = SweepProgress(len(cells), sys.stderr, desc="settings")
        head = _Head(cells, output_dir, bar)
        for cell in head.resume():
            bar.update(running=1)
            row = work.local(cell, bar.write)
            hashes = pack(Path(row["file"])).hashes() if row["status"] == "ok" else None
            head.finish(cell, row, hashes)
        bar.update(running=0)
        bar.close()
        self.record = {"executor": self.name, "cells": len(cells), "resumed": head.resumed}
        return head.ordered()


class RayExecutor:
    name = "ray"

    def __init__(self, address: str):
        from deploy.sweep.ray_executor import check_address

        self.address = check_address(address)
        self.record: dict[str, Any] | None = None

    def run(self, cells: list, work: Work, output_dir: Path) -> list[dict[str, Any]]:
        from deploy.sweep.progress import SweepProgress
        from deploy.sweep.ray_executor import session

        ray_log = Path(output_dir) / ".sweep" / "ray.log"
        with session(self.address, ray_log) as (ray, user):
            bar = SweepProgress(len(cells), user, desc="settings")  # Ray's lines: its log
            run = _RaySweep(ray, cells, work, _Head(cells, output_dir, bar))
            rows = run.run()
            bar.close()
        self.record = {"executor": self.name, "address": self.address, "cells": len(cells),
                       "resumed": run.head.resumed, "retried": run.pool.retried,
                       "placements": run.pool.placements, "ray_log": str(ray_log)}
        return rows


class _RaySweep:
    def __init__(self, ray, cells: list, work: Work, head: _Head):
        from deploy.sweep.ray_executor import slotted_capacity
        from deploy.sweep.task_pool import TaskPool

        self.ray, self.work, self.head = ray, work, head
        self.task = ray.remote(work.remote)
        cpus, slotted, _ = slotted_capacity(ray)
        head.bar.write(f"Ray cluster: {slotted} node(s), {cpus} CPU(s) for {len(cells)} cells")
        self.pool = TaskPool(ray, head.bar)

    def run(self) -> list[dict[str, Any]]:
        from deploy.sweep.resources import CPU_CELL

        for cell in self.head.resume():  # Ray queues what the CPUs cannot take yet
            args = self.work.remote_args(cell)
            self.pool.submit(cell, lambda args=args: self.task.options(
                **CPU_CELL, max_retries=0).remote(*args))
        while self.pool.inflight:
            for cell, result in self.pool.wait(timeout=1.0):
                self.finish(cell, result)
            self.head.bar.update(running=self.pool.running())
        return self.head.ordered()

    def finish(self, cell, result: dict[str, Any]) -> None:
        node = result.get("node") or {}
        if "error" in result:
            row = {"setting": cell.label, "folder": cell.config.output_dir.name,
                   "status": "failed", "error": result["error"]}
            self.head.finish(cell, row, None)
            return
        row, files = result["row"], result["files"]
        hashes = None
        if files is not None:
            row["file"] = str(unpack(files, self.head.output_dir))  # the head's copy
            hashes = files.hashes()
        self.head.finish(cell, dict(row, node=node.get("node"), cpu=node.get("cpu")), hashes)
