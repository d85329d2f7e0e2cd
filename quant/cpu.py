"""What the host CPU can do for int8 kernels; recorded in every int8 manifest.

x86 cores without VNNI multiply u8 x s8 pairs with ``vpmaddubsw``, whose int16 sum of two
products saturates when both weights are large. onnxruntime's own guidance, and our measurement
on this machine (AMD EPYC Zen 3, AVX2, no VNNI), is to quantize weights to 7 bits there
(``reduce_range=True``). VNNI (``avx512_vnni`` / ``avx_vnni``) and ARM dot-product cores
accumulate in int32 and need no range reduction.
"""
from __future__ import annotations

import platform
from functools import lru_cache
from pathlib import Path

VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
INTERESTING = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8",
               "asimd", "asimddp", "i8mm")


@lru_cache(maxsize=1)
def cpu_profile() -> dict:
    """{"machine", "model", "flags": [int8-relevant flags present], "vnni": bool}."""
    model, flags = platform.processor() or "", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    present = sorted(f for f in INTERESTING if f in flags)
    machine = platform.machine().lower()
    return {"machine": machine, "model": model, "flags": present,
            "vnni": any(f in flags for f in VNNI_FLAGS),
            "x86": machine in ("x86_64", "amd64", "i686", "x86")}


def default_reduce_range() -> tuple[bool | str, str]:
    """onnxruntime's reduce_range default for this CPU, and why.

    ``"gemm"``: 7-bit weights only for the layers that run as u8 x s8 GEMM (depthwise convs
    keep 8 bits). Measured on MobileNetV1-0.25 (800 ImageNet photos, bias-corrected): top-1
    agreement with fp32 83.1 % with 8-bit weights everywhere (saturation), 86.5 % with 7-bit
    weights everywhere, 88.3 % with "gemm" (simulated without saturation: 88.9 %)."""
    cpu = cpu_profile()
    if cpu["x86"] and not cpu["vnni"]:
        return "gemm", ("x86 without VNNI: u8 x s8 pair sums saturate int16 in vpmaddubsw; "
                        "7-bit weights for GEMM-backed layers, 8-bit for depthwise")
    if cpu["x86"]:
        return False, "x86 with VNNI: int32 accumulation, full 8-bit weights"
    return False, f"{cpu['machine']}: no u8 x s8 saturation, full 8-bit weights"
