"""int8 PTQ of an OpenVINO IR with NNCF (``nncf.quantize`` on the ``ov.Model``).

Activation ranges default to ``image-percentile`` (``quant.image_ranges``), as on the other
targets: NNCF quantizes with absolute min/max ranges and without its bias correction, then
``quant.openvino_graph`` narrows every activation FakeQuantize to the 99th percentile of
per-image extremes measured on the float IR, and ``quant.bias_correction`` corrects the biases
on those ranges (trimmed mean). NNCF has no such estimator; its nearest ones failed on the
CIFAR-10 ShuffleNetV1 g3 (300 calibration images, 1000 test images, fp32 83.4 %): MINMAX 77.2 %,
MEAN_NO_OUTLIERS_MINMAX 80.4 %, MEDIAN_MINMAX 75.9 %; image-percentile 83.3 %.

The other defaults, measured on MobileNetV1-0.25 (800 held-out ImageNet photos, 200
calibration images), hold for the ``minmax`` and ``nncf`` methods:
  * ``fast_bias_correction=False`` (NNCF's full BiasCorrection): top-1 agreement with fp32
    82.0 % vs 68.1 % with the fast variant; NNCF's own tests show MobileNetV3-small collapsing
    with the fast one. Slower to quantize (about 80 s vs 30 s here).
  * ``overflow_fix``: "enable" (7-bit weights everywhere) on x86 without VNNI, where the u8 x s8
    kernels saturate: agreement 85.0 % vs 82.0 % ("first_layer", NNCF's default) and 77.8 %
    ("disable"). With VNNI NNCF's default stays.
  * NNCF has no CNN model type (``ModelType`` only knows TRANSFORMER); the default (None) is
    the CNN setting.
  * NNCF keeps squeeze-excite blocks out of ``quantize`` (its SE_BLOCK ignored pattern), which
    left 62 % of MobileNetV3-small's int8 .bin as f32 weights (1.88x smaller than fp32). Those
    layers' weights are then stored int8 per channel by ``nncf.compress_weights`` (activations
    stay float, the plugin decompresses at load): CIFAR-10 MobileNetV3-small 1.88x -> 3.14x
    smaller, top-1 82.9 % both ways on 1000 test images (fp32 83.2 %).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebase.errors import ConfigError, MissingDependencyError, ModelFileError
from quant import image_ranges
from quant.calibration import CalibrationSet
from quant.cpu import cpu_profile
from quant.openvino_graph import WEIGHTED_OPS

TARGET = "openvino"
# image-percentile: NNCF's min/max ranges narrowed to quant.image_ranges' robust ones, then our
# bias correction (quant.bias_correction) instead of NNCF's; minmax: absolute min/max and NNCF's
# bias correction; nncf: NNCF's default range estimators and bias correction
METHODS = (image_ranges.NAME, "minmax", "nncf")
OVERFLOW_FIX = ("enable", "first_layer", "disable")
QUANTIZES_PARENT = False  # quantizes the fp32 IR (parent: for bias correction)


@dataclass(frozen=True)
class OpenVINOPTQOptions:
    method: str = METHODS[0]
    fast_bias_correction: bool = False
    overflow_fix: str | None = None  # None: chosen for this CPU
    exclude: tuple[str, ...] = ()  # OpenVINO node names kept in float
    preset: str = "performance"  # symmetric activations (CPU default) | mixed

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"calibration method {self.method!r} is not supported for "
                              f"openvino; valid: {', '.join(METHODS)}")
        if self.overflow_fix not in (None, *OVERFLOW_FIX):
            raise ConfigError(f"overflow_fix {self.overflow_fix!r}; valid: {', '.join(OVERFLOW_FIX)}")
        if self.preset not in ("performance", "mixed"):
            raise ConfigError(f"preset {self.preset!r}; valid: performance, mixed")


def make_options(method: str | None = None, io: str = "float", exclude=(),
                 input_range: tuple[float, float] | None = None) -> OpenVINOPTQOptions:
    if io != "float":
        raise ConfigError(f"--int8-io {io}: OpenVINO int8 models take float input (NNCF quantizes "
                          f"it inside); int8/uint8 input is offered by --target tflite")
    return OpenVINOPTQOptions(method=method or METHODS[0], exclude=tuple(exclude))


def default_overflow_fix() -> tuple[str, str]:
    cpu = cpu_profile()
    if cpu["x86"] and not cpu["vnni"]:
        return "enable", "x86 without VNNI: u8 x s8 pair sums saturate int16; 7-bit weights"
    return "first_layer", "NNCF's default (VNNI or non-x86: no saturation)"


def overflow_enum(name: str):
    from nncf.quantization.advanced_parameters import OverflowFix

    return {"enable": OverflowFix.ENABLE, "disable": OverflowFix.DISABLE,
            "first_layer": OverflowFix.FIRST_LAYER}[name]


def _nncf():
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("nncf and openvino (OpenVINO int8)", "host") from None
    return nncf, ov


def quantize(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibrationSet,
             options: OpenVINOPTQOptions = OpenVINOPTQOptions(), parent=None) -> dict[str, Any]:
    """Write the int8 IR of ``src`` (.xml + .bin) to ``dst``; returns facts for the manifest.

    ``parent`` (the PyTorch model) is needed by ``image-percentile``, whose bias correction
    runs on it; the other methods leave the correction to NNCF."""
    nncf, ov = _nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    src, dst = Path(src), Path(dst)
    try:
        model = ov.Core().read_model(str(src))
    except RuntimeError as e:
        raise ModelFileError(f"{src}: unreadable OpenVINO IR ({str(e).splitlines()[0]})") from None
    shape = model.inputs[0].get_partial_shape()
    batch = shape[0].get_length() if shape.rank.is_static and shape[0].is_static else 1
    if options.overflow_fix is None:
        overflow, why = default_overflow_fix()
    else:
        overflow, why = options.overflow_fix, "set by the caller"
    advanced = {"overflow_fix": overflow_enum(overflow)}
    ours = options.method == image_ranges.NAME
    if ours and parent is None:
        raise ConfigError(f"calibration method {image_ranges.NAME} needs the PyTorch parent "
                          f"(its bias correction runs on it); minmax and nncf do not")
    if options.method in ("minmax", image_ranges.NAME):
        advanced["activations_range_estimator_params"] = RangeEstimatorParametersSet.MINMAX
    if ours:  # NNCF's correction would be measured on the ranges replaced below
        advanced["disable_bias_correction"] = True
    source_names = {op.get_friendly_name() for op in model.get_ordered_ops()}
    dataset = nncf.Dataset(list(calib.batches(batch)))
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE,
              "mixed": nncf.QuantizationPreset.MIXED}[options.preset]
    ignored = nncf.IgnoredScope(names=list(options.exclude), validate=True) if options.exclude \
        else None
    from exporters.common import quiet

    with quiet():
        qmodel = nncf.quantize(
            model, dataset, preset=preset, subset_size=len(calib),
            fast_bias_correction=options.fast_bias_correction, ignored_scope=ignored,
            advanced_parameters=AdvancedQuantizationParameters(**advanced))
        ranges = correction = None
        if ours:
            ranges, correction = _robust_ranges_and_biases(
                ov.Core().read_model(str(src)), qmodel, calib, batch, parent)
        weight_only = [n for n in float_weight_layers(qmodel) if n not in options.exclude]
        if weight_only:
            qmodel = nncf.compress_weights(qmodel, mode=nncf.CompressWeightsMode.INT8_SYM,
                                           ignored_scope=ignored)
    ops = Counter(op.get_type_name() for op in qmodel.get_ops())
    _save(ov, qmodel, dst, keep=source_names)
    return {"quantizer": "nncf.quantize", "preset": options.preset, "method": options.method,
            # the same record as the other targets' when ours ran; NNCF's otherwise
            "bias_correction": correction,
            "nncf_bias_correction": None if ours else (
                "fast" if options.fast_bias_correction else "full"),
            "fast_bias_correction": options.fast_bias_correction and not ours,
            "ranges": ranges, "overflow_fix": overflow,
            "overflow_fix_reason": why, "cpu": cpu_profile(), "excluded": list(options.exclude),
            "fake_quantize_count": ops.get("FakeQuantize", 0),
            "weight_only_int8": weight_only,  # layers NNCF's quantize skipped (SE blocks)
            "op_histogram": dict(sorted(ops.items()))}


def _robust_ranges_and_biases(model, qmodel, calib, batch, parent):
    """Narrow NNCF's activation ranges to the image-percentile ones, then correct the biases."""
    from quant import openvino_graph
    from quant.bias_correction import correct_biases

    fqs = openvino_graph.activation_fake_quantizes(qmodel)
    ranges = openvino_graph.fp32_ranges(model, fqs, calib.batches(batch))
    summary = openvino_graph.narrow_ranges(fqs, ranges)
    return summary, correct_biases(parent, openvino_graph.read_layers(qmodel), calib.inputs)




def _weighted_layers(model):
    """(layer, the node behind its weight input past layout ops and int8 decompression) for
    every Convolution / MatMul."""
    for op in model.get_ordered_ops():
        if op.get_type_name() in WEIGHTED_OPS:
            src = op.input_value(1).get_node()
            while src.get_type_name() in ("Convert", "Reshape", "Transpose", "Multiply",
                                          "Subtract"):
                src = src.input_value(0).get_node()
            yield op, src


def float_weight_layers(model) -> list[str]:
    """Convolution / MatMul nodes whose weights are still a float constant (no FakeQuantize and
    no int8 constant behind them)."""
    return [op.get_friendly_name() for op, src in _weighted_layers(model)
            if src.get_type_name() == "Constant" and src.get_element_type().is_real()]


# OpenVINO names the nodes NNCF inserts from a process-wide counter (``Constant_81158``), so
# the same quantization written twice gave two different .xml files
GENERATED_NAME = re.compile(r"[A-Za-z]+_\d+")


def stable_names(model, keep=frozenset()) -> None:
    """Renumber generated node names in graph order. Names from the PyTorch graph
    (``__module.features.0/...``), names in ``keep`` (the float IR's: what ``exclude`` and the
    sensitivity ranking refer to) and I/O tensor names stay."""
    for index, op in enumerate(model.get_ordered_ops()):
        name = op.get_friendly_name()
        if name not in keep and GENERATED_NAME.fullmatch(name):
            new = f"{op.get_type_name()}_{index}"
            op.set_friendly_name(new + "_q" if new in keep else new)


def _save(ov, model, dst: Path, keep=frozenset()) -> None:
    """Write .xml + .bin so that a finished .xml never points at a missing or old .bin."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    stable_names(model, keep)
    work = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        ov.save_model(model, str(work / dst.name), compress_to_fp16=False)
        os.replace(work / dst.with_suffix(".bin").name, dst.with_suffix(".bin"))
        os.replace(work / dst.name, dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def target_layers(path: str | os.PathLike):
    """The quantized layers of an int8 IR (for sensitivity analysis)."""
    from quant import openvino_graph

    _, ov = _nncf()
    return openvino_graph.read_layers(ov.Core().read_model(str(path)))


def layer_names(path: str | os.PathLike) -> list[str]:
    """Convolution / MatMul node names (what ``exclude`` takes)."""
    _, ov = _nncf()
    model = ov.Core().read_model(str(path))
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in WEIGHTED_OPS]


def int8_weights(files: dict[str, bytes], model: str) -> dict[str, np.ndarray]:
    """Every i8 constant of two or more axes (conv and linear weights) of the int8 IR
    ``model`` among ``files`` (its .bin beside it), as stored; constants that share bytes in
    the .bin are listed once."""
    import xml.etree.ElementTree as ET

    weights = files[model.rsplit(".", 1)[0] + ".bin"]
    out, seen = {}, set()
    try:
        layers = list(ET.fromstring(files[model]).iter("layer"))
    except ET.ParseError as e:
        raise ModelFileError(f"{model}: not a readable OpenVINO IR ({e})") from None
    for layer in layers:
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or data.get("element_type") != "i8":
            continue
        try:
            shape = [int(d) for d in data.get("shape", "").split(",") if d.strip()]
            offset, size = int(data.get("offset")), int(data.get("size"))
        except (TypeError, ValueError):
            raise ModelFileError(f"{model}: constant {layer.get('name')!r} has no valid shape, "
                                 f"offset or size") from None
        if len(shape) < 2 or (offset, size) in seen:
            continue
        if offset < 0 or size != int(np.prod(shape)) or offset + size > len(weights):
            raise ModelFileError(f"{model}: constant {layer.get('name')!r} ({size} bytes at "
                                 f"{offset}, shape {shape}) lies outside its .bin of "
                                 f"{len(weights)} bytes or does not fit its shape")
        seen.add((offset, size))
        out[layer.get("name")] = np.frombuffer(weights, np.int8, size, offset).reshape(shape)
    return out
