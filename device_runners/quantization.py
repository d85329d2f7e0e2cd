"""A model's integer inputs and outputs as floats and back: real = scale * (q - zero_point).

The one place that maps between the values a classifier computes with and the integers an
int8 file takes or gives: ``runner eval``, the host's comparisons against PyTorch
(``file_logits``) and ``deploy benchmark`` all feed and read files through it, so every file is
measured on the same integers. Rounding is half to even before the zero point is added, then
clamped to the dtype (ONNX QuantizeLinear's rule). numpy only.
"""
from __future__ import annotations

import numpy as np

from edgebase.errors import ConfigError


def is_quantized(spec) -> bool:
    """An integer tensor with a scale (an integer tensor without one is taken as it is)."""
    return np.dtype(spec.dtype).kind in "iu" and bool(spec.scale)


def quantize(x: np.ndarray, spec) -> np.ndarray:
    """Float values for input ``spec`` in its dtype: round(x / scale) + zero_point, clamped;
    a float input takes them cast to its dtype."""
    dtype = np.dtype(spec.dtype)
    if dtype.kind not in "iu":
        return np.ascontiguousarray(x, dtype=dtype)
    if not spec.scale:
        raise ConfigError(f"input {spec.name!r} is {spec.dtype} without quantization "
                          f"parameters; cannot feed normalised values")
    return clamp_to_dtype(np.round(np.asarray(x) / spec.scale) + (spec.zero_point or 0), dtype)


def clamp_to_dtype(x: np.ndarray, dtype) -> np.ndarray:
    """Whole-number values into an integer dtype, clamped to its range (raw pixels fed to an
    integer input need no scale)."""
    info = np.iinfo(dtype)
    return np.ascontiguousarray(np.clip(np.rint(x), info.min, info.max), dtype=dtype)


def dequantize(q: np.ndarray, spec) -> np.ndarray:
    """float32 values of output ``spec``: (q - zero_point) * scale for a quantized tensor,
    else the values as float32."""
    q = np.asarray(q)
    if not is_quantized(spec):
        return q.astype(np.float32, copy=False)
    return ((q.astype(np.float32) - (spec.zero_point or 0)) * spec.scale).astype(np.float32,
                                                                                 copy=False)
