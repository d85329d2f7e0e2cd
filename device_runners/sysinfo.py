"""What the benchmark reports about the machine: CPU, cores, peak MAC rate, memory.

Read from /proc/cpuinfo and sysfs (Linux); elsewhere fields stay None rather than guessed.
The fp32 peak is derived, and the derivation travels with the number:
    peak MAC/s = cores x clock x FMA pipes per core x fp32 lanes per FMA
with lanes from the widest vector FMA the CPU advertises (AVX-512: 16, AVX2+FMA: 8,
NEON/SSE: 4) and 2 FMA pipes per core (Haswell and later, Zen 2 and later, Cortex-A76 class).
"""
from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int  # logical CPUs this process may use
    mhz: float | None
    mhz_source: str
    isa: str  # widest FMA found: avx512f | avx2+fma | neon | sse | none
    lanes: int  # fp32 lanes per vector FMA
    fma_pipes: int
    peak_gmacs: float | None
    peak_derivation: str

    def to_dict(self) -> dict:
        return asdict(self)


def _cpuinfo() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # first processor block is enough
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _max_mhz() -> tuple[float | None, str]:
    """The highest sustained clock we can read, and where it came from."""
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(p.read_text()) / 1000.0, str(p)
    except (OSError, ValueError):
        pass
    info = _cpuinfo()
    if "cpu MHz" in info:
        try:
            return float(info["cpu MHz"]), "/proc/cpuinfo 'cpu MHz' (current clock; no cpufreq max)"
        except ValueError:
            pass
    return None, "unknown"


def cpu_info(fma_pipes: int = 2) -> CpuInfo:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Hardware") or platform.processor() or platform.machine()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if "avx512f" in flags:
        isa, lanes = "avx512f", 16
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "avx2+fma", 8
    elif "asimd" in flags or "neon" in flags or platform.machine() in ("aarch64", "arm64"):
        isa, lanes = "neon", 4
    elif "sse2" in flags:
        isa, lanes, fma_pipes = "sse", 4, 1  # no FMA: one mul+add pair counts as one MAC
    else:
        isa, lanes = "none", 1
    mhz, source = _max_mhz()
    if mhz:
        peak = cores * mhz / 1000.0 * fma_pipes * lanes
        derivation = (f"{cores} cores x {mhz / 1000:.3f} GHz x {fma_pipes} FMA pipes x "
                      f"{lanes} fp32 lanes ({isa}) = {peak:.1f} GMAC/s; clock from {source}")
    else:
        peak, derivation = None, "clock unknown: no peak"
    return CpuInfo(model=model, cores=cores, mhz=mhz, mhz_source=source, isa=isa, lanes=lanes,
                   fma_pipes=fma_pipes, peak_gmacs=peak, peak_derivation=derivation)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None
