"""The Ray executor: a sweep's cells as Ray tasks on a cluster, the report built on the head.

- Export, evaluation and the parent are CPU cells: one CPU each, any node, in parallel.
- A time cell takes its node's whole timing slot (deploy.sweep.resources), so nothing else of
  the sweep runs there while it times PyTorch eager and the model's files; its rows and the
  eager record name the node and its CPU. With ``--device`` every time cell runs on this
  machine's node and times the files on the device (deploy.sweep.device_node).
- Results come back as each cell finishes: files are written into the output folder at once,
  a time cell's latency records into those files' manifests (as the local run writes them;
  nodes keep their copies as exported), and every finished cell into a journal
  (deploy.sweep.journal), so re-running the same command after an interruption resumes from
  the finished cells.
- A cell whose node is lost (or whose worker dies) is submitted again, to any live node, up to
  ``MAX_ATTEMPTS`` times (deploy.sweep.task_pool); the report lists every retry.
- Ray is imported only here, and only when a sweep runs on a cluster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

from deploy.benchmark import BenchmarkConfig, one_line
from deploy.sweep import cells as C
from deploy.sweep.artifacts import (FileSet, data_identity, digest, files_if_unchanged,
                                    parent_identity, unpack)
from deploy.sweep.journal import Journal
from deploy.sweep.outcome import failed_model
from deploy.sweep.resources import CPU_CELL, TIMING_CELL, TIMING_SLOT
from deploy.sweep.task_pool import TaskPool, retried_cells
from edgebase.errors import ConfigError, DeployError

INSTALL = "pip install 'edgedeploy[ray]'"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--cluster needs Ray, which is not installed: {INSTALL}") from None
    return ray


def check_address(address: str) -> str:
    """``auto``, ``ray://HOST:PORT`` (Ray Client) or ``HOST:PORT`` (the head's GCS port)."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if address != "auto" and not (host and port.isdigit()):
        raise ConfigError(f"--cluster {address!r}: expected auto, ray://HOST:PORT or HOST:PORT")
    return address


class RayExecutor:
    name = "ray"

    def __init__(self, address: str):
        self.address = check_address(address)
        self.record: dict[str, Any] | None = None  # for the report, once run

    def run(self, config: BenchmarkConfig, cells: list[C.Cell], cpu, log
            ) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        from deploy.sweep.device_node import check_client, this_node

        if config.device:
            check_client(self.address)
        config = _absolute(config)
        ray_log = config.output_dir / ".sweep" / "ray.log"
        with session(self.address, ray_log) as (ray, user):
            device_node = this_node(ray) if config.device else None
            sweep = _Sweep(ray, config, cells, user, device_node)
            out = sweep.run()
        self.record = sweep.record(self.address, ray_log)
        return out


@contextlib.contextmanager
def session(address: str, ray_log: Path):
    """Connected to the cluster at ``address`` with Ray's own output in ``ray_log``: yields
    (ray, the user's stream for the sweep's lines)."""
    from deploy.sweep.held_signals import held
    from deploy.sweep.quiet import output_to

    ray = import_ray()
    with output_to(ray_log) as user:
        try:
            _connect(ray, address)
            with held():  # Ctrl-C raised by the sweep between waits, never inside Ray
                yield ray, user
        finally:
            if ray.is_initialized():
                ray.shutdown()


def slotted_capacity(ray) -> tuple[int, int, int]:
    """(CPUs, nodes) of the live nodes that offer a timing slot, and the number of live nodes
    (a node without a slot gets no cells)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    slotted = [n for n in nodes if n["Resources"].get(TIMING_SLOT, 0) >= 1]
    if not slotted:
        raise ConfigError(
            f"no live node of the Ray cluster offers a {TIMING_SLOT}: start every node "
            f"with `ray start ... --resources='{{\"{TIMING_SLOT}\": 1}}'`")
    return int(sum(n["Resources"].get("CPU", 0) for n in slotted)), len(slotted), len(nodes)


def _absolute(config: BenchmarkConfig) -> BenchmarkConfig:
    """Paths as every node sees them (a worker's working folder is not the head's)."""
    paths = {f: getattr(config, f) for f in ("output_dir", "data", "calib", "weights")}
    config = dataclasses.replace(config, **{f: Path(p).resolve() for f, p in paths.items()
                                            if p is not None})
    opts = config.device_options or {}
    if opts.get("ssh_config"):  # read by the time cells, on this machine
        opts = dict(opts, ssh_config=str(Path(opts["ssh_config"]).resolve()))
        config = dataclasses.replace(config, device_options=opts)
    return config


def _connect(ray, address: str) -> None:
    import logging

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} (start one with `ray start --head "
            f"--resources='{{\"{TIMING_SLOT}\": 1}}'` or name its head: --cluster "
            f"ray://HOST:PORT or HOST:PORT); Ray says: {one_line(err)}") from None


class _Sweep:
    def __init__(self, ray, config: BenchmarkConfig, cells: list[C.Cell], user,
                 device_node: str | None = None):
        from deploy.sweep.progress import SweepProgress
        from deploy.sweep.remote import run_cell

        self.ray, self.config, self.cells = ray, config, cells
        self.task = ray.remote(run_cell)
        self.journal = Journal(config.output_dir / ".sweep" / "cells")
        self.results: dict[C.Cell, dict[str, Any]] = {}
        self.files: dict[C.Cell, Any] = {}  # export cell -> object ref of its FileSet
        self.failed: dict[str, tuple] = {}  # model -> failed_model(...)
        self.resumed: list[str] = []
        self.bar = SweepProgress(len(cells), user)
        self.pool = TaskPool(ray, self.bar, on_loss=self._refresh_capacity,
                             retry_if=lambda cell: cell.model not in self.failed)
        self.capacity = (0, 0)
        self.device_node = device_node  # with --device: the node every time cell runs on
        self.keys = self._keys()

    # ---- plan ---------------------------------------------------------------------------
    def _keys(self) -> dict[C.Cell, str]:
        """Each cell's content address: parent, settings and toolchain (deploy.sweep.artifacts)."""
        from deploy.toolchain import versions
        from deploy.validate import default_data

        cfg, tools = self.config, versions()
        keys: dict[C.Cell, str] = {}
        parents: dict[str, Any] = {}
        for name in cfg.models:
            try:
                source = C.load_parent(name, cfg)
                data = cfg.data or default_data(source.entry.preprocess.crop)[0]
                parents[name] = (parent_identity(source, cfg.seed), data_identity(data))
            except Exception as err:  # noqa: BLE001 - the model fails its rows, the rest runs
                self.failed[name] = failed_model(name, cfg, err, self.bar.write)
        calib = data_identity(cfg.calib) if cfg.calib else None
        for cell in self.cells:
            if cell.model not in parents:
                continue
            parent, data = parents[cell.model]
            common = {"parent": parent, "data": data, "tools": tools, "seed": cfg.seed,
                      "evaluate": cfg.evaluate, "limit": cfg.limit}
            if cell.kind == C.PARENT:
                keys[cell] = digest(["parent", common])
            elif cell.kind == C.EXPORT:
                keys[cell] = digest(["export", cell.target, cell.precision, calib, common,
                                     max(cfg.threads)])
            elif cell.kind == C.EVALUATE:
                keys[cell] = digest(["evaluate", keys[self._export_of(cell)], common,
                                     max(cfg.threads)])
            else:
                keys[cell] = digest(["time", [keys[c] for c in C.needs(cell, self.cells)],
                                     cfg.threads, cfg.runs, cfg.warmup, cfg.rounds]
                                    + _device_identity(cfg))
        return keys

    @staticmethod
    def _export_of(cell: C.Cell) -> C.Cell:
        return C.Cell(C.EXPORT, cell.model, cell.target, cell.precision)

    # ---- run ----------------------------------------------------------------------------
    def run(self) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
        self._refresh_capacity(announce=True)
        self._resume()
        pending = [c for c in self.cells if c not in self.results and c.model not in self.failed]
        self.bar.update(done=len(self.cells) - len(pending))
        last_check = time.monotonic()
        while pending or self.pool.inflight:
            for cell in list(pending):
                if cell.model in self.failed:
                    pending.remove(cell)
                    self.bar.update(done=1)
                elif self._ready(cell) and self._room(cell):
                    pending.remove(cell)
                    self._submit(cell)
            if not self.pool.inflight:
                if pending:  # cannot happen: every dependency is either done or failed
                    raise DeployError(f"sweep stalled before {pending[0].label}")
                break
            for cell, result in self.pool.wait(timeout=1.0):
                if cell.model in self.failed:  # its model failed meanwhile: the result is unused
                    self.bar.update(done=1)
                else:
                    self._finish(cell, result, ran=True)
            if time.monotonic() - last_check > 5.0:
                self._refresh_capacity()
                last_check = time.monotonic()
            self.bar.update(running=self.pool.running())
        self.bar.close()
        return {name: self._model(name) for name in self.config.models}

    def _refresh_capacity(self, announce: bool = False) -> None:
        cpus, slotted, nodes = slotted_capacity(self.ray)
        self.capacity = (cpus, slotted)
        if announce:
            self.bar.write(f"Ray cluster: {slotted} node(s) with a timing slot, "
                           f"{cpus} CPU(s) for export and evaluation"
                           + (f"; {nodes - slotted} node(s) without a {TIMING_SLOT} "
                              f"get no cells" if nodes > slotted else "")
                           + (f"; time cells on this machine's node {self.device_node[:12]}, "
                              f"the files timed on {self.config.device}"
                              if self.device_node else ""))

    def _ready(self, cell: C.Cell) -> bool:
        return all(d in self.results for d in C.needs(cell, self.cells))

    def _room(self, cell: C.Cell) -> bool:
        """At most one time cell per timing slot and one CPU cell per CPU in flight, so the
        bar's "running" is what runs and a time cell is not queued behind a long backlog."""
        busy = self.pool.running(lambda c: c.timing == cell.timing)
        if cell.timing:  # a device is one slot: one time cell at a time
            return busy < (1 if self.device_node else self.capacity[1])
        return busy < max(1, self.capacity[0])

    def _submit(self, cell: C.Cell) -> None:
        args, files = self._inputs(cell)
        if args is None:  # nothing to run: an evaluation of a file that was not made
            self._finish(cell, files, ran=False)
            return
        opts = dict(TIMING_CELL if cell.timing else CPU_CELL, max_retries=0)
        if cell.timing and self.device_node:
            from deploy.sweep.device_node import pinned

            opts.update(pinned(self.device_node))
        self.pool.submit(cell, lambda: self.task.options(**opts).remote(
            cell.kind, self.keys[cell], self.config, cell.model, args, *files))

    def _inputs(self, cell: C.Cell):
        """(args, file refs) of a cell's task; (None, result) when its result is known."""
        if cell.kind == C.PARENT:
            return {}, []
        if cell.kind == C.EXPORT:
            return {"target": cell.target, "precision": cell.precision}, []
        parent = self.results[C.Cell(C.PARENT, cell.model)]
        if cell.kind == C.EVALUATE:
            export = self._export_of(cell)
            row = self.results[export]["row"]
            if row["status"] != "ok":
                return None, {"rows": [row]}
            return {"row": row, "export_key": self.keys[export], "model": parent["model"],
                    "torch_pred": parent["torch_pred"]}, [self.files[export]]
        rows, keys, files = [], [], []
        for c in C.needs(cell, self.cells):
            if c.kind == C.EVALUATE:
                export = self._export_of(c)
                for row in self.results[c]["rows"]:
                    rows.append(row)
                    keys.append(self.keys[export])
                    files.append(self.files.get(export) if row["status"] == "ok" else None)
        return {"rows": rows, "export_keys": keys, "model": parent["model"]}, files

    def _finish(self, cell: C.Cell, result: dict[str, Any], ran: bool) -> None:
        if "error" in result:
            self._fail_model(cell, result["error"])
            return
        if cell.kind == C.EXPORT and result["files"] is not None:
            files: FileSet = result.pop("files")
            path = unpack(files, self.config.output_dir)  # the report's files, as locally
            result["row"]["file"] = str(path)
            result["file_hashes"] = files.hashes()
            self.files[cell] = self.ray.put(files)
        elif cell.kind == C.EXPORT:
            result.pop("files")
        elif cell.kind == C.TIME and ran:
            try:  # before the journal: a cell in the journal has its records written
                _record_latency(result)
            except Exception as err:  # noqa: BLE001 - as a local run's time cell: fails its model
                self._fail_model(cell, f"writing the latency records: {one_line(err)}")
                return
        self.results[cell] = result
        if ran:
            self.journal.put(self.keys[cell], {"cell": cell.label, "result": result})
        bad = [r for r in _rows_of(result) if r.get("status") == "failed"] if ran else []
        for r in bad:
            self.bar.write(f"{cell.label}: FAILED: {r.get('error')}")
        self.bar.update(done=1, failed=1 if bad else 0)

    def _fail_model(self, cell: C.Cell, error: str) -> None:
        """A parent or time cell that could not run fails its model's rows (as locally); any
        other cell fails its own row."""
        if cell.kind in (C.PARENT, C.TIME):
            self.failed[cell.model] = failed_model(cell.model, self.config,
                                                   DeployError(error), self.bar.write)
            self.bar.update(done=1, failed=1)
            return
        row = {"model": cell.model, "target": cell.target, "precision": cell.precision,
               "status": "failed", "error": error}
        self.bar.write(f"{cell.label}: FAILED: {error}")
        self.results[cell] = {"row": row} if cell.kind == C.EXPORT else {"rows": [row]}
        self.bar.update(done=1, failed=1)

    # ---- resume -------------------------------------------------------------------------
    def _resume(self) -> None:
        """Finished cells of an earlier run of the same sweep, in plan order; a cell is taken
        only when the cells it used were taken too and its files are still intact here."""
        for cell in self.cells:
            key = self.keys.get(cell)
            rec = self.journal.get(key) if key else None
            if rec is None or not all(d in self.results for d in C.needs(cell, self.cells)):
                continue
            result = rec["result"]
            if cell.kind == C.EXPORT and result["row"]["status"] == "ok":
                files = files_if_unchanged(Path(result["row"]["file"]), result["file_hashes"])
                if files is None:
                    continue
                self.files[cell] = self.ray.put(files)
            if any(r.get("status") == "failed" for r in _rows_of(result)):
                continue  # a failed cell runs again
            self.results[cell] = result
            self.resumed.append(cell.label)
        if self.resumed:
            self.bar.write(f"resuming: {len(self.resumed)} of {len(self.cells)} cells finished "
                           f"in an earlier run of this sweep")

    # ---- results ------------------------------------------------------------------------
    def _model(self, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if name in self.failed:
            return self.failed[name]
        parent = self.results[C.Cell(C.PARENT, name)]
        timed = self.results[C.Cell(C.TIME, name)]
        model = dict(parent["model"], eager=timed["eager"], timed_on=timed["node"])
        # a device's latency names the device (its rows' "device"), not the node
        rows = [dict(r, timed_on=timed["node"]) if r.get("latency") and not r.get("device")
                else r for r in timed["rows"]]
        return model, rows

    def record(self, address: str, ray_log: Path) -> dict[str, Any]:
        """Where the cells ran, what was retried or resumed, and warnings for the report."""
        nodes: dict[str, dict[str, Any]] = {}
        for c, r in self.results.items():
            if r.get("node"):
                nodes.setdefault(r["node"]["node"], r["node"])
        kinds: dict[str, set[str]] = {}
        for c, r in self.results.items():
            if c.timing and r.get("node"):
                kinds.setdefault(r["node"]["cpu"], set()).add(r["node"]["node"])
        warnings = []
        if len(kinds) > 1:
            where = "; ".join(f"{k} on node(s) {', '.join(sorted(v))}" for k, v in kinds.items())
            warnings.append(f"latency was measured on {len(kinds)} kinds of CPU ({where}): each "
                            f"speed-up pairs PyTorch eager and the file on the same node, but "
                            f"compare latencies across models only within one kind")
        retried = self.pool.retried
        if retried:
            cells = retried_cells(retried)
            warnings.append(f"{len(cells)} cell(s) ran again after losing their node or "
                            f"worker: {', '.join(cells)}")
        devices = [r["device"]["address"] for c, r in self.results.items()
                   if c.timing and r.get("device")]
        return {"executor": "ray", "address": address, "nodes": list(nodes.values()),
                "device": devices[0] if devices else None,
                "cells": len(self.cells), "resumed": self.resumed, "retried": retried,
                "placements": self.pool.placements, "ray_log": str(ray_log), "warnings": warnings}


def _device_identity(config: BenchmarkConfig) -> list[Any]:
    """What makes two devices the same for a time cell: address, Python, ssh config (nothing
    without a device, so the keys of host timings stay as they were)."""
    if not config.device:
        return []
    opts = config.device_options or {}
    return [["device", config.device, opts.get("python"), opts.get("ssh_config")]]


def _record_latency(result: dict[str, Any]) -> None:
    """A time cell's latency into the manifests of the output folder's files (the rows name
    them), with the record of the machine that timed them and when."""
    rows = [(r, Path(r["file"])) for r in result["rows"] if r.get("file")]
    C.record_latency(rows, result["machine"], result["measured"])


def _rows_of(result: dict[str, Any]) -> list[dict[str, Any]]:
    return result.get("rows") or ([result["row"]] if "row" in result else [])
