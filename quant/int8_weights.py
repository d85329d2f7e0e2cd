"""The int8 weight tensors of an int8 target file, read from the file itself.

An int8 file's quantizer (ONNX Runtime, LiteRT, NNCF) decides each weight's int8 value, so
the Deep Compression container takes them from the file as it was written: per target, a
reader lists every int8 constant of two or more axes (conv and linear weights) as stored.
Their values are at most 255 non-zero integers per tensor, so they are a codebook of their
own; weight sharing before quantization leaves few of them per tensor (and pruned weights are
0 under symmetric weight quantization), which Huffman coding turns into a small file.

A new target is a reader here and one entry in ``READERS``.
"""
from __future__ import annotations

import io
from typing import Callable, Mapping

import numpy as np

from edgebase.errors import ConfigError


def _onnx(files: Mapping[str, bytes], model: str) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_model(io.BytesIO(files[model]), load_external_data=False).graph
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and len(t.dims) >= 2}


def _tflite(files: Mapping[str, bytes], model: str) -> dict[str, np.ndarray]:
    from exporters.tflite_graph import load_schema

    schema = load_schema()
    root = schema.Model.GetRootAsModel(files[model], 0)
    out = {}
    for s in range(root.SubgraphsLength()):
        graph = root.Subgraphs(s)
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            data = root.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
            if t.Type() == schema.TensorType.INT8 and t.ShapeLength() >= 2 \
                    and not isinstance(data, int) and len(data):
                out[f"{s}:{t.Name().decode()}"] = np.asarray(data).view(np.int8).reshape(
                    t.ShapeAsNumpy())
    return out


def _openvino(files: Mapping[str, bytes], model: str) -> dict[str, np.ndarray]:
    import xml.etree.ElementTree as ET

    weights = files[model.rsplit(".", 1)[0] + ".bin"]
    out = {}
    for layer in ET.fromstring(files[model]).iter("layer"):
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or data.get("element_type") != "i8":
            continue
        shape = [int(d) for d in data.get("shape", "").split(",") if d.strip()]
        offset, size = int(data.get("offset")), int(data.get("size"))
        if len(shape) >= 2:
            out[layer.get("name")] = np.frombuffer(weights, np.int8, size, offset).reshape(shape)
    return out


READERS: dict[str, Callable[[Mapping[str, bytes], str], dict[str, np.ndarray]]] = {
    "onnx": _onnx, "tflite": _tflite, "openvino": _openvino}


def int8_weights(target: str, files: Mapping[str, bytes], model: str) -> dict[str, np.ndarray]:
    """{name: int8 tensor as stored} of the int8 ``model`` file among ``files``."""
    if target not in READERS:
        raise ConfigError(f"an int8 container for {target}: int8 weights are read from "
                          f"{', '.join(READERS)} files")
    tensors = READERS[target](files, model)
    if not tensors:
        raise ConfigError(f"{model}: no int8 weight tensor in the file")
    return tensors
