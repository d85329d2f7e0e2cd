"""int8 post-training quantization, with each target's own quantizer.

``PTQ_PASSES`` is keyed by target name (the capability table's names); each module provides
``TARGET``, ``METHODS`` (calibration methods, the first is the default), an options dataclass,
``make_options(method, io, exclude)``, ``quantize(src, dst, calib, options, parent=None)`` and
``layer_names(path)``. A new target is one module plus one line here. Modules are imported only
when their target is used.
"""
from __future__ import annotations

import importlib

from edgebase.errors import UnknownNameError

PTQ_PASSES = {
    "onnx": "quant.onnx_ptq",
    "tflite": "quant.tflite_ptq",
    "openvino": "quant.openvino_ptq",
}


def get_pass(target: str):
    """The PTQ module for ``target``; unknown names list the valid ones."""
    try:
        return importlib.import_module(PTQ_PASSES[target])
    except KeyError:
        raise UnknownNameError("int8 target", target, PTQ_PASSES) from None


def progress(message: str) -> None:
    """Default progress sink of the int8 stage: stderr, so stdout stays the result (--json)."""
    import sys

    print(message, file=sys.stderr, flush=True)
