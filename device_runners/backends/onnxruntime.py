"""onnxruntime backend (CPU execution provider) for ``.onnx`` files.

A batch that differs from a fixed declared batch runs in chunks of the declared size;
a symbolic batch axis takes any batch directly.
"""
from __future__ import annotations

import functools
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import MissingDependencyError, ModelFileError
from edgebase.manifest import TensorSpec
from device_runners.backends.base import Backend, first_line, guess_layout, profile_rows

SUFFIXES = (".onnx", ".ort")

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int16)": "int16",
           "tensor(uint16)": "uint16", "tensor(int32)": "int32", "tensor(int64)": "int64",
           "tensor(bool)": "bool"}


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnxruntime") from None
    return onnxruntime


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
    dtype = _DTYPES.get(arg.type)
    if dtype is None:
        raise ModelFileError(f"tensor {arg.name!r} has type {arg.type}, which the runner "
                             f"does not feed; supported: {', '.join(sorted(_DTYPES))}")
    return TensorSpec(name=arg.name, shape=shape, dtype=dtype, layout=guess_layout(shape))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    file_kind = "an ONNX file"

    @staticmethod
    def sniff(head: bytes) -> bool | None:
        # ModelProto: field 1 ir_version (varint, tag 0x08) is written first by onnx; other
        # writers may order fields differently, so anything else is "cannot tell"
        return True if len(head) >= 2 and head[0] == 0x08 and head[1] < 0x80 else None

    @staticmethod
    def import_runtime() -> None:
        _ort()

    def __init__(self, path: str | Path, threads: int | None = None,
                 precision_hint: str | None = None):
        self.precision_hint = self.check_hint(precision_hint)
        self.path = Path(path)
        ort = _ort()
        self.version = ort.__version__
        self.threads = threads
        self._session = self._open(ort, profile_dir=None)
        self.provider = self._session.get_providers()[0]
        self.inputs = tuple(_spec(a) for a in self._session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self._session.get_outputs())
        self._names = [t.name for t in self.outputs]

    def _open(self, ort, profile_dir: str | None):
        so = ort.SessionOptions()
        so.log_severity_level = 3  # runtime warnings are not ours to print
        if self.threads:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        if profile_dir:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(profile_dir) / "ort")
        try:
            return ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own pybind types for bad files
            raise ModelFileError(f"{self.path}: not a valid ONNX model "
                                 f"({first_line(e)})") from None

    def embedded(self):
        """``metadata_props``: ONNX's ``Image.*`` keys or those ``deploy export`` writes."""
        from device_runners.embedded import from_properties

        props = dict(self._session.get_modelmeta().custom_metadata_map)
        return from_properties(props, "ONNX metadata_props")

    def run(self, x: Any) -> list[np.ndarray]:
        return self.run_in_declared_batches(
            self.feeds(x), functools.partial(self._session.run, self._names))

    def bind(self, x: Any) -> Callable[[], Any]:
        feeds = self.feeds(x)
        self.check_bindable(feeds)
        return functools.partial(self._session.run, self._names, feeds)

    def close(self) -> None:
        self._session = None

    def profile(self, x: Any, runs: int = 10) -> list[dict[str, Any]] | None:
        """Aggregate the "Node" events of onnxruntime's own profiler (kernel time per node)."""
        feeds = self.feeds(x)
        with tempfile.TemporaryDirectory() as tmp:
            session = self._open(_ort(), profile_dir=tmp)
            session.run(self._names, feeds)  # warm-up, excluded below
            for _ in range(runs):
                session.run(self._names, feeds)
            events = json.loads(Path(session.end_profiling()).read_text())
        # run boundaries: the first "model_run" event is the warm-up; skip its nodes
        runs_seen = sorted(e["ts"] for e in events if e.get("name") == "model_run")
        cutoff = runs_seen[1] if len(runs_seen) > 1 else 0
        rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"calls": 0, "total_us": 0.0})
        for e in events:
            if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
                continue
            if e["ts"] < cutoff:
                continue
            name = e["name"][: -len("_kernel_time")]
            row = rows[name]
            row["type"] = e.get("args", {}).get("op_name", "")
            row["calls"] += 1
            row["total_us"] += float(e.get("dur", 0))
        return profile_rows(rows, runs)
