"""OpenVINO backend (CPU plugin) for IR ``.xml`` files (weights in the ``.bin`` beside them).

OpenVINO also reads ``.onnx`` and ``.tflite`` directly, so ``--runtime openvino`` works on
those too. A batch that differs from a static declared batch runs in chunks.

The CPU plugin's default float precision depends on the CPU: bf16 on Xeons with AMX/AVX512_BF16,
f16 on some ARM cores, f32 elsewhere. Files are compiled with ``INFERENCE_PRECISION_HINT=f32``
unless another hint is asked for, and the precision the compiled model reports is recorded
(a hint the CPU cannot honour falls back to f32, and the record says so).

Threads keep the plugin's own placement: ``INFERENCE_NUM_THREADS`` is set from ``threads`` and
nothing else, so CPU pinning stays at its default (on: the plugin pins its threads to cores for
each inference), as a deployed app gets it. Turning it off made no difference when measured
(ShuffleNetV2 x1.0, 1 thread, the two settings alternated run by run, 10 rounds: 7.53 ms
pinned, 7.47 ms not; per round -0.26 to +0.60 ms apart while the rounds ranged 6.1-10.3 ms;
AMD EPYC, load average 2.2; benchmarks/results/openvino_pinning_amd-avx2.md). Only the
per-layer profile (openvino_layers) turns it off, so that waiting for a core other work holds
is not charged to a layer.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import MissingDependencyError, ModelFileError
from edgebase.manifest import TensorSpec
from device_runners.backends.base import Backend, first_line, guess_layout, profile_rows

SUFFIXES = (".xml", ".onnx", ".tflite")


def _ov():
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "openvino") from None
    return openvino


def _spec(port) -> TensorSpec:
    pshape = port.get_partial_shape()
    shape = tuple(-1 if d.is_dynamic else d.get_length() for d in pshape)
    try:
        dtype = np.dtype(port.get_element_type().to_dtype()).name
    except (RuntimeError, TypeError) as e:
        raise ModelFileError(f"tensor {port.get_any_name()!r}: element type "
                             f"{port.get_element_type()} has no numpy equivalent ({e})") from None
    try:
        name = port.get_any_name()
    except RuntimeError:  # unnamed port
        name = f"{port.get_node().get_friendly_name()}:{port.get_index()}"
    return TensorSpec(name=name, shape=shape, dtype=dtype, layout=guess_layout(shape))


# OpenVINO's element type names for the precisions in base.PRECISION_HINTS
_TYPE_NAMES = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


class OpenVINOBackend(Backend):
    name = "openvino"
    hints = ("f32", "bf16", "f16", "auto")
    file_kind = "an OpenVINO IR .xml file"

    @staticmethod
    def sniff(head: bytes) -> bool | None:
        text = head.lstrip()[:200]
        return text.startswith(b"<?xml") or text.startswith(b"<net")

    @classmethod
    def check_structure(cls, path: Path, head: bytes, size: int) -> None:
        """The XML parses, its root is <net>, and every Const's bytes lie inside the .bin."""
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, UnicodeDecodeError, ValueError) as e:
            raise ModelFileError(f"{path}: malformed XML ({e})") from None
        if root.tag != "net":
            raise ModelFileError(f"{path}: XML root is <{root.tag}>, an OpenVINO IR has <net>")
        bin_path = path.with_suffix(".bin")
        if bin_path.exists() and not bin_path.is_file():
            raise ModelFileError(f"{path}: {bin_path.name} is not a file")
        consts = [layer.find("data") for layer in root.iter("layer")
                  if layer.get("type") == "Const"]
        if not consts:
            return
        if not bin_path.exists():
            raise ModelFileError(f"{path}: its weights file {bin_path.name} is missing")
        bin_size = bin_path.stat().st_size
        for data in consts:
            if data is None or data.get("offset") is None:
                continue
            try:
                end = int(data.get("offset")) + int(data.get("size", 0))
            except ValueError:
                raise ModelFileError(f"{path}: a Const layer has a malformed offset/size "
                                     f"({data.get('offset')!r}, {data.get('size')!r})") from None
            if end > bin_size:
                raise ModelFileError(f"{path}: weights reach byte {end} but {bin_path.name} "
                                     f"has {bin_size} bytes (truncated or mismatched .bin)")

    @staticmethod
    def import_runtime() -> None:
        _ov()

    @classmethod
    def default_precision(cls) -> str:
        return _ov().Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()

    def __init__(self, path: str | Path, threads: int | None = None,
                 precision_hint: str | None = None):
        self.precision_hint = self.check_hint(precision_hint)
        self.path = Path(path)
        ov = _ov()
        self._ov = ov
        self.version = ov.__version__.split("-")[0]
        self.threads = threads
        self._core = ov.Core()
        if self.path.suffix == ".xml" and not self.path.with_suffix(".bin").exists():
            raise ModelFileError(f"{self.path}: its weights file "
                                 f"{self.path.with_suffix('.bin').name} is missing")
        try:
            self._model = self._core.read_model(str(self.path))
            self._compiled = self._compile(perf=False)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses for bad files
            raise ModelFileError(f"{self.path}: not a valid OpenVINO model "
                                 f"({first_line(e)})") from None
        self._request = self._compiled.create_infer_request()
        self.inputs = tuple(_spec(p) for p in self._compiled.inputs)
        self.outputs = tuple(_spec(p) for p in self._compiled.outputs)
        self.inference_precision = (
            self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
        device = self._core.get_property("CPU", "FULL_DEVICE_NAME")
        self.provider = (f"CPU ({device}; inference precision {self.inference_precision}, "
                         f"hint {self.precision_hint})")

    def embedded(self):
        """The ``edgedeploy`` section of the model's rt_info (written by ``deploy export``)."""
        from device_runners.embedded import from_properties

        try:
            section = self._model.get_rt_info()["edgedeploy"]
            items = section.items() if isinstance(section, dict) else section.astype(dict).items()
            props = {k: v.astype(str) if hasattr(v, "astype") else str(v) for k, v in items}
        except (KeyError, RuntimeError, TypeError, AttributeError):
            return None
        return from_properties(props, "OpenVINO rt_info")

    def _compile(self, perf: bool):
        config: dict[str, Any] = {}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        if self.precision_hint != "auto":
            config["INFERENCE_PRECISION_HINT"] = _TYPE_NAMES[self.precision_hint]
        if perf:
            config["PERF_COUNT"] = True
        return self._core.compile_model(self._model, "CPU", config)

    def _infer(self, request, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for i, t in enumerate(self.inputs):
            request.set_input_tensor(i, self._ov.Tensor(feeds[t.name]))
        request.infer()
        return [np.array(request.get_output_tensor(i).data) for i in range(len(self.outputs))]

    def run(self, x: Any) -> list[np.ndarray]:
        return self.run_in_declared_batches(self.feeds(x),
                                            lambda feeds: self._infer(self._request, feeds))

    def bind(self, x: Any) -> Callable[[], Any]:
        feeds = self.feeds(x)
        self.check_bindable(feeds)
        self._bound = feeds  # ov.Tensor shares the numpy memory: keep it alive
        for i, t in enumerate(self.inputs):
            self._request.set_input_tensor(i, self._ov.Tensor(feeds[t.name], shared_memory=True))
        return self._request.infer

    def profile(self, x: Any, runs: int = 10) -> list[dict[str, Any]] | None:
        """OpenVINO's performance counters (PERF_COUNT) over ``runs`` inferences after one
        warm-up (see ``window_total_us``)."""
        feeds = self.feeds(x)
        request = self._compile(perf=True).create_infer_request()
        self._infer(request, feeds)  # warm-up
        before = counters(request)
        for _ in range(runs):
            self._infer(request, feeds)
        rows = {}
        for name, (mean_us, kind) in counters(request).items():
            us = window_total_us(before.get(name, (0, kind))[0], 1, mean_us, 1 + runs)
            if us > 0:
                rows[name] = {"calls": runs, "total_us": float(us), "type": kind}
        return profile_rows(rows, runs)

    def close(self) -> None:
        self._request = self._compiled = self._model = None


def counters(request) -> dict[str, tuple[int, str]]:
    """{node: (its counter, node type)}. The CPU plugin's counter of a node is its running
    mean since compilation, in whole microseconds per run (each run's time rounded down)."""
    return {info.node_name: (round(info.real_time.total_seconds() * 1e6), info.node_type)
            for info in request.profiling_info}


def window_total_us(mean_before: int, n_before: int, mean_after: int, n_after: int) -> int:
    """A node's time over runs n_before+1 .. n_after from two readings of its running mean
    (whole microseconds, rounded down: the total after n runs lies in [mean*n, mean*n + n-1]):
    the lower bound of the difference, never negative. Read once, a running mean carries the
    warm-up and the first run's one-time work."""
    upper_before = mean_before * n_before + max(n_before - 1, 0)
    return max(mean_after * n_after - upper_before, 0)
