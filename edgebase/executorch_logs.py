"""Warnings that importing ExecuTorch logs on every run and that say nothing about the run.

The exporter, the PT2E quantizer and the runtime all import torchao (``executorch`` imports it
too). torchao's ``__init__`` tries to load each compiled extension it ships and logs a warning
for each that fails: on a CPU-only torch its two CUDA kernel libraries (``_C_mxfp8``, MX-fp8
GEMMs; ``_C_cutlass_90a``, Hopper CUTLASS kernels) always fail. Neither is used to export,
quantize or run on a CPU, so those two lines are dropped, and so is torch's deprecation notice
for torchao registering its own ``KernelPreference`` enum as a pytree constant. Any other
warning of torchao or torch (a skipped extension after a torch version mismatch, say) shows.
"""
from __future__ import annotations

import logging
import re

# "Failed to load <site-packages>/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so: <reason>"
_CUDA_KERNELS = re.compile(r"Failed to load \S*torchao[\\/]_C_(mxfp8|cutlass_90a)\.[^\s:]*\.so:")


class _TorchaoImportNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "torchao":
            return not _CUDA_KERNELS.match(record.getMessage())
        if record.name == "torch.utils._pytree":  # "%s is an Enum subclass and is now ..."
            cls = record.args[0] if isinstance(record.args, tuple) and record.args else None
            return not (isinstance(cls, type) and cls.__module__.startswith("torchao")
                        and "is an Enum subclass" in str(record.msg))
        return True


_FILTER = _TorchaoImportNoise()


def quiet_torchao_import() -> None:
    """Drop those lines from now on (call before importing executorch or torchao; a logger
    filter sees only its own logger's records, and adding the same filter twice is a no-op)."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).addFilter(_FILTER)
