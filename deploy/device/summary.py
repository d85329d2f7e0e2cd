"""One line about a device from its fingerprint (printed under every device result)."""
from __future__ import annotations


def fingerprint_line(address, fp: dict) -> str:
    parts = [fp.get("machine") or "?"]
    cpu = fp.get("cpu_model") or ",".join(fp.get("cpu_parts", ())) or "unknown CPU"
    parts.append(f"{cpu} x{fp.get('cores_usable') or fp.get('cores') or '?'}")
    if fp.get("max_freq_mhz"):
        parts.append("max " + "/".join(str(f) for f in fp["max_freq_mhz"]) + " MHz")
    parts.append(f"governor {fp.get('governor') or 'unknown'}")
    if fp.get("temperature_c") is not None:
        parts.append(f"{fp['temperature_c']:.1f} °C")
    if fp.get("throttled") not in (None, "0", "0x0"):
        parts.append(f"throttled {fp['throttled']}")
    parts.append(fp.get("os") or "unknown OS")
    parts.append(f"Python {fp.get('python')}")
    versions = fp.get("versions") or {}
    if versions:
        parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    if fp.get("emulated"):
        emulator = fp["emulated"] if isinstance(fp["emulated"], str) else "an emulator"
        parts.append(f"EMULATED by {emulator}: timings are not a board's")
    return f"device {address}: " + "; ".join(parts)
