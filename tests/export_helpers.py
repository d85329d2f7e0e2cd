"""Shared by the export tests: the test matrix, non-trivial weights, and a cache of exports.

Conversions are slow (litert-torch and the dynamo ONNX exporter take several seconds each), so
every export a test needs is made once per session and shared by the tests that inspect it.
"""
from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
from pathlib import Path

from edgebase.capabilities import TARGETS

SMALL = 64  # input size of the fast tests (224-class nets, ImageNet sample images)
CLASSES = 10

# The default suite: every target x precision at least once, on representative nets: both
# ShuffleNets (channel shuffle, the classic TFLite failure), MobileNet V3 (hard-swish, SE),
# SqueezeNet (concat, no BN).
FAST = [
    ("shufflenet_v2_x0_5", "onnx", "fp32"),
    ("shufflenet_v2_x0_5", "tflite", "fp32"),
    ("shufflenet_v2_x0_5", "openvino", "fp32"),
    ("shufflenet_v1_g3", "tflite", "fp32"),
    ("mobilenet_v3_small", "tflite", "fp16"),
    ("mobilenet_v3_small", "openvino", "fp16"),
    ("squeezenet1_1", "onnx", "fp32"),
    # int8 (quant/): calibrated on a few real photos; accuracy runs live in test_quant_*
    ("shufflenet_v2_x0_5", "onnx", "int8"),
    ("mobilenet_v3_small", "tflite", "int8"),
    ("mobilenet_v2", "openvino", "int8"),
    # ExecuTorch (XNNPACK lowering is the slow part): the net with the fewest ops
    ("squeezenet1_1", "executorch", "fp32"),
    ("squeezenet1_1", "executorch", "int8"),
]
INT8_CALIB_IMAGES = 16

# (model, target, precision) combinations that are registered but cannot work, with why.
# The meta-test fails when a registered combination is neither tested nor listed here.
KNOWN_UNSUPPORTED: dict[tuple[str, str, str], str] = {}


def full_matrix() -> list[tuple[str, str, str]]:
    """Every registered zoo model x target x offered precision."""
    from zoo import list_models

    return [(m, t.name, p) for m in list_models() for t in TARGETS.values()
            for p in t.precisions if (m, t.name, p) not in KNOWN_UNSUPPORTED]


def nontrivial_(model, seed: int = 0):
    """Give BatchNorm statistics/affine terms and classifiers non-default values (in place).

    Zoo nets at initialisation have near-identity BN and logits of 1e-10..1e-15, which would
    make an absolute logit tolerance meaningless; these weights give logits of order 0.1-1."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
    return model


@functools.lru_cache(maxsize=1)
def session_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="edgedeploy-export-tests-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def checkpoint(model_name: str, size: int = SMALL, classes: int = CLASSES) -> Path:
    """A state dict with non-trivial weights for ``model_name`` (made once per session)."""
    import torch

    path = session_dir() / "weights" / f"{model_name}-{size}-{classes}.pt"
    if not path.exists():
        import zoo

        model, _ = zoo.create_model(model_name, num_classes=classes, input_size=size)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(nontrivial_(model).state_dict(), path)
    return path


@functools.lru_cache(maxsize=None)
def exported(model_name: str, target: str, precision: str, size: int = SMALL,
             classes: int = CLASSES):
    """(artifact, output folder) of a real export of the checkpoint above (cached)."""
    import torch

    from deploy.export import ExportConfig, export, load_source

    torch.set_num_threads(1)
    out = session_dir() / f"{model_name}-{target}-{precision}-{size}"
    source = load_source(model_name, weights=checkpoint(model_name, size, classes),
                         num_classes=classes, input_size=size)
    int8 = None
    if precision == "int8":
        from deploy.int8_stage import Int8Config
        from deploy.validate import data_dir

        int8 = Int8Config(calib=data_dir() / "imagenet-sample-1k.zip",
                          calib_size=INT8_CALIB_IMAGES)
    config = ExportConfig(target=target, precision=precision, output_dir=out, threads=1)
    return export(source, config, int8), out
