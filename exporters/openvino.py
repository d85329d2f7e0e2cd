"""PyTorch -> OpenVINO IR (.xml + .bin) with ``openvino.convert_model`` and ``save_model``.

``save_model`` compresses weights to fp16 unless told not to: fp32 passes
``compress_to_fp16=False`` (otherwise logits move by ~1e-2), ``precision="fp16"`` sets it.
The CPU plugin still computes in fp32 on CPUs without native fp16; the IR is half the size.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from edgebase.errors import ConfigError, MissingDependencyError
from exporters.common import Conversion, ConversionError, first_line, graph_summary, quiet

# parameter-like nodes that are not operations of the network
_NOT_OPS = {"Parameter", "Result", "Constant"}


def _openvino():
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino (OpenVINO export)", "openvino") from None
    return openvino


def torch_to_openvino(model, example, path: str | Path, *, precision: str = "fp32",
                      metadata: Mapping[str, str] | None = None) -> Conversion:
    """Convert ``model`` (eval mode) traced at ``example``; write ``path`` (.xml) and its .bin."""
    import torch

    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"openvino does not offer {precision}; valid: fp32, fp16")
    ov = _openvino()
    path = Path(path)
    if path.suffix != ".xml":
        raise ConfigError(f"an OpenVINO IR file must end in .xml, not {path.name}")
    details: dict[str, Any] = {"tool": "openvino.convert_model",
                               "compress_to_fp16": precision == "fp16"}
    t0 = time.perf_counter()
    with quiet() as log:
        try:
            with torch.no_grad():
                # static input shape: edge runtimes plan memory once for a fixed shape
                ov_model = ov.convert_model(model, example_input=example,
                                            input=[tuple(example.shape)])
            ov_model.inputs[0].get_tensor().set_names({"input"})
            ov_model.outputs[0].get_tensor().set_names({"logits"})
            for key, value in (metadata or {}).items():
                ov_model.set_rt_info(value, ["edgedeploy", key])
            ov.save_model(ov_model, str(path), compress_to_fp16=precision == "fp16")
        except Exception as err:
            raise ConversionError(f"openvino.convert_model could not convert the model: "
                                  f"{first_line(err)}", log=log.text()) from err
    details["convert_seconds"] = round(time.perf_counter() - t0, 3)
    bin_path = path.with_suffix(".bin")
    return Conversion(file=path, companions=(bin_path,), details=details,
                      graph=summary(path))


def summary(xml_path: str | Path) -> dict[str, Any]:
    """Op histogram of a saved IR (weights' decompression Converts included, as they run)."""
    ov = _openvino()
    ov_model = ov.Core().read_model(str(xml_path))
    return graph_summary(
        (op.get_type_name() for op in ov_model.get_ordered_ops()
         if op.get_type_name() not in _NOT_OPS), transpose="Transpose")
