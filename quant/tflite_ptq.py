"""int8 PTQ of a float ``.tflite`` with ai-edge-quantizer (LiteRT's own quantizer).

Why not litert-torch's PT2E quantizer: measured here, its graphs stay mixed (residual ADD,
HARD_SWISH, MEAN, MUL in float behind DEQUANTIZE ops) and run slower than fp32, while
ai-edge-quantizer's ``static_wi8_ai8`` recipe, applied to the float file the exporter already
validated, quantizes every op LiteRT has int8 kernels for: int8 per-channel symmetric weights,
int8 asymmetric activations. The file's input/output type is chosen with ``io``:
``float`` (QUANTIZE/DEQUANTIZE at the edges), ``int8`` or ``uint8`` (what mobile apps feed;
the input range is pinned to the exact range of preprocessed pixels, so no valid pixel clips).
After quantization the biases are corrected against the PyTorch parent when it is given.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebase.capabilities import TARGETS
from edgebase.errors import ConfigError, MissingDependencyError, ModelFileError
from exporters.tflite_graph import builtin_names as _op_names
from exporters.tflite_graph import load_schema as _schema
from exporters.tflite_graph import opcode as _code
from quant import image_ranges
from quant.bias_correction import TargetLayer, correct_biases
from quant.calibration import CalibrationSet

TARGET = "tflite"
# image-percentile: the 99th percentile of per-image extremes (quant.image_ranges), robust to
# the few outlier images that set ShuffleNetV1's ranges; minmax: absolute min/max over the
# calibration set (as onnxruntime's MinMax); ema: LiteRT's default moving average (0.95) of
# per-image min/max, which under-ranges heavy-tailed tensors: measured on MobileNetV1-0.25, it
# clipped the logits of 24 % of held-out images
METHODS = (image_ranges.NAME, "minmax", "ema")
IO_TYPES = TARGETS[TARGET].int8_io  # float, int8, uint8 (the capability table)
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
QUANTIZES_PARENT = False  # quantizes the fp32 .tflite (parent: bias correction only)
EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")


@dataclass(frozen=True)
class TflitePTQOptions:
    method: str = METHODS[0]
    io: str = "float"
    bias_correction: bool = True
    exclude: tuple[str, ...] = ()  # output tensor names of ops kept in float
    threads: int = 1
    # exact (min, max) of preprocessed pixels, pinned as the input's range
    input_range: tuple[float, float] | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"calibration method {self.method!r} is not supported for tflite; "
                              f"valid: {', '.join(METHODS)}")
        if self.io not in IO_TYPES:
            raise ConfigError(f"--int8-io {self.io!r}; valid: {', '.join(IO_TYPES)}")


def make_options(method: str | None = None, io: str = "float", exclude=(),
                 input_range: tuple[float, float] | None = None) -> TflitePTQOptions:
    return TflitePTQOptions(method=method or METHODS[0], io=io, exclude=tuple(exclude),
                            input_range=input_range)


def _aeq():
    try:
        from ai_edge_quantizer import qtyping, quantizer, recipe, recipe_manager
    except ImportError:
        raise MissingDependencyError("ai-edge-quantizer (TFLite int8)", "host") from None
    return qtyping, quantizer, recipe, recipe_manager


def _recipe(options: TflitePTQOptions):
    qtyping, _, recipe, recipe_manager = _aeq()
    algo = "min_max_uniform_quantize"
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, activation_num_bits=8,
                         weight_num_bits=8, algorithm_key=algo)
    if options.io == "float":
        for edge in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            rm.add_quantization_config(".*", edge, algorithm_key="no_quantize")
    elif options.io == "uint8":
        tq = qtyping.TensorQuantizationConfig
        cfg = qtyping.OpQuantizationConfig(
            activation_tensor_config=tq(num_bits=8, symmetric=False,
                                        dtype=qtyping.TensorDataType.UINT),
            weight_tensor_config=tq(num_bits=8, symmetric=True,
                                    granularity=qtyping.QuantGranularity.CHANNELWISE),
            compute_precision=qtyping.ComputePrecision.INTEGER)
        for edge in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):
            rm.add_quantization_config(".*", edge, cfg, algorithm_key=algo)
    for name in options.exclude:  # scopes are "<output tensor names>;"
        rm.add_quantization_config("^" + re.escape(name) + ";$",
                                   qtyping.TFLOperationName.ALL_SUPPORTED,
                                   algorithm_key="no_quantize")
    return rm.get_quantization_recipe()


def quantize(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibrationSet,
             options: TflitePTQOptions = TflitePTQOptions(), parent=None) -> dict[str, Any]:
    """Write the int8 model of the float ``src`` to ``dst``; returns the facts for the manifest.

    ``calib`` holds NCHW inputs; they are transposed when the file takes NHWC.
    """
    from ai_edge_litert.interpreter import Interpreter

    from edgebase.files import atomic_path
    from exporters.common import quiet

    _, quantizer, _, _ = _aeq()
    src, dst = Path(src), Path(dst)
    try:
        interp = Interpreter(str(src))
        signatures = interp.get_signature_list()
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"{src}: unreadable .tflite ({e})") from None
    sig = next(iter(signatures))
    input_name = signatures[sig]["inputs"][0]
    shape = tuple(interp.get_input_details()[0]["shape"])
    nhwc = len(shape) == 4 and shape[-1] == calib.inputs.shape[1] and shape[1] != shape[-1]
    batch = int(shape[0]) if shape and shape[0] > 0 else 1

    def samples():
        for b in calib.batches(batch):
            yield {input_name: np.ascontiguousarray(b.transpose(0, 2, 3, 1) if nhwc else b)}

    with quiet():
        recipe = _recipe(options)
        q = quantizer.Quantizer(str(src), recipe)
        qsv = _calibrate(src, recipe, {sig: list(samples())}, options)
        if options.input_range is not None:
            _pin_input_range(src, qsv, options.input_range)
        result = q.quantize(qsv, enable_progress_report=False)
    with atomic_path(dst) as tmp:
        data = bytes(result.quantized_model)
        summary = None
        if options.bias_correction and parent is not None:
            model = _read(data, src)
            layers = read_layers(model)
            summary = correct_biases(parent, layers, calib.inputs)
            # e.g. FULLY_CONNECTED whose bias the converter moved into a separate ADD
            summary["without_bias_tensor"] = _weighted_count(model) - len(layers)
            data = _pack(model)
        tmp.write_bytes(data)
    facts = graph_facts(dst)
    return {"quantizer": "ai-edge-quantizer static_wi8_ai8", "method": options.method,
            "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric",
            "io": options.io, "input_range": list(options.input_range) if options.input_range else None,
            "excluded": list(options.exclude), "bias_correction": summary, **facts}


def _calibrate(src: Path, recipe, data, options: TflitePTQOptions) -> dict:
    from ai_edge_quantizer import calibrator, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.load_quantization_recipe(recipe)
    update = {"minmax": _absolute_min_max, image_ranges.NAME: image_ranges.collect_update}
    kwargs = {"qsv_update_func": update[options.method]} if options.method in update else {}
    calib = calibrator.Calibrator(src.read_bytes(), num_threads=options.threads, **kwargs)
    calib.calibrate(data, rm)
    qsvs = calib.get_model_qsvs()
    return image_ranges.finish_qsvs(qsvs) if options.method == image_ranges.NAME else qsvs


def _absolute_min_max(qsv: dict, new: dict) -> dict:
    if not qsv:
        return new
    return {**qsv, "min": np.minimum(qsv["min"], new["min"]),
            "max": np.maximum(qsv["max"], new["max"])}


def _pin_input_range(src: Path, qsv: dict, input_range: tuple[float, float]) -> None:
    """Replace the calibrated min/max of the graph input with the exact preprocessing range."""
    from ai_edge_litert.interpreter import Interpreter

    name = Interpreter(str(src)).get_input_details()[0]["name"]
    if name in qsv:
        lo, hi = input_range
        qsv[name] = {**qsv[name], "min": np.array(lo, np.float32).reshape(np.shape(qsv[name]["min"])),
                     "max": np.array(hi, np.float32).reshape(np.shape(qsv[name]["max"]))}


def layer_names(path: str | os.PathLike) -> list[str]:
    """Output tensor names of the weighted ops (what ``exclude`` takes)."""
    model = _read(Path(path).read_bytes(), path)
    g = model.subgraphs[0]
    names = _op_names()
    return [g.tensors[op.outputs[0]].name.decode() for op in g.operators
            if names[_code(model, op)] in WEIGHTED_OPS]


def target_layers(path: str | os.PathLike) -> list[TargetLayer]:
    """The quantized layers of an int8 file (for sensitivity analysis)."""
    return read_layers(_read(Path(path).read_bytes(), path))


# ---- graph facts: which ops run in float -------------------------------------------------
def graph_facts(path: str | os.PathLike) -> dict[str, Any]:
    """Op histogram, DEQUANTIZE count, the ops that still compute in float, I/O types."""
    schema = _schema()
    model = _read(Path(path).read_bytes(), path)
    g = model.subgraphs[0]
    names = _op_names()
    hist, float_ops = Counter(), Counter()
    for op in g.operators:
        kind = names[_code(model, op)]
        hist[kind] += 1
        if kind in EDGE_OPS:
            continue
        acts = [g.tensors[i] for i in op.inputs if i >= 0 and not _is_const(model, g.tensors[i])]
        if any(t.type == schema.TensorType.FLOAT32 for t in acts):
            float_ops[kind] += 1
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def io(indices):
        out = []
        for i in indices:
            t = g.tensors[i]
            q = t.quantization
            scale = float(q.scale[0]) if q is not None and q.scale is not None and len(q.scale) else None
            zp = int(q.zeroPoint[0]) if scale is not None else None
            out.append({"dtype": types[t.type].lower(), "scale": scale, "zero_point": zp})
        return out

    return {"op_histogram": dict(sorted(hist.items())), "op_count": sum(hist.values()),
            "dequantize_count": hist.get("DEQUANTIZE", 0),
            "float_ops": dict(sorted(float_ops.items())),
            "fully_integer": not float_ops,
            "inputs": io(g.inputs), "outputs": io(g.outputs)}


# ---- reading weights and writing biases ---------------------------------------------------
def read_layers(model) -> list[TargetLayer]:
    """Conv / depthwise / fully-connected ops of an int8 ModelT (edited in place by set_bias)."""
    schema = _schema()
    g = model.subgraphs[0]
    names = _op_names()
    layers = []
    for op in g.operators:
        kind = names[_code(model, op)]
        if kind not in WEIGHTED_OPS or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        wt, bt, xt = g.tensors[op.inputs[1]], g.tensors[op.inputs[2]], g.tensors[op.inputs[0]]
        if wt.type != schema.TensorType.INT8 or bt.type != schema.TensorType.INT32:
            continue
        w = _dequant(model, wt)
        if kind == "CONV_2D":
            w = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
        elif kind == "DEPTHWISE_CONV_2D":
            w = w.transpose(3, 0, 1, 2)  # [1, H, W, C] -> [C, 1, H, W]
        b = _dequant(model, bt)
        xq = xt.quantization
        input_quant = None
        if xt.type in (schema.TensorType.INT8, schema.TensorType.UINT8) and xq is not None \
                and xq.scale is not None and len(xq.scale) == 1:
            lo, hi = (-128, 127) if xt.type == schema.TensorType.INT8 else (0, 255)
            input_quant = (float(xq.scale[0]), int(xq.zeroPoint[0]), lo, hi)
        layers.append(TargetLayer(g.tensors[op.outputs[0]].name.decode(),
                                  np.ascontiguousarray(w, np.float32), b,
                                  lambda v, model=model, t=bt: _write_int32(model, t, v),
                                  input_quant))
    return layers


def _weighted_count(model) -> int:
    g = model.subgraphs[0]
    names = _op_names()
    return sum(names[_code(model, op)] in WEIGHTED_OPS for op in g.operators)


def _dequant(model, t) -> np.ndarray:
    schema = _schema()
    dtype = {schema.TensorType.INT8: np.int8, schema.TensorType.INT32: np.int32}[t.type]
    raw = np.asarray(model.buffers[t.buffer].data, np.uint8).tobytes()
    q = np.frombuffer(raw, dtype=dtype).reshape([int(s) for s in t.shape]).astype(np.float64)
    scale = np.asarray(t.quantization.scale, np.float64)
    zp = np.asarray(t.quantization.zeroPoint, np.float64)
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[t.quantization.quantizedDimension] = -1
    return ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)


def _write_int32(model, t, value: np.ndarray) -> None:
    schema = _schema()
    scale = np.asarray(t.quantization.scale, np.float64)
    q = np.clip(np.round(value.astype(np.float64) / scale), -2**31, 2**31 - 1).astype("<i4")
    # converters share one buffer between equal constants (all-zero biases): give this
    # tensor its own before writing, or the other layers' biases would change too
    shared = sum(x.buffer == t.buffer for g in model.subgraphs for x in g.tensors) > 1
    if shared:
        buf = schema.BufferT()
        model.buffers.append(buf)
        t.buffer = len(model.buffers) - 1
    model.buffers[t.buffer].data = np.frombuffer(q.tobytes(), np.uint8).copy()


def _is_const(model, t) -> bool:
    b = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
    return b is not None and ((b.data is not None and len(b.data) > 0) or b.size > 0)


def _read(data: bytes, where) -> Any:
    schema = _schema()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{where}: not a TFLite flatbuffer")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # generated flatbuffer code raises anything on corrupt input
        raise ModelFileError(f"{where}: unreadable TFLite flatbuffer ({e})") from None
    # ai-edge-quantizer appends buffers after the flatbuffer (offset/size); bring them inline
    # so that reading and re-packing see one kind of buffer
    for b in model.buffers:
        if (b.data is None or len(b.data) == 0) and b.offset > 1 and b.size > 0:
            if b.offset + b.size > len(data):
                raise ModelFileError(f"{where}: a buffer lies beyond the end of the file")
            b.data = np.frombuffer(data, np.uint8, count=b.size, offset=b.offset).copy()
            b.offset, b.size = 0, 0
    return model


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def int8_weights(files: dict[str, bytes], model: str) -> dict[str, np.ndarray]:
    """Every int8 tensor of two or more axes with constant data (conv and linear weights) of
    the int8 file ``model`` among ``files``, as stored; a buffer shared by several tensors is
    listed once."""
    schema = _schema()
    data = files[model]
    if data[4:8] != b"TFL3":
        raise ModelFileError(f"{model}: not a TFLite flatbuffer")
    root = schema.Model.GetRootAsModel(data, 0)
    out, seen = {}, set()
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            if t.Type() != schema.TensorType.INT8 or t.ShapeLength() < 2 or not t.Buffer() \
                    or t.Sparsity() is not None or t.Buffer() in seen:
                continue
            buf = root.Buffers(t.Buffer())
            if buf.Offset() > 1:  # stored after the flatbuffer (models > 2 GB)
                raw = np.frombuffer(data, np.int8, buf.Size(), buf.Offset())
            else:
                raw = buf.DataAsNumpy()
                if isinstance(raw, int):  # flatbuffers' answer for an absent vector
                    continue
            shape = tuple(int(d) for d in t.ShapeAsNumpy())
            if raw.size != int(np.prod(shape)):
                raise ModelFileError(f"{model}: tensor {t.Name().decode()!r} holds {raw.size} "
                                     f"bytes for shape {shape}")
            seen.add(t.Buffer())
            out[f"{s}:{i}:{t.Name().decode()}"] = np.asarray(raw).view(np.int8).reshape(shape)
    return out
