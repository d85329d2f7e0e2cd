"""A cell's work on a cluster node (a Ray task runs ``run_cell``; Ray itself is only asked
where the task runs). Files arrive and leave as FileSets laid down under the cell's key in this
machine's cache; every result is plain data (rows, numbers, the node's name and CPU).

Errors a cell expects (a failed export or evaluation) are in its rows, as in the local run; any
other error becomes ``{"error": ...}`` so one cell never takes the sweep down.
"""
from __future__ import annotations

import dataclasses
import socket
import time
from typing import Any

from deploy.benchmark import BenchmarkConfig, log_stderr, one_line
from deploy.sweep import cells as C
from deploy.sweep.artifacts import (FileSet, intact, node_cache, on_this_node, pack)


def node_record() -> dict[str, Any]:
    """This node: Ray's node id, host, and the CPU every timing row is tied to."""
    from device_runners.sysinfo import cpu_info, cpu_tag

    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside a Ray worker: this machine only
        node_id = None
    cpu = cpu_info()
    return {"node": node_id[:12] if node_id else socket.gethostname(),
            "host": socket.gethostname(), "cpu": cpu_tag(cpu), "cpu_model": cpu.model,
            "cores": cpu.cores}


def run_cell(kind: str, key: str, config: BenchmarkConfig, name: str, args: dict[str, Any],
             *files: FileSet | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        out = _WORK[kind](key, config, name, args, files)
    except Exception as err:  # noqa: BLE001 - reported in the cell's result, never raised
        out = {"error": one_line(err)}
    out.update(node=node_record(), seconds=round(time.perf_counter() - t0, 2))
    return out


def _parent(key, config, name, args, files) -> dict[str, Any]:
    source = C.load_parent(name, config)
    out = C.run_parent(source, config, log_stderr)
    pred = out["torch_pred"]
    return {"model": out["model"], "torch_pred": None if pred is None else pred.tolist()}


def _export(key, config, name, args, files) -> dict[str, Any]:
    # exported into this machine's cache under the cell's key: a retry here reuses it
    local = dataclasses.replace(config, output_dir=node_cache(key))
    source = C.load_parent(name, local)
    row, path, _ = C.run_export(source, args["target"], args["precision"], local, log_stderr,
                                reuse=intact)
    return {"row": row, "files": pack(path) if row["status"] == "ok" else None}


def _evaluate(key, config, name, args, files) -> dict[str, Any]:
    import numpy as np

    from edgebase.manifest import read_manifest

    source = C.load_parent(name, config)
    path = on_this_node(files[0], args["export_key"])
    images = C.eval_images(source, config) if config.evaluate else None
    pred = args["torch_pred"]
    rows = C.run_evaluate(dict(args["row"]), path, read_manifest(path), images, args["model"],
                          None if pred is None else np.asarray(pred), config, log_stderr)
    return {"rows": rows}


def _time(key, config, name, args, files) -> dict[str, Any]:
    """With a device, its SSH session lives for this cell only: opened here, closed here, and
    the device's record (address, fingerprint) goes back with the rows.

    The latency records go back too (this machine's record and the time of measuring): the
    head writes them into the manifests of its output folder, which hold the report's files.
    This node's copies under the export keys stay as exported, so a copy packed again for
    another cell carries no records of an earlier run."""
    from deploy.benchmark import close_device_session, measured_now
    from device_runners.sysinfo import cpu_info, machine_record

    source = C.load_parent(name, config)
    rows = [dict(r) for r in args["rows"]]
    paths = [on_this_node(f, k) if f is not None else None
             for f, k in zip(files, args["export_keys"])]
    model = dict(args["model"])
    cpu = cpu_info()
    try:
        eager = C.run_time(source, model, list(zip(rows, paths)), config, cpu, log_stderr)
    finally:
        device = close_device_session(config, rows)
    return {"eager": eager, "rows": rows, "device": device, "machine": machine_record(cpu),
            "measured": measured_now()}


_WORK = {C.PARENT: _parent, C.EXPORT: _export, C.EVALUATE: _evaluate, C.TIME: _time}
