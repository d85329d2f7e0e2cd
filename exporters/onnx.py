"""PyTorch -> ONNX with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``).

Opset 18 is what the dynamo exporter produces; asking for 17 fails in its down-conversion, and
the legacy TorchScript exporter turns ``chunk`` into Shape/Gather/Slice noise. The graph is then
simplified with onnxslim, and the simplified graph is kept only if onnxruntime gives the same
outputs for both on the example input (else the unsimplified graph ships and the manifest says
why). Metadata (model, preprocessing, labels) goes into ``metadata_props``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgebase.errors import ConfigError, MissingDependencyError
from exporters.common import Conversion, ConversionError, first_line, graph_summary, quiet

MIN_OPSET = 18
# a simplified graph must reproduce the original graph's outputs this closely
SIMPLIFY_ATOL, SIMPLIFY_RTOL = 1e-6, 1e-5


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"{module} ({what})", "host") from None


def torch_to_onnx(model, example, path: str | Path, *, precision: str = "fp32",
                  simplify: bool = True, opset: int = MIN_OPSET,
                  metadata: Mapping[str, str] | None = None) -> Conversion:
    """Export ``model`` (eval mode) traced at ``example`` and write ``path``."""
    import torch

    if precision != "fp32":
        raise ConfigError(f"onnx does not offer {precision}; valid: fp32")
    if int(opset) < MIN_OPSET:
        raise ConfigError(f"opset {opset} is not available: the dynamo exporter writes opset "
                          f">= {MIN_OPSET} (its down-conversion to 17 fails)")
    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    path = Path(path)
    details: dict[str, Any] = {"tool": "torch.onnx (dynamo)", "opset": int(opset)}
    t0 = time.perf_counter()
    with quiet() as log:
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    model, (example,), dynamo=True, opset_version=int(opset),
                    input_names=["input"], output_names=["logits"], verbose=False)
            proto = program.model_proto
        except Exception as err:
            raise ConversionError(f"torch.onnx.export could not export the model: "
                                  f"{first_line(err)}", log=log.text()) from err
    details["export_seconds"] = round(time.perf_counter() - t0, 3)
    if simplify:
        proto, details["simplify"] = _simplify(proto, example.numpy())
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path))
    return Conversion(file=path, details=details, graph=summary_of(proto))


def summary_of(proto) -> dict[str, Any]:
    return graph_summary((n.op_type for n in proto.graph.node), transpose="Transpose")


def _run(proto, x: np.ndarray) -> list[np.ndarray]:
    ort = _require("onnxruntime", "ONNX simplification check")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _simplify(proto, x: np.ndarray):
    """(graph to ship, what happened): onnxslim's graph only if its outputs match."""
    onnxslim = _require("onnxslim", "ONNX simplification")
    before = len(proto.graph.node)
    with quiet():
        try:
            slim = onnxslim.slim(proto)
        except Exception as err:  # a simplifier failure must not fail the export
            return proto, {"tool": "onnxslim", "kept": False,
                           "reason": f"onnxslim failed: {first_line(err)}"}
    ref, out = _run(proto, x), _run(slim, x)
    same = len(ref) == len(out) and all(
        a.shape == b.shape and np.allclose(a, b, rtol=SIMPLIFY_RTOL, atol=SIMPLIFY_ATOL)
        for a, b in zip(ref, out))
    change = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, out)) if same else None
    info = {"tool": "onnxslim", "kept": same, "nodes_before": before,
            "nodes_after": len(slim.graph.node), "max_abs_change": change}
    if not same:
        info["reason"] = "outputs changed; the unsimplified graph is kept"
        return proto, info
    return slim, info
