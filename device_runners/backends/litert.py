"""LiteRT (TensorFlow Lite) backend for ``.tflite`` files.

Interpreter from ``ai-edge-litert``; only when that is absent, ``tflite_runtime`` or
``tensorflow.lite`` (tflite-runtime 2.14 imports under numpy 2 but cannot run: see the
message below). A batch that differs from the input's declared batch resizes the input tensor;
if the graph cannot be resized (a fixed Reshape, say), the batch runs in chunks instead.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import struct
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import MissingDependencyError, ModelFileError
from edgebase.manifest import TensorSpec
from device_runners.backends.base import (Backend, chunks, concat, first_line, guess_layout,
                                           raise_fixed_batch)

SUFFIXES = (".tflite",)


def _interpreter_module():
    """(Interpreter class, distribution name) of the first LiteRT that imports."""
    try:
        from ai_edge_litert import interpreter as mod
        return mod, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod
        return mod, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # the heavy last resort
        return tf.lite, "tensorflow"
    except ImportError:
        raise MissingDependencyError("ai-edge-litert (LiteRT)", "litert") from None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _spec(d: dict) -> TensorSpec:
    scale, zp = d.get("quantization", (0.0, 0))
    shape = tuple(int(s) for s in d.get("shape_signature", d["shape"]))
    quantized = bool(scale) and np.dtype(d["dtype"]).kind in "iu"
    return TensorSpec(name=d["name"], shape=shape, dtype=np.dtype(d["dtype"]).name,
                      layout=guess_layout(shape),
                      scale=float(scale) if quantized else None,
                      zero_point=int(zp) if quantized else None)


class LiteRTBackend(Backend):
    name = "litert"
    file_kind = "a TFLite flatbuffer (no 'TFL3' identifier)"

    @staticmethod
    def sniff(head: bytes) -> bool | None:
        return len(head) >= 8 and head[4:8] == b"TFL3"

    @classmethod
    def check_structure(cls, path: Path, head: bytes, size: int) -> None:
        root = struct.unpack_from("<I", head, 0)[0]
        if root + 4 > size:
            raise ModelFileError(f"{path}: truncated TFLite file (root table at byte {root}, "
                                 f"file has {size} bytes)")

    @staticmethod
    def import_runtime() -> None:
        _interpreter_module()

    def __init__(self, path: str | Path, threads: int | None = None,
                 precision_hint: str | None = None):
        self.precision_hint = self.check_hint(precision_hint)
        self.path = Path(path)
        mod, dist = _interpreter_module()
        self.version = f"{dist} {_version(dist)}"
        self.threads = threads
        try:
            with quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
                self._interp = mod.Interpreter(model_path=str(self.path), num_threads=threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(f"{self.path}: not a valid TFLite model "
                                 f"({first_line(e)})") from None
        except ImportError as e:  # tflite-runtime 2.14 under numpy 2
            raise MissingDependencyError(f"a LiteRT that works with this numpy ({e})",
                                         "litert") from None
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self.inputs = tuple(_spec(d) for d in self._in)
        self.outputs = tuple(_spec(d) for d in self._out)
        self._declared = [tuple(int(s) for s in d["shape"]) for d in self._in]
        self._batch = self._declared[0][0] if self._declared[0] else 1
        self._fixed: int | None = None  # set when resizing failed: run in chunks of this
        self.provider = "CPU (XNNPACK delegate)" if dist != "tensorflow" else "CPU"

    # ---- batch handling ----------------------------------------------------------------
    def _resize(self, batch: int) -> bool:
        if batch == self._batch:
            return True
        if self._fixed is not None or not self._declared[0]:
            return False
        try:
            for d, shape in zip(self._in, self._declared):
                self._interp.resize_tensor_input(d["index"], [batch, *shape[1:]])
            self._interp.allocate_tensors()
            self._batch = batch
            return True
        except (ValueError, RuntimeError):
            # the graph pins its batch: go back to the declared shapes and chunk
            for d, shape in zip(self._in, self._declared):
                self._interp.resize_tensor_input(d["index"], list(shape))
            self._interp.allocate_tensors()
            self._batch = self._declared[0][0]
            self._fixed = self._batch
            return False

    def _set(self, feeds: dict[str, np.ndarray]) -> None:
        for d in self._in:
            self._interp.set_tensor(d["index"], feeds[d["name"]])

    def _invoke(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self._set(feeds)
        self._interp.invoke()
        return [self._interp.get_tensor(d["index"]) for d in self._out]

    def run(self, x: Any) -> list[np.ndarray]:
        feeds = self.feeds(x)
        n = next(iter(feeds.values())).shape[0]
        if self._resize(n):
            return self._invoke(feeds)
        return concat([(self._invoke(piece), real) for piece, real in chunks(feeds, self._batch)])

    def bind(self, x: Any) -> Callable[[], Any]:
        feeds = self.feeds(x)
        n = next(iter(feeds.values())).shape[0]
        if not self._resize(n):
            raise_fixed_batch(self, n)
        self._set(feeds)
        return self._interp.invoke

    def op_counts(self) -> dict[str, int]:
        """Operator type -> count in the main graph (delegated ops appear as one DELEGATE)."""
        counts: dict[str, int] = {}
        # no public equivalent; the names only: _get_ops_details() also decodes every operand
        # tensor's name and dtype, which fails on files the interpreter runs fine (a non-UTF-8
        # tensor name, a BFLOAT16 tensor)
        native = self._interp._interpreter
        for i in range(native.NumNodes()):
            try:
                name = native.NodeName(i)
            except ValueError:  # a custom op whose name is not UTF-8
                name = "(unreadable name)"
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def embedded(self):
        """TFLite Support metadata: normalization (pixel units) and the packed labels file."""
        from edgebase.errors import DeployError
        from edgebase.tflite_metadata import metadata_buffer, read_metadata
        from device_runners.embedded import Embedded, from_pixel_units

        where = "TFLite metadata"
        try:
            data = self.path.read_bytes()
            if metadata_buffer(data) is None:
                return None
            meta = read_metadata(data)
        except (DeployError, OSError, ValueError, IndexError, UnicodeDecodeError) as e:
            return Embedded(where, problem=f"unreadable ({first_line(e)})")
        inputs = (meta["subgraphs"] or [{}])[0].get("inputs") or [{}]
        color = inputs[0].get("color_space")
        return from_pixel_units(where, meta["mean"], meta["std"],
                                labels=tuple(meta["labels"]) if meta["labels"] else None,
                                color=color if color in ("RGB",) else None)

    # LiteRT's Python interpreter has no per-operator timer (benchmark_model's
    # --enable_op_profiling is C++ only), so profile() stays None.

    def close(self) -> None:
        self._interp = None


@contextlib.contextmanager
def quiet_stderr():
    """Silence native code's writes to file descriptor 2 for the duration."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
