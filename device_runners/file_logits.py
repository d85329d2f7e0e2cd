"""A model file as a function of preprocessed pixels: NCHW float batch in, float logits out.

What the host stages compare files with (validation against the PyTorch parent, fp32 vs int8
accuracy, Deep Compression's check): the file runs in its own runtime through the runner's
backends; the batch is laid out as the file takes it, fed through an integer input's own
quantization (q = round(x / scale) + zero_point, clamped to the dtype) and an integer output
is dequantized, so every file of a model is compared on the same pixels. numpy only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgebase.errors import ShapeError


def quantize_input(x: np.ndarray, spec) -> np.ndarray:
    dt = np.dtype(spec.dtype)
    if dt.kind == "f":
        return np.ascontiguousarray(x, dtype=dt)
    info = np.iinfo(dt)
    q = np.round(x / spec.scale) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(dt)


def dequantize_output(y: np.ndarray, spec) -> np.ndarray:
    if np.dtype(spec.dtype).kind == "f" or not spec.scale:
        return np.asarray(y, np.float32)
    return ((y.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)


class FileLogits:
    """The logits of a model file in its runtime for NCHW float batches.

    ``precision_hint`` None runs float work in f32 (the file's declared precision)."""

    def __init__(self, path: str | os.PathLike, runtime: str, layout: str,
                 threads: int | None = None, precision_hint: str | None = None):
        from device_runners.loading import load

        self.backend = load(path, runtime=runtime, threads=threads, precision_hint=precision_hint)
        self.layout = layout
        if len(self.backend.outputs) != 1:
            self.backend.close()
            raise ShapeError(f"{Path(path).name} has {len(self.backend.outputs)} outputs; a "
                             f"classifier has one")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        from edgebase.images import to_layout

        b = self.backend
        outs = b.run(quantize_input(to_layout(x, self.layout), b.inputs[0]))
        return dequantize_output(np.asarray(outs[0]), b.outputs[0])

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "FileLogits":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
