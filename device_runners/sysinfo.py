"""What the benchmark reports about the machine: CPU, cores, peak MAC rates, memory.

Read from /proc/cpuinfo and sysfs (Linux); elsewhere fields stay None rather than guessed.
Peaks are derived per arithmetic, and each derivation travels with its number:
    peak MAC/s = cores x clock x MACs per cycle per core
fp32: FMA pipes x fp32 lanes of the widest vector FMA (AVX-512: 16, AVX2+FMA: 8, NEON/SSE: 4),
2 FMA pipes per core (Haswell and later, Zen 2 and later, Cortex-A76 class). int8, bf16 and f16
use the best unit the CPU advertises (``arithmetic_units``): a file's MAC rate is compared with
the peak of the arithmetic it can actually use, so an int8 file on a VNNI or AMX core is not
held to the fp32 bound.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path


ARITHMETIC_FLAGS = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
                    "asimd", "asimddp", "i8mm", "bf16", "asimdhp", "fphp", "sve", "sve2"}


@dataclass(frozen=True)
class Peak:
    unit: str  # the instruction that sets it, e.g. "AVX-512 VNNI vpdpbusd"
    macs_per_cycle: int  # per core
    gmacs: float | None  # all cores; None when the clock is unknown
    derivation: str

    def for_threads(self, threads: int, cores: int) -> float | None:
        return self.gmacs * min(threads, cores) / cores if self.gmacs else None


def arithmetic_units(flags: set[str], machine: str, fma_pipes: int = 2
                     ) -> dict[str, tuple[str, int]]:
    """{arithmetic: (unit, MACs per cycle per core)} for the best unit of each arithmetic.

    Throughputs are the instruction's MACs x the vector pipes that issue it:
    x86 int8: AMX TDPBUSD 16x16x64 MACs per 16 cycles = 1024; VNNI vpdpbusd 4 MACs per int32
    lane; AVX2 without VNNI vpmaddubsw + vpmaddwd, two multiply uops per 32 u8 x s8 MACs.
    ARM int8: i8mm smmla 32 MACs, dotprod sdot 16, plain NEON smlal 8 per 128-bit instruction.
    """
    units: dict[str, tuple[str, int]] = {}
    arm = "asimd" in flags or "neon" in flags or machine in ("aarch64", "arm64")
    if "avx512f" in flags:
        units["f32"] = ("AVX-512 FMA", fma_pipes * 16)
    elif "avx2" in flags and "fma" in flags:
        units["f32"] = ("AVX2 FMA", fma_pipes * 8)
    elif arm:
        units["f32"] = ("NEON FMLA", fma_pipes * 4)
    elif "sse2" in flags:
        units["f32"] = ("SSE mul+add", 4)  # no FMA: one mul+add pair counts as one MAC
    if "amx_int8" in flags:
        units["int8"] = ("AMX TDPBUSD", 1024)
    elif "avx512_vnni" in flags:
        units["int8"] = ("AVX-512 VNNI vpdpbusd", fma_pipes * 64)
    elif "avx_vnni" in flags:
        units["int8"] = ("AVX-VNNI vpdpbusd", fma_pipes * 32)
    elif "avx512bw" in flags:
        units["int8"] = ("AVX-512BW vpmaddubsw+vpmaddwd", fma_pipes * 32)
    elif "avx2" in flags:
        units["int8"] = ("AVX2 vpmaddubsw+vpmaddwd", fma_pipes * 16)
    elif "i8mm" in flags:
        units["int8"] = ("NEON i8mm smmla", fma_pipes * 32)
    elif "asimddp" in flags:
        units["int8"] = ("NEON dotprod sdot", fma_pipes * 16)
    elif arm:
        units["int8"] = ("NEON smlal", fma_pipes * 8)
    if "amx_bf16" in flags:
        units["bf16"] = ("AMX TDPBF16PS", 512)
    elif "avx512_bf16" in flags:
        units["bf16"] = ("AVX-512 BF16 vdpbf16ps", fma_pipes * 32)
    elif arm and "bf16" in flags:
        units["bf16"] = ("NEON BFDOT", fma_pipes * 8)
    if "amx_fp16" in flags:
        units["f16"] = ("AMX TDPFP16PS", 512)
    elif "avx512_fp16" in flags:
        units["f16"] = ("AVX-512 FP16 vfmadd*ph", fma_pipes * 32)
    elif arm and ("asimdhp" in flags or "fphp" in flags):
        units["f16"] = ("NEON FMLA (half)", fma_pipes * 8)
    return units


BOOST_HEADROOM = 2.0  # see CpuInfo.impossible_share


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int  # logical CPUs this process may use
    mhz: float | None
    mhz_source: str
    isa: str  # widest FMA found: avx512f | avx2+fma | neon | sse | none
    lanes: int  # fp32 lanes per vector FMA
    fma_pipes: int
    peak_gmacs: float | None  # the fp32 peak (peaks["f32"])
    peak_derivation: str
    flags: tuple[str, ...] = ()  # the arithmetic-relevant flags present
    peaks: dict[str, Peak] = field(default_factory=dict)  # by arithmetic: f32 int8 bf16 f16

    @property
    def clock_is_max(self) -> bool:
        """The clock behind the peaks is the CPU's maximum (cpufreq), not the clock it happened
        to run at when read (all a VM shows): only then is a peak a hard upper bound."""
        return "cpuinfo_max_freq" in self.mhz_source

    @property
    def impossible_share(self) -> float:
        """Share of a peak above which a measured rate cannot be true (the timed call skipped
        work). Boost clocks run up to about twice the clock a VM reports (an EPYC read at 2.45
        GHz boosts to 3.5, a Xeon read at 2.0 to 3.8), so without cpufreq's maximum only a rate
        beyond that is impossible."""
        return 1.0 if self.clock_is_max else BOOST_HEADROOM

    def peak(self, arithmetic: str) -> Peak | None:
        """The peak of ``arithmetic`` (f32, int8, bf16, f16); None when the CPU has no unit."""
        return self.peaks.get(arithmetic)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CpuInfo":
        """Back from ``to_dict`` (a report's JSON); older records without ``peaks`` keep
        their fp32 peak."""
        d = dict(d)
        peaks = {k: Peak(**v) for k, v in (d.pop("peaks", None) or {}).items()}
        if not peaks and d.get("peak_gmacs"):
            peaks["f32"] = Peak(unit=f"{d.get('isa')} FMA", macs_per_cycle=0,
                                gmacs=d["peak_gmacs"], derivation=d.get("peak_derivation", ""))
        d["flags"] = tuple(d.get("flags") or ())
        return cls(**d, peaks=peaks)


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
    machine = platform.machine().lower()
    if "avx512f" in flags:
        isa, lanes = "avx512f", 16
    elif "avx2" in flags and "fma" in flags:
        isa, lanes = "avx2+fma", 8
    elif "asimd" in flags or "neon" in flags or machine in ("aarch64", "arm64"):
        isa, lanes = "neon", 4
    elif "sse2" in flags:
        isa, lanes, fma_pipes = "sse", 4, 1  # no FMA: one mul+add pair counts as one MAC
    else:
        isa, lanes = "none", 1
    mhz, source = _max_mhz()
    peaks = {}
    for arithmetic, (unit, per_cycle) in arithmetic_units(flags, machine, fma_pipes).items():
        if mhz:
            gmacs = cores * mhz / 1000.0 * per_cycle
            how = (f"{cores} cores x {mhz / 1000:.3f} GHz x {per_cycle} {arithmetic} MACs/cycle "
                   f"({unit}) = {gmacs:.1f} GMAC/s; clock from {source}")
        else:
            gmacs, how = None, f"{unit}, {per_cycle} MACs/cycle per core; clock unknown: no peak"
        peaks[arithmetic] = Peak(unit=unit, macs_per_cycle=per_cycle, gmacs=gmacs, derivation=how)
    if mhz:
        peak = cores * mhz / 1000.0 * fma_pipes * lanes
        derivation = (f"{cores} cores x {mhz / 1000:.3f} GHz x {fma_pipes} FMA pipes x "
                      f"{lanes} fp32 lanes ({isa}) = {peak:.1f} GMAC/s; clock from {source}")
    else:
        peak, derivation = None, "clock unknown: no peak"
    relevant = tuple(sorted(f for f in flags if f in ARITHMETIC_FLAGS))
    return CpuInfo(model=model, cores=cores, mhz=mhz, mhz_source=source, isa=isa, lanes=lanes,
                   fma_pipes=fma_pipes, peak_gmacs=peak, peak_derivation=derivation,
                   flags=relevant, peaks=peaks)


def machine_record(cpu: CpuInfo) -> dict:
    """What a latency record says about the machine it was measured on."""
    return {"cpu": cpu.model, "cores": cpu.cores, "isa": cpu.isa, "os": platform.platform(),
            "python": platform.python_version()}


def cpu_tag(cpu: CpuInfo | None = None) -> str:
    """A short file-name tag for the CPU kind: vendor and best int8 unit, e.g. ``amd-avx2``,
    ``intel-amx``, ``arm-dotprod``. Results measured on different kinds are kept apart by it."""
    cpu = cpu or cpu_info()
    model = cpu.model.lower()
    vendor = next((v for v in ("intel", "amd", "apple", "arm") if v in model),
                  "arm" if cpu.isa == "neon" else "cpu")
    flags = set(cpu.flags)
    for flag, kind in (("amx_int8", "amx"), ("avx512_vnni", "avx512-vnni"),
                       ("avx_vnni", "avx-vnni"), ("avx512f", "avx512"), ("avx2", "avx2"),
                       ("i8mm", "i8mm"), ("asimddp", "dotprod"), ("asimd", "neon")):
        if flag in flags:
            return f"{vendor}-{kind}"
    return f"{vendor}-{cpu.isa}"


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
