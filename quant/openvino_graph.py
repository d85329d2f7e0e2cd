"""Reading and editing an NNCF-quantized ``ov.Model``: activation FakeQuantize ranges, and the
Convolution / MatMul layers as ``quant.bias_correction.TargetLayer`` (dequantized weights,
writable bias, the input's quantization grid).

Used by the ``image-percentile`` method of ``quant.openvino_ptq``: NNCF has no estimator that
takes a percentile of per-image extremes, so its ranges are narrowed here after ``nncf.quantize``,
and the biases are then corrected by the same code as the ONNX and TFLite files.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from edgebase.errors import ConversionError
from quant import image_ranges
from quant.bias_correction import TargetLayer

# ops that pass their input's values through unchanged (a subset, or a rearrangement): a
# FakeQuantize in front of them sets the grid of what comes out
VALUE_PRESERVING = ("MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Split",
                    "VariadicSplit")


def activation_fake_quantizes(model) -> list:
    """FakeQuantize nodes on activations (not on a constant weight), in graph order."""
    return [op for op in model.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
            and _constant(op.input_value(0)) is None]


def _fq_limits(fq) -> list[np.ndarray]:
    """input_low, input_high, output_low, output_high of a FakeQuantize as arrays."""
    return [np.asarray(_constant(fq.input_value(i)), dtype=np.float32) for i in range(1, 5)]


def fp32_ranges(fp32_model, fake_quantizes, inputs: Iterator[np.ndarray],
                percentile: float = image_ranges.PERCENTILE) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each FakeQuantize, the image-percentile range of the tensor it quantizes, measured
    on the float model (one inference per calibration batch, those tensors exposed as outputs)
    and reduced to the shape of the FakeQuantize's limits (per tensor, or per channel)."""
    import openvino as ov

    by_name = {op.get_friendly_name(): op for op in fp32_model.get_ops()}
    sources = []
    for fq in fake_quantizes:
        out = fq.input_value(0)
        node = by_name.get(out.get_node().get_friendly_name())
        if node is None:  # NNCF keeps the float graph's node names; a new one would land here
            raise ConversionError(f"the int8 IR quantizes {out.get_node().get_friendly_name()}, "
                                  f"which the float IR does not have; use --calib-method minmax")
        sources.append(node.output(out.get_index()))
    exposed = fp32_model.clone()
    first = len(exposed.outputs)  # the exposed tensors follow the model's own outputs
    exposed.add_outputs([(s.get_node().get_friendly_name(), s.get_index()) for s in sources])
    compiled = ov.Core().compile_model(exposed, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    shapes = [_fq_limits(fq)[0].shape for fq in fake_quantizes]
    mins: list[list] = [[] for _ in sources]
    maxs: list[list] = [[] for _ in sources]
    request = compiled.create_infer_request()
    for x in inputs:
        result = request.infer({0: x})
        for k in range(len(sources)):
            v = result[first + k]
            shape = shapes[k]
            axes = tuple(a for a in range(v.ndim) if _broadcast_dim(shape, v.ndim, a) == 1)
            # one batch of the calibration set is one image for the batch-1 IRs we write
            mins[k].append(v.min(axis=axes, keepdims=True).reshape(shape))
            maxs[k].append(v.max(axis=axes, keepdims=True).reshape(shape))
    return [image_ranges.robust_range(lo, hi, percentile) for lo, hi in zip(mins, maxs)]


def _broadcast_dim(shape: tuple, ndim: int, axis: int) -> int:
    """The size of ``shape`` (numpy-broadcast against ``ndim`` dims) along ``axis``."""
    k = axis - (ndim - len(shape))
    return shape[k] if k >= 0 else 1


def narrow_ranges(fake_quantizes, ranges) -> dict[str, Any]:
    """Shrink each FakeQuantize's limits to its robust range (never widen them): all four
    limits are scaled by one factor, which keeps NNCF's form (unsigned [0, h], or symmetric
    around zero). FakeQuantizes that NNCF gave identical limits (unified scales, e.g. the
    inputs of one Concat) get one common factor, so they stay on one grid."""
    import openvino as ov

    groups: dict[tuple, list[int]] = {}
    limits = [_fq_limits(fq) for fq in fake_quantizes]
    for k, (lo, hi, _, _) in enumerate(limits):
        groups.setdefault((lo.tobytes(), hi.tobytes(), lo.shape), []).append(k)
    factors = [1.0] * len(fake_quantizes)
    for members in groups.values():
        lo, hi = limits[members[0]][:2]
        extent = np.maximum(np.abs(lo), np.abs(hi))
        want = np.max([np.where(lo < 0, np.maximum(np.abs(ranges[k][0]), np.abs(ranges[k][1])),
                                np.maximum(ranges[k][1], 0.0)) for k in members], axis=0)
        factor = np.clip(want / np.maximum(extent, 1e-12), 1e-3, 1.0).astype(np.float32)
        for k in members:
            factors[k] = float(np.min(factor))
            for i, value in enumerate(limits[k], start=1):
                new = ov.op.Constant(np.array(value * factor, np.float32))
                fake_quantizes[k].input(i).replace_source_output(new.output(0))
    return {"fake_quantizes": len(fake_quantizes),
            "narrowed": int(sum(f < 0.999 for f in factors)),
            "smallest_factor": round(min(factors, default=1.0), 4)}


# ---- layers for bias correction ----------------------------------------------------------
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")  # the layers int8 weights go to
CONSTANT_OPS = ("Convert", "Subtract", "Multiply", "Reshape", "Transpose", "FakeQuantize")


def _constant(output):
    """The value of a constant subgraph (weights and their int8 decompression), else None."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "Constant":
        return node.get_data()
    if kind not in CONSTANT_OPS:
        return None
    args = [_constant(node.input_value(i)) for i in range(node.get_input_size())]
    if any(a is None for a in args):
        return None
    if kind == "Convert":
        return args[0].astype(np.float32)
    if kind == "Subtract":
        return args[0].astype(np.float32) - args[1]
    if kind == "Multiply":
        return args[0].astype(np.float32) * args[1]
    if kind == "Reshape":
        return args[0].reshape(tuple(output.get_shape()))
    if kind == "Transpose":
        return np.transpose(args[0], args[1].astype(np.int64))
    if kind == "FakeQuantize":
        x, il, ih, ol, oh = (np.asarray(a, np.float32) for a in args)
        levels = node.get_attributes()["levels"]
        q = np.round((np.clip(x, il, ih) - il) / (ih - il) * (levels - 1))
        return q / (levels - 1) * (oh - ol) + ol
    return None


def _input_quant(output) -> tuple[float, int, int, int] | None:
    """(scale, zero point, 0, levels - 1) of the per-tensor FakeQuantize whose grid a layer's
    input is on, looking through value-preserving ops; None for a float input."""
    node = output.get_node()
    while node.get_type_name() in VALUE_PRESERVING:
        node = node.input_value(0).get_node()
    if node.get_type_name() != "FakeQuantize":
        return None
    lo, hi, out_lo, out_hi = _fq_limits(node)
    if lo.size != 1 or not (np.allclose(lo, out_lo) and np.allclose(hi, out_hi)):
        return None
    levels = node.get_attributes()["levels"]
    scale = float(hi.item() - lo.item()) / (levels - 1)
    return scale, int(round(-lo.item() / scale)), 0, levels - 1


def read_layers(model) -> list[TargetLayer]:
    """Convolution / GroupConvolution / MatMul nodes followed by an Add of a constant bias,
    with PyTorch-layout weights (dequantized) and a writer that replaces that constant."""
    import openvino as ov

    layers = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in WEIGHTED_OPS:
            continue
        w = _constant(op.input_value(1))
        consumers = list(op.output(0).get_target_inputs())
        if w is None or len(consumers) != 1:
            continue
        add = consumers[0].get_node()
        if add.get_type_name() != "Add":
            continue
        other = 1 - consumers[0].get_index()
        bias = _constant(add.input_value(other))
        if bias is None or add.input_value(other).get_node().get_type_name() != "Constant":
            continue
        if kind == "GroupConvolution":  # [G, O/G, I/G, kh, kw] -> [O, I/G, kh, kw]
            w = w.reshape((-1,) + w.shape[2:])
        elif kind == "MatMul" and not op.get_attributes().get("transpose_b", False):
            w = w.T
        if bias.size != w.shape[0]:  # not a per-output-channel bias
            continue
        shape = bias.shape

        def write(value, add=add, other=other, shape=shape):
            new = ov.op.Constant(np.array(value, np.float32).reshape(shape))
            add.input(other).replace_source_output(new.output(0))

        layers.append(TargetLayer(op.get_friendly_name(), np.ascontiguousarray(w, np.float32),
                                  bias.reshape(-1).astype(np.float32), write,
                                  _input_quant(op.input_value(0))))
    return layers
