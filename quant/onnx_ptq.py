"""int8 PTQ of an ONNX file with onnxruntime's own quantizer (``quantize_static``, QDQ format).

Static, per-channel symmetric int8 weights, asymmetric uint8 activations (onnxruntime's CPU
recommendation). ``reduce_range`` (7-bit weights) defaults per CPU (``quant.cpu``): on x86
without VNNI the u8 x s8 kernels saturate. After quantization the biases are corrected against
the PyTorch parent (``quant.bias_correction``) when the parent is given.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import ConfigError, ModelFileError
from quant.bias_correction import TargetLayer, correct_biases
from quant.calibration import CalibrationSet
from quant.cpu import cpu_profile, default_reduce_range

TARGET = "onnx"
METHODS = ("minmax", "percentile", "entropy")
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class OnnxPTQOptions:
    method: str = "minmax"
    per_channel: bool = True
    reduce_range: bool | None = None  # None: chosen for this CPU
    activations: str = "uint8"  # uint8 (asymmetric, the CPU default) | int8
    percentile: float = 99.999
    bias_correction: bool = True
    exclude: tuple[str, ...] = ()  # node names kept in float
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"calibration method {self.method!r} is not supported for onnx; "
                              f"valid: {', '.join(METHODS)}")
        if self.activations not in ("uint8", "int8"):
            raise ConfigError(f"onnx activations {self.activations!r}; valid: uint8, int8")


def quantize(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibrationSet,
             options: OnnxPTQOptions = OnnxPTQOptions(), parent=None) -> dict[str, Any]:
    """Write the int8 model of ``src`` to ``dst``; returns the facts for the manifest."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    from deploy.files import atomic_path

    src, dst = Path(src), Path(dst)
    model = _load(src)
    input_name = model.graph.input[0].name
    batch = _static_batch(model)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = (np.ascontiguousarray(b) for b in calib.batches(batch))

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    if options.reduce_range is None:
        reduce_range, why = default_reduce_range()
    else:
        reduce_range, why = options.reduce_range, "set by the caller"
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[options.method]
    extra = {"CalibPercentile": options.percentile} if options.method == "percentile" else {}
    extra.update(options.extra)
    with atomic_path(dst) as tmp:
        quantize_static(
            model, tmp, Reader(), quant_format=QuantFormat.QDQ, per_channel=options.per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8 if options.activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8, calibrate_method=method,
            nodes_to_exclude=list(options.exclude) or None, extra_options=extra,
        )
        summary = None
        if options.bias_correction and parent is not None:
            qmodel = onnx.load(str(tmp))
            summary = correct_biases(parent, read_layers(qmodel), calib.inputs)
            onnx.save(qmodel, str(tmp))
        ops = Counter(n.op_type for n in onnx.load(str(tmp)).graph.node)
    return {
        "quantizer": "onnxruntime.quantization.quantize_static",
        "format": "QDQ", "per_channel": options.per_channel, "weights": "int8 symmetric",
        "activations": f"{options.activations} asymmetric", "reduce_range": reduce_range,
        "reduce_range_reason": why, "method": options.method,
        **({"percentile": options.percentile} if options.method == "percentile" else {}),
        "cpu": cpu_profile(), "excluded": list(options.exclude),
        "bias_correction": summary, "ops": dict(sorted(ops.items())),
    }


def layer_names(path: str | os.PathLike) -> list[str]:
    """Names of the nodes PTQ quantizes (what ``exclude`` and sensitivity analysis take)."""
    return [n.name for n in _load(Path(path)).graph.node if n.op_type in QUANTIZED_OPS]


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf decode errors have no common base class
        raise ModelFileError(f"{path}: unreadable ONNX file ({type(e).__name__}: {e})") from None


def _static_batch(model) -> int:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].dim_value > 0 else 1


# ---- reading weights and writing biases of a QDQ graph -------------------------------
def read_layers(model) -> list[TargetLayer]:
    """The Conv/Gemm layers of a QDQ ModelProto with dequantized weights and writable biases."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def dequant(name):
        """(float array, writer) for a tensor that is an initializer or DQ(initializer)."""
        if name in inits:
            def write(v, name=name):
                _replace(model, inits[name], v.astype(numpy_helper.to_array(inits[name]).dtype))
            return const(name), write
        node = producer.get(name)
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            return None, None
        q = const(node.input[0])
        scale = const(node.input[1])
        zp = const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim == 1 and scale.size > 1:
            shape[axis] = -1
        s, z = scale.reshape(shape), zp.reshape(shape).astype(np.int64)
        value = (q.astype(np.int64) - z) * s

        def write(v, q_name=node.input[0], q=q, s=s, z=z):
            info = np.iinfo(q.dtype)
            new = np.clip(np.round(v / s) + z, info.min, info.max).astype(q.dtype)
            _replace(model, inits[q_name], new)
        return value.astype(np.float32), write

    layers = []
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 3 or not n.input[2]:
            continue
        w, _ = dequant(n.input[1])
        b, write_b = dequant(n.input[2])
        if w is None or b is None:
            continue
        if n.op_type == "Gemm" and not next((a.i for a in n.attribute if a.name == "transB"), 0):
            w = w.T
        layers.append(TargetLayer(n.name, np.ascontiguousarray(w), b, write_b,
                                  _input_quant(producer.get(n.input[0]), const)))
    return layers


def _input_quant(node, const):
    """(scale, zero point, qmin, qmax) of a per-tensor DQ feeding a layer's input, else None."""
    if node is None or node.op_type != "DequantizeLinear":
        return None
    scale, zp = const(node.input[1]), const(node.input[2]) if len(node.input) > 2 else None
    if scale is None or scale.size != 1 or zp is None:
        return None
    info = np.iinfo(zp.dtype)
    return float(scale), int(zp), int(info.min), int(info.max)


def _replace(model, init, value: np.ndarray) -> None:
    from onnx import numpy_helper

    new = numpy_helper.from_array(value, init.name)
    init.CopyFrom(new)
