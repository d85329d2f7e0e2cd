"""PyTorch -> TFLite with litert-torch (no TensorFlow, no ONNX in between).

* Input layout: NHWC by default (``litert_torch.to_channel_last_io``), which is what mobile
  apps feed and what the converter computes in anyway, so the input TRANSPOSE disappears.
  ``nhwc_input=False`` keeps PyTorch's NCHW input.
* ``rewrite=True`` (default) applies ``exporters.tflite_rewrites`` first, so channel shuffle and
  global pooling do not force the graph back to NCHW.
* fp16: the fp32 flatbuffer's conv / depthwise / fully-connected weights are cast to float16
  by ai-edge-quantizer (weight-only "float casting"); compute stays float32 and the file
  halves. This is TFLite's classic fp16 post-training mode.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgebase.errors import ConfigError, MissingDependencyError
from exporters import tflite_graph
from exporters.common import Conversion, ConversionError, first_line, quiet


def _litert_torch():
    try:
        with quiet():
            import litert_torch
    except ImportError:
        raise MissingDependencyError("litert-torch (TFLite export)", "host") from None
    return litert_torch


def torch_to_tflite(model, example, path: str | Path, *, precision: str = "fp32",
                    nhwc_input: bool = True, rewrite: bool = True) -> Conversion:
    """Convert ``model`` (eval mode) traced at ``example`` (NCHW) and write ``path``."""
    import torch

    from exporters.tflite_rewrites import nhwc_friendly

    model.eval()

    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"tflite does not offer {precision}; valid: fp32, fp16")
    litert_torch = _litert_torch()
    path = Path(path)
    details: dict[str, Any] = {"tool": "litert-torch", "input_layout": "NHWC" if nhwc_input
                               else "NCHW"}
    t0 = time.perf_counter()
    with quiet() as log:
        try:
            module = model
            if rewrite:
                module, counts = nhwc_friendly(model, example)
                details["rewrites"] = counts
            sample = example
            if nhwc_input:
                module = litert_torch.to_channel_last_io(module, args=[0])
                module.training = False  # the wrapper only; eval() would recurse into it
                sample = example.permute(0, 2, 3, 1).contiguous()
            with torch.no_grad():
                edge = litert_torch.convert(module, (sample,))
            fp32_path = path if precision == "fp32" else path.with_name(path.stem + ".fp32tmp.tflite")
            edge.export(str(fp32_path))
        except Exception as err:  # the converter raises anything from MLIR to torch.export
            raise ConversionError(f"litert-torch could not convert the model: "
                                  f"{first_line(err)}", log=log.text()) from err
    details["convert_seconds"] = round(time.perf_counter() - t0, 3)
    if precision == "fp16":
        try:
            details["fp16"] = _cast_weights_fp16(fp32_path, path)
        finally:
            fp32_path.unlink(missing_ok=True)
    return Conversion(file=path, details=details, graph=tflite_graph.summary(path))


def _cast_weights_fp16(src: Path, dst: Path) -> dict[str, Any]:
    try:
        with quiet():
            from ai_edge_quantizer import qtyping, quantizer
    except ImportError:
        raise MissingDependencyError("ai-edge-quantizer (TFLite fp16)", "host") from None
    ops = (qtyping.TFLOperationName.CONV_2D, qtyping.TFLOperationName.DEPTHWISE_CONV_2D,
           qtyping.TFLOperationName.FULLY_CONNECTED)
    with quiet() as log:
        try:
            q = quantizer.Quantizer(str(src))
            for op in ops:
                q.add_weight_only_config(regex=".*", operation_name=op, num_bits=16,
                                         algorithm_key=quantizer.AlgorithmName.FLOAT_CASTING)
            result = q.quantize()
        except Exception as err:
            raise ConversionError(f"ai-edge-quantizer could not cast the weights to fp16: "
                                  f"{first_line(err)}", log=log.text()) from err
    dst.write_bytes(bytes(result.quantized_model))
    return {"tool": "ai-edge-quantizer", "mode": "weight-only float16 casting",
            "ops": [op.value for op in ops]}
