"""A model file as a function of preprocessed pixels: NCHW float batch in, float logits out.

What the host stages compare files with (validation against the PyTorch parent, fp32 vs int8
accuracy, Deep Compression's check): the file runs in its own runtime through the runner's
backends; the batch is laid out as the file takes it, fed through an integer input's own
quantization and an integer output is dequantized (``device_runners.quantization``), so every
file of a model is compared on the same pixels. numpy only.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from device_runners.quantization import dequantize, quantize
from edgebase.errors import ShapeError


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
        outs = b.run(quantize(to_layout(x, self.layout), b.inputs[0]))
        return dequantize(outs[0], b.outputs[0])

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "FileLogits":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
