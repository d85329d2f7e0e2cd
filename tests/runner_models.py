"""Model files for the runner tests: Google's TFLite files and small ONNX / OpenVINO files.

The ONNX and OpenVINO files are made once per session from a small torch network (host
side only: the runner itself never imports torch). Import the ``small_models`` fixture into
a test module to use them.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("EDGEDEPLOY_DATA",
                           Path(__file__).resolve().parents[1].parent / "shared" / "data"))
MODELS = DATA / "models"
FLOAT_TFLITE = MODELS / "mobilenet_v1_0.25_224_float.tflite"
QUANT_TFLITE = MODELS / "mobilenet_v1_0.25_224_quant.tflite"
IMAGENET = DATA / "imagenet-sample-1k.zip"
CIFAR10 = DATA / "cifar10.zip"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing (set EDGEDEPLOY_DATA to the shared data folder)")
    return path


def make_small_models(folder: Path) -> dict:
    """A small conv net (3x32x32 -> 10 logits) as ONNX (dynamic batch, built with onnx.helper)
    and as OpenVINO IR (batch 1, converted from the ONNX file)."""
    import onnx
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 8).astype(np.float32)
    w2 = rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, 16).astype(np.float32)
    w3 = rng.normal(0, 0.3, (10, 16)).astype(np.float32)
    b3 = rng.normal(0, 0.1, 10).astype(np.float32)
    conv = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
    ]
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"), (w3, "w3"), (b3, "b3"))]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                      ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    onnx_path = folder / "tiny.onnx"
    onnx.save(proto, onnx_path)
    xml_path = folder / "tiny.xml"
    ov.save_model(ov.convert_model(str(onnx_path), input=[1, 3, 32, 32]), str(xml_path),
                  compress_to_fp16=False)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    macs = 16 * 16 * 8 * 27 + 8 * 8 * 16 * 72 + 16 * 10  # conv1 + conv2 + gemm
    return {"onnx": onnx_path, "xml": xml_path, "input": x, "reference": _numpy_forward(
        x, w1, b1, w2, b2, w3, b3), "macs": macs}


def _conv_s2(x, w, b):
    """3x3 stride-2 pad-1 convolution in plain numpy (the reference for both runtimes)."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (h + 1) // 2, (wd + 1) // 2
    cols = np.stack([xp[:, :, i:i + 2 * oh:2, j:j + 2 * ow:2]
                     for i in range(3) for j in range(3)], axis=2)  # n,c,9,oh,ow
    out = np.einsum("nckhw,ock->nohw", cols, w.reshape(w.shape[0], c, 9))
    return out + b[None, :, None, None]


def _numpy_forward(x, w1, b1, w2, b2, w3, b3):
    r1 = np.maximum(_conv_s2(x.astype(np.float64), w1, b1), 0)
    r2 = np.maximum(_conv_s2(r1, w2, b2), 0)
    return (r2.mean(axis=(2, 3)) @ w3.T.astype(np.float64) + b3).astype(np.float32)


@pytest.fixture(scope="session")
def small_models(tmp_path_factory):
    return make_small_models(tmp_path_factory.mktemp("runner_small"))


def write_artifact(model_file: Path, backend, *, macs: int | None = None, preprocess=None,
                   fmt: str = "onnx") -> Path:
    """A manifest beside ``model_file`` describing it (inputs/outputs from the backend)."""
    from edgebase.manifest import Artifact, file_facts, write_manifest

    facts = file_facts(model_file)
    art = Artifact(file=facts["file"], format=fmt, precision="fp32", sha256=facts["sha256"],
                   size_bytes=facts["size_bytes"],
                   model={"name": "tiny", "num_classes": 10, "macs": macs},
                   inputs=backend.inputs, outputs=backend.outputs, preprocess=preprocess)
    return write_manifest(art, model_file)


def direct_topk(model_file: Path, xs: np.ndarray, labels: np.ndarray, k: int = 5):
    """(top-1 hits, top-k hits) computed straight with LiteRT's interpreter, batch 1."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model_file), num_threads=2)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    h1 = hk = 0
    for x, y in zip(xs, labels):
        it.set_tensor(i, x[None])
        it.invoke()
        out = it.get_tensor(o)[0].astype(np.float64)
        top = np.argsort(-out)[:k]
        h1 += int(top[0] == y)
        hk += int(y in top)
    return h1, hk


def output_step(model: Path) -> float | None:
    """The quantization step of an int8 TFLite file's logits (None for a float file): the
    scale of the int8 tensor its float output is dequantized from."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    out = interp.get_output_details()[0]
    if out["dtype"] != np.float32:
        return float(out["quantization"][0])
    ops = interp._get_ops_details()
    deq = [op for op in ops if op["op_name"] == "DEQUANTIZE" and out["index"] in op["outputs"]]
    if not deq:
        return None
    src = next(t for t in interp.get_tensor_details() if t["index"] == deq[0]["inputs"][0])
    return float(src["quantization"][0])
