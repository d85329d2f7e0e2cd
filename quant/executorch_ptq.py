"""int8 PTQ for ExecuTorch: PT2E with ExecuTorch's ``XNNPACKQuantizer``, lowered with XNNPACK.

Unlike the other targets, the float file cannot be quantized: a ``.pte`` is a lowered program,
not a graph a quantizer can rewrite. So ``quantize`` works on the PyTorch ``parent`` (required)
at the float file's input shape: ``torch.export.export(parent, (x,)).module()`` ->
``prepare_pt2e(..., XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
is_per_channel=True)))`` -> one forward per calibration image -> ``convert_pt2e`` ->
``torch.export.export`` again -> ``exporters.executorch.lower`` (XNNPACK) -> ``dst``.
int8 symmetric per-channel weights, int8 asymmetric per-tensor activations, static; the
program's input and output stay float (the quantize/dequantize at its edges run inside the
delegate). Ops XNNPACK does not take (ShuffleNet's channel split, a mean without kept dims)
run outside it in float: they are the file's ``float_ops``.

Activation ranges (``method``): ``image-percentile`` (the default, as on every target: the
99th percentile of per-image extremes, ``quant.image_ranges``, with the graph input pinned to
the exact range of preprocessed pixels when ``input_range`` is given), ``minmax`` (absolute
min/max) or ``histogram`` (the XNNPACK quantizer's own HistogramObserver). Not yet here: bias
correction against the parent and layer exclusion (``--max-drop``): the weights live inside
XNNPACK's serialized blob, so they would have to be read from (and corrected in) the converted
PT2E graph before lowering.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from edgebase.errors import ConfigError, MissingDependencyError, ModelFileError
from edgebase.executorch_logs import quiet_torchao_import
from quant import image_ranges

TARGET = "executorch"
METHODS = (image_ranges.NAME, "minmax", "histogram")
QUANTIZES_PARENT = True  # a .pte is lowered: the PyTorch parent is what gets quantized
QUANTIZER = "executorch XNNPACKQuantizer (PT2E, torchao prepare_pt2e/convert_pt2e)"


@dataclass(frozen=True)
class ExecuTorchPTQOptions:
    method: str = METHODS[0]
    # exact (min, max) of preprocessed pixels, pinned as the input's range
    input_range: tuple[float, float] | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"calibration method {self.method!r} is not supported for "
                              f"executorch; valid: {', '.join(METHODS)}")


def make_options(method: str | None = None, io: str = "float", exclude=(),
                 input_range: tuple[float, float] | None = None) -> ExecuTorchPTQOptions:
    if io != "float":
        raise ConfigError(f"--io {io}: ExecuTorch int8 programs take float input (the "
                          f"quantize op runs inside the XNNPACK delegate); int8/uint8 input is "
                          f"offered by --target tflite")
    if exclude:
        raise ConfigError("executorch int8 cannot keep layers in float yet (no --max-drop "
                          "fall-back for this target)")
    return ExecuTorchPTQOptions(method=method or METHODS[0], input_range=input_range)


def _pt2e():
    quiet_torchao_import()
    try:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise MissingDependencyError("executorch and torchao (ExecuTorch int8)",
                                     "executorch") from None
    return XNNPACKQuantizer, get_symmetric_quantization_config, prepare_pt2e, convert_pt2e


def _observer(percentile: float):
    """An activation observer keeping each forward's min/max (one forward = one image here);
    its range is the ``percentile``-th percentile of the maxima and the mirror one of the
    minima (100: absolute min/max). ``pin(lo, hi)`` fixes the range (the graph input)."""
    import torch
    from torchao.quantization.pt2e.observer import MinMaxObserver

    class ImagePercentileObserver(MinMaxObserver):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.image_mins: list[float] = []
            self.image_maxs: list[float] = []
            self.pinned: tuple[float, float] | None = None

        def forward(self, x_orig):
            if x_orig.numel():
                x = x_orig.detach()
                self.image_mins.append(float(x.min()))
                self.image_maxs.append(float(x.max()))
            return super().forward(x_orig)

        def pin(self, lo: float, hi: float) -> None:
            self.pinned = (float(lo), float(hi))

        def calculate_qparams(self):
            if self.pinned is not None:
                lo, hi = self.pinned
            elif self.image_mins:
                lo, hi = image_ranges.robust_range(
                    [np.float32(v) for v in self.image_mins],
                    [np.float32(v) for v in self.image_maxs], percentile)
            else:
                return super().calculate_qparams()
            return self._calculate_qparams(torch.tensor(float(lo)), torch.tensor(float(hi)))

    return ImagePercentileObserver


def _config(options: ExecuTorchPTQOptions):
    import dataclasses

    _, get_config, _, _ = _pt2e()
    config = get_config(is_per_channel=True)
    if options.method == "histogram":
        return config
    percentile = image_ranges.PERCENTILE if options.method == image_ranges.NAME else 100.0
    spec = config.input_activation
    ctr = _observer(percentile).with_args(eps=2 ** -12)
    act = dataclasses.replace(spec, observer_or_fake_quant_ctr=ctr)
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _images(calib) -> Iterable[np.ndarray]:
    """NCHW float32 images one at a time, from a CalibrationSet, an array or an iterable of
    arrays (batches)."""
    source = calib.inputs if hasattr(calib, "inputs") else calib
    if isinstance(source, np.ndarray):
        source = [source]
    for batch in source:
        batch = np.asarray(batch, np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        for image in batch:
            yield np.ascontiguousarray(image[None])


def quantize(src: str | os.PathLike | None, dst: str | os.PathLike, calib,
             options: ExecuTorchPTQOptions = ExecuTorchPTQOptions(), parent=None,
             input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Write the int8 ``.pte`` of ``parent`` to ``dst``; returns the facts for the manifest.

    ``src`` (the validated fp32 ``.pte``) gives the input shape, unless ``input_shape`` does;
    ``calib`` is a ``quant.calibration.CalibrationSet`` (or NCHW float arrays)."""
    import torch

    from exporters.common import ConversionError, first_line, quiet
    from exporters.executorch import lower

    if parent is None:
        raise ConfigError("executorch int8 quantizes the PyTorch parent (a .pte cannot be "
                          "re-quantized): pass parent=")
    XNNPACKQuantizer, _, prepare_pt2e, convert_pt2e = _pt2e()
    shape = tuple(input_shape) if input_shape is not None else _input_shape(src)
    example = torch.zeros(shape, dtype=torch.float32)
    dst = Path(dst)
    t0 = time.perf_counter()
    seen = 0
    with quiet() as log:
        try:
            quantizer = XNNPACKQuantizer().set_global(_config(options))
            with torch.no_grad():
                graph = torch.export.export(parent.eval(), (example,)).module()
                prepared = prepare_pt2e(graph, quantizer)
                for image in _images(calib):
                    if image.shape[1:] != shape[1:]:
                        raise ConfigError(f"calibration inputs have shape {image.shape[1:]}; "
                                          f"the model takes {shape[1:]}")
                    prepared(torch.from_numpy(image))
                    seen += 1
                if not seen:
                    raise ConfigError("no calibration images were given")
                pinned = _pin_input(prepared, options.input_range)
                converted = convert_pt2e(prepared)
                program = torch.export.export(converted, (example,))
        except (ConfigError, MissingDependencyError):
            raise
        except Exception as err:
            raise ConversionError(f"PT2E quantization with XNNPACKQuantizer failed: "
                                  f"{first_line(err)}", log=log.text()) from err
    quantize_seconds = round(time.perf_counter() - t0, 3)
    graph_facts, lower_seconds = lower(program, dst)
    return {"quantizer": QUANTIZER, "method": options.method,
            "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor",
            "io": "float", "calibration_images": seen,
            "input_range": list(options.input_range) if pinned else None,
            "excluded": [], "bias_correction": None,
            "quantize_seconds": quantize_seconds, "lower_seconds": lower_seconds,
            **graph_facts, "float_ops": graph_facts["non_delegated_ops"],
            "fully_integer": not graph_facts["non_delegated_ops"]}


def _pin_input(prepared, input_range) -> bool:
    """Fix the range of the observer on the graph input to ``input_range``; True if done."""
    if input_range is None:
        return False
    done = False
    for node in prepared.graph.nodes:
        if node.op != "placeholder":
            continue
        for user in node.users:
            module = getattr(prepared, str(user.target), None) if user.op == "call_module" else None
            if module is not None and hasattr(module, "pin"):
                module.pin(*input_range)
                done = True
    return done


def _input_shape(src) -> tuple[int, ...]:
    """The fp32 program's (static) input shape, read with the ExecuTorch runtime."""
    if src is None:
        raise ConfigError("give the fp32 .pte (src) or input_shape")
    from device_runners.backends.executorch import ExecuTorchBackend

    path = Path(src)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    backend = ExecuTorchBackend(path)
    try:
        if len(backend.inputs) != 1:
            raise ModelFileError(f"{path}: {len(backend.inputs)} inputs; int8 PTQ takes one")
        return tuple(backend.inputs[0].shape)
    finally:
        backend.close()


def layer_names(path: str | os.PathLike) -> list[str]:
    raise ConfigError("executorch int8 has no per-layer fall-back yet (--max-drop)")


def target_layers(path: str | os.PathLike):
    raise ConfigError("executorch int8 has no per-layer sensitivity yet: its weights sit "
                      "inside XNNPACK's serialized blob")
