"""Import a TF-slim MobileNet V1 ``.tflite`` (e.g. Google's ``mobilenet_v1_0.25_224_float``).

The file holds 14 CONV_2D / 13 DEPTHWISE_CONV_2D layers with BatchNorm already folded into
each conv's bias, then AVERAGE_POOL_2D, a 1x1 CONV_2D "Logits" layer (with bias), SQUEEZE and
SOFTMAX. Into the zoo's ``MobileNetV1(tf_padding=True)``:
  * conv weights OHWI -> OIHW; depthwise weights ``[1, H, W, C]`` -> ``[C, 1, H, W]``;
  * the folded bias goes into the BN layer, turned into an exact identity plus bias
    (running mean 0, running var 1, weight sqrt(1 + eps)); BN therefore carries no statistics
    and data-free calibration (ZeroQ) refuses such a model instead of inventing some;
  * the Logits 1x1 conv -> ``classifier.1`` Linear. The PyTorch model returns logits; the
    file returns their softmax.
The flatbuffer is read with the schema module that ships with ``ai_edge_litert``: nothing is
executed, and every mismatch with the architecture is a ``WeightsError``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebase.errors import MissingDependencyError, WeightsError
from edgebase.manifest import Preprocess

# TF-slim's input convention: x/127.5 - 1 on RGB, short side 256 -> centre crop 224
TF_PREPROCESS = Preprocess(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
BUILD_KWARGS = {"tf_padding": True}  # TF 'SAME' padding and BN eps 1e-3
_ACT_NONE, _ACT_RELU6 = 0, 3
_PADDING_SAME = 0


@dataclass(frozen=True)
class TfliteConv:
    op: str  # CONV_2D | DEPTHWISE_CONV_2D
    name: str  # weight tensor name, for messages
    weight: np.ndarray  # as stored: OHWI, or [1, H, W, C] for depthwise
    bias: np.ndarray | None
    stride: int
    same_padding: bool
    activation: int


def read_convs(path: str | os.PathLike) -> tuple[list[TfliteConv], dict]:
    """The file's conv layers in execution order, and facts (input shape, op list)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise MissingDependencyError("ai-edge-litert (reading .tflite weights)", "litert") from None
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e})") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise WeightsError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
        graph = model.subgraphs[0]
    except Exception as e:  # a corrupt flatbuffer can raise anything from the generated code
        raise WeightsError(f"{path}: unreadable TFLite flatbuffer ({type(e).__name__}: {e})") from None
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]

    def const(index: int, what: str) -> np.ndarray:
        t = graph.tensors[index]
        data = model.buffers[t.buffer].data
        if t.type != schema.TensorType.FLOAT32:
            raise WeightsError(f"{path}: {what} {t.name.decode()} is not float32 (a quantized "
                               f"file? import the float model)")
        if data is None or len(data) == 0:
            raise WeightsError(f"{path}: {what} {t.name.decode()} has no constant data")
        arr = np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype="<f4")
        shape = tuple(int(s) for s in t.shape)
        if arr.size != int(np.prod(shape)):
            raise WeightsError(f"{path}: {what} {t.name.decode()} holds {arr.size} values "
                               f"for shape {shape}")
        return arr.reshape(shape).copy()

    convs, ops = [], []
    for op in graph.operators:
        kind = names.get(codes[op.opcodeIndex], str(codes[op.opcodeIndex]))
        ops.append(kind)
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        o = op.builtinOptions
        inputs = [int(i) for i in op.inputs]
        w = const(inputs[1], "weight")
        b = const(inputs[2], "bias") if len(inputs) > 2 and inputs[2] >= 0 else None
        if o.strideH != o.strideW or o.dilationHFactor != 1 or o.dilationWFactor != 1:
            raise WeightsError(f"{path}: {kind} {graph.tensors[inputs[1]].name.decode()} has "
                               f"unequal strides or dilation, which MobileNet V1 does not use")
        convs.append(TfliteConv(kind, graph.tensors[inputs[1]].name.decode(), w, b,
                                int(o.strideH), o.padding == _PADDING_SAME,
                                int(o.fusedActivationFunction)))
    inp = graph.tensors[int(graph.inputs[0])]
    facts = {"input_shape": tuple(int(s) for s in inp.shape), "ops": ops}
    return convs, facts


def load_into(model, path: str | os.PathLike) -> dict:
    """Copy the weights of ``path`` into a zoo ``MobileNetV1`` built with tf_padding=True.

    Returns facts about the import (layers, input shape). Raises WeightsError on any mismatch.
    """
    import torch

    from zoo.models.mobilenet_v1 import Conv2dSame, MobileNetV1

    path = Path(path)
    if not isinstance(model, MobileNetV1):
        raise WeightsError(f"{path}: a MobileNet V1 .tflite cannot be loaded into "
                           f"{type(model).__name__}")
    convs, facts = read_convs(path)
    layers = list(model.features)
    expected = 1 + len(layers)  # body convs + the Logits 1x1 conv
    if len(convs) != expected:
        raise WeightsError(f"{path}: has {len(convs)} conv layers; MobileNet V1 has {expected} "
                           f"(ops: {_histogram(facts['ops'])})")
    if not isinstance(layers[0][0], Conv2dSame):
        raise WeightsError(f"{path}: TF 'SAME' padding needs the model built with tf_padding=True")
    state = {}
    for i, (layer, c) in enumerate(zip(layers, convs)):
        conv, bn = layer[0], layer[1]
        depthwise = conv.groups > 1
        want = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
        where = f"{path.name}: layer {i} ({c.name})"
        if c.op != want:
            raise WeightsError(f"{where} is {c.op}; features.{i} is a {want}")
        if c.bias is None:
            raise WeightsError(f"{where} has no bias (expected BatchNorm folded into a bias)")
        if c.activation != _ACT_RELU6 or not c.same_padding or c.stride != conv.stride[0]:
            raise WeightsError(f"{where}: stride {c.stride}, padding "
                               f"{'SAME' if c.same_padding else 'VALID'}, activation "
                               f"{c.activation}; expected stride {conv.stride[0]}, SAME, RELU6")
        w = c.weight.transpose(3, 0, 1, 2) if depthwise else c.weight.transpose(0, 3, 1, 2)
        _check_shape(where, w.shape, tuple(conv.weight.shape),
                     hint="(a different width? check --width)" if i == 0 else "")
        _check_shape(where + " bias", c.bias.shape, tuple(bn.bias.shape))
        eps = bn.eps
        state[f"features.{i}.0.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        state[f"features.{i}.1.weight"] = torch.full_like(bn.weight, float(np.sqrt(1.0 + eps)))
        state[f"features.{i}.1.bias"] = torch.from_numpy(c.bias)
        state[f"features.{i}.1.running_mean"] = torch.zeros_like(bn.running_mean)
        state[f"features.{i}.1.running_var"] = torch.ones_like(bn.running_var)
    head, fc = convs[-1], model.classifier[-1]
    if head.op != "CONV_2D" or head.weight.shape[1:3] != (1, 1) or head.bias is None:
        raise WeightsError(f"{path.name}: the last layer ({head.name}) is not a 1x1 conv with "
                           f"bias (the Logits layer)")
    if head.activation != _ACT_NONE:
        raise WeightsError(f"{path.name}: the Logits layer has a fused activation")
    w = head.weight.reshape(head.weight.shape[0], head.weight.shape[3])
    _check_shape(f"{path.name}: Logits ({head.name})", w.shape, tuple(fc.weight.shape),
                 hint="(use --num-classes to match the file's classes)")
    state["classifier.1.weight"] = torch.from_numpy(np.ascontiguousarray(w))
    state["classifier.1.bias"] = torch.from_numpy(head.bias)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise WeightsError(f"{path.name}: no weights for {', '.join(missing[:4])}")
    model.load_state_dict(state, strict=False)
    n, h, w_, c = facts["input_shape"]
    return {"layers": len(convs), "input_shape": [n, h, w_, c], "source_layout": "NHWC",
            "bn_folded": True, "outputs": "softmax in the file, logits in PyTorch"}


def num_classes(path: str | os.PathLike) -> int:
    convs, _ = read_convs(path)
    if not convs:
        raise WeightsError(f"{path}: has no conv layers")
    return int(convs[-1].weight.shape[0])


def _check_shape(where: str, got, want, hint: str = "") -> None:
    if tuple(got) != tuple(want):
        raise WeightsError(f"{where}: weight shape {tuple(got)} does not fit the model's "
                           f"{tuple(want)} {hint}".rstrip())


def _histogram(ops: list[str]) -> str:
    from collections import Counter

    return ", ".join(f"{k} x{v}" for k, v in sorted(Counter(ops).items()))


def _register() -> None:
    from zoo.weights import register_importer

    register_importer("mobilenet_v1*", ".tflite", load_into, build_kwargs=BUILD_KWARGS,
                      entry_overrides={"preprocess": TF_PREPROCESS, "labels": "imagenet1001"})


_register()
