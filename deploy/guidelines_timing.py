"""Latency of the guideline files, on this host or on a board over SSH (``--device``).

Both places time the same way: interleaved rounds, each round running the runner's ``bench``
(batch 1, inference call only) on every file at every thread count once, so a burst of other
work hits all rows alike; p50 = median of the rounds' p50s. A measurement taken while the
1-min load average of the machine that ran it exceeded its usable cores is flagged
``loaded``. On a device each bench is one runner process started over SSH; the device's load
and cores come from the fingerprint taken just before it, its peak from the runner there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class Timing:
    p50_ms: float
    p90_ms: float
    load: float | None  # 1-min load average of the machine that ran it (None: unknown)
    inference_precision: str | None
    peak_share: float | None  # achieved MAC/s over the peak of the arithmetic it ran in
    achieved_gmacs: float | None
    arithmetic: str | None
    impossible_share: float  # a peak share above this means the call skipped work


class HostTimer:
    """``runner bench`` in this process."""

    where = None

    def __init__(self, cpu, config):
        self.cpu, self.config = cpu, config
        self.cores = cpu.cores

    def __call__(self, cell: dict[str, Any], threads: int, runs: int) -> Timing:
        from device_runners.bench import bench

        load = os.getloadavg()[0]
        b = bench(cell["file"], runtime=cell["runtime"], threads=threads,
                  warmup=self.config.warmup, runs=runs, isolate=False)
        return Timing(b.p50_ms, b.p90_ms, max(load, os.getloadavg()[0]), b.inference_precision,
                      b.peak_share, b.achieved_gmacs, b.arithmetic, self.cpu.impossible_share)


class DeviceTimer:
    """``runner bench`` on ``config.device``: the runner is installed there for each runtime
    first (one look when present), then every file goes over in one copy."""

    def __init__(self, cells: list[dict[str, Any]], config):
        from deploy.benchmark import device_runner
        from deploy.commands.device import _group

        self.config = config
        device = None
        for runtime in dict.fromkeys(c["runtime"] for c in cells):
            device, _ = device_runner(config, runtime)
        self.where = str(device.address) if device else config.device
        groups = device.push_groups([_group(Path(c["file"]))[0] for c in cells]) if cells else []
        self.remote = {id(c): g[0] for c, g in zip(cells, groups)}
        self.fingerprint: dict[str, Any] = {}
        self.cpu: dict[str, Any] | None = None  # the device's CpuInfo, as its runner reports it
        self.cores: int | None = None

    def __call__(self, cell: dict[str, Any], threads: int, runs: int) -> Timing:
        from deploy.benchmark import bench_on_device
        from device_runners.sysinfo import CpuInfo

        r, fp = bench_on_device(self.config, self.remote[id(cell)], cell["runtime"], threads,
                                runs)
        self.fingerprint = fp or self.fingerprint
        self.cpu = r.get("cpu") or self.cpu
        self.cores = fp.get("cores_usable") or fp.get("cores") or self.cores
        impossible = CpuInfo.from_dict(self.cpu).impossible_share if self.cpu else float("inf")
        return Timing(r["p50_ms"], r["p90_ms"], (fp.get("load_average") or [None])[0],
                      r.get("inference_precision"), r.get("peak_share"),
                      r.get("achieved_gmacs"), r.get("arithmetic"), impossible)


def _median(values) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def summarise(rounds: list[dict[str, Any]], cores: int | None) -> dict[str, Any]:
    p50 = _median([r["p50_ms"] for r in rounds])
    loads = [r["load"] for r in rounds if r.get("load") is not None]
    load = max(loads) if loads else None
    spread = max(abs(r["p50_ms"] - p50) for r in rounds) / p50 if p50 else 0.0
    return {"p50_ms": p50, "p90_ms": _median([r["p90_ms"] for r in rounds]),
            "images_per_s": 1e3 / p50 if p50 else None, "spread": spread,
            "rounds": [round(r["p50_ms"], 4) for r in rounds], "load": load,
            "loaded": bool(load is not None and cores and load > cores)}


def measure(cells: list[dict[str, Any]], config, cpu, tick: Callable[[str], None]
            ) -> DeviceTimer | HostTimer:
    """Fill each ok cell's ``latency`` per thread count (on ``config.device`` when given,
    each record naming it); returns the timer (a device's fingerprint and CPU are on it)."""
    from deploy.benchmark import one_line

    live = [c for c in cells if c["status"] == "ok"]
    timer = DeviceTimer(live, config) if config.device else HostTimer(cpu, config)
    on = f" on {timer.where}" if timer.where else ""
    runs = max(1, config.runs // config.rounds)
    got: dict[int, dict[str, list]] = {id(c): {str(t): [] for t in config.threads} for c in live}
    for r in range(config.rounds):
        for t in config.threads:
            for cell in live:
                if cell["status"] != "ok":
                    continue
                tick(f"round {r + 1}/{config.rounds}, {t} thread(s){on}: {cell['file_name']}")
                try:
                    m = timer(cell, t, runs)
                except Exception as err:  # noqa: BLE001 - one failed cell must not stop the rest
                    cell.update(status="failed", error=one_line(err))
                    continue
                cell["inference_precision"] = m.inference_precision
                got[id(cell)][str(t)].append({"p50_ms": m.p50_ms, "p90_ms": m.p90_ms,
                                              "load": m.load})
                if m.peak_share is not None and m.peak_share > m.impossible_share:
                    cell.update(status="failed", error=(
                        f"{t} thread(s){on}: {m.achieved_gmacs:.0f} GMAC/s is "
                        f"{m.peak_share:.1f}x the {t}-core {m.arithmetic} peak: the timed call "
                        f"did not run the whole network"))
    for cell in live:
        if cell["status"] != "ok":
            continue
        cell["latency"] = {t: summarise(rs, timer.cores) for t, rs in got[id(cell)].items()}
        if timer.where:
            cell["device"] = timer.where
            for lat in cell["latency"].values():
                lat["device"] = timer.where
    return timer
