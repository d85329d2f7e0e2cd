"""`deploy benchmark` as a sweep: plan the cells, run them with an executor (this process by
default, a Ray cluster with ``--cluster``), and build the one report on this machine."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from deploy.benchmark import BenchmarkConfig, close_device_session, device_record, log_stderr
from deploy.sweep.cells import Log, plan


def run_benchmark(config: BenchmarkConfig, command: str = "", log: Log = log_stderr,
                  executor=None) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict (see deploy.benchmark_report)."""
    from deploy.sweep.local import LocalExecutor
    from deploy.toolchain import versions
    from device_runners import sysinfo

    executor = executor or LocalExecutor()
    cpu = sysinfo.cpu_info()
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load_start = os.getloadavg()
    results = executor.run(config, plan(config), cpu, log)
    models, cells = [], []
    for name in config.models:
        model, rows = results[name]
        models.append(model)
        cells.extend(rows)
    cluster = getattr(executor, "record", None)
    device = close_device_session(config, cells)  # a session this process opened
    if device is None and cluster and cluster.get("device"):  # the time cells' sessions
        device = device_record(cluster["device"], cells)
    report = {
        "device": device,
        "command": command, "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": {"cpu": cpu.to_dict(), "load_average_start": list(load_start),
                    "load_average_end": list(os.getloadavg()), "platform": sys.platform},
        "versions": versions(),
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(config).items()},
        "models": models, "cells": cells,
        "warnings": [w for m in models for w in m.get("warnings", ())],
    }
    if cluster is not None:  # where each cell ran, what was retried or resumed
        report["cluster"] = cluster
        report["warnings"] += cluster["warnings"]
    return report
