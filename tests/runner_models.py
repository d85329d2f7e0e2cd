"""Model files for the runner tests: Google's TFLite files and small ONNX / OpenVINO files.

The ONNX and OpenVINO files are made once per session from a small torch network (host
side only: the runner itself never imports torch).
"""
from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MODELS = DATA / "models"
FLOAT_TFLITE = MODELS / "mobilenet_v1_0.25_224_float.tflite"
QUANT_TFLITE = MODELS / "mobilenet_v1_0.25_224_quant.tflite"
IMAGENET = DATA / "imagenet-sample-1k.zip"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


def make_small_models(folder: Path) -> dict[str, Path]:
    """A tiny conv net (3x32x32 -> 10) as ONNX (dynamic batch) and OpenVINO IR (batch 1)."""
    import torch
    import openvino as ov

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, 2, 1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval()
    x = torch.randn(1, 3, 32, 32)
    onnx_path = folder / "tiny.onnx"
    # legacy exporter: quick, one self-contained file (no external .data)
    torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
    xml_path = folder / "tiny.xml"
    ov.save_model(ov.convert_model(net, example_input=x, input=[(1, 3, 32, 32)]),
                  str(xml_path), compress_to_fp16=False)
    with torch.no_grad():
        ref = net(x).numpy()
    return {"onnx": onnx_path, "xml": xml_path, "input": x.numpy(), "reference": ref}
