"""Device side: run and measure exported models with numpy and one runtime (no torch)."""
from __future__ import annotations

from device_runners.backends import load

__all__ = ["load"]
