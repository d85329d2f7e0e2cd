"""int8 post-training quantization, with each target's own quantizer.

The capability table names each target's PTQ module (``Target.ptq``); each module provides
``TARGET``, ``METHODS`` (calibration methods, the first is the default: the table's
``Target.calib_methods``, which the CLI lists), an options dataclass,
``make_options(method, io, exclude)``, ``quantize(src, dst, calib, options, parent=None)`` and
``layer_names(path)``, and ``QUANTIZES_PARENT``: True when ``quantize`` works on the PyTorch
``parent`` (then required) rather than on the fp32 file ``src``. Modules are imported only
when their target is used.
"""
from __future__ import annotations

import importlib

from edgebase.capabilities import TARGETS
from edgebase.errors import UnknownNameError


def get_pass(target: str):
    """The PTQ module for ``target``; unknown names list the targets that have one."""
    t = TARGETS.get(target)
    if t is None or t.ptq is None:
        raise UnknownNameError("int8 target", target, [n for n, x in TARGETS.items() if x.ptq])
    return importlib.import_module(t.ptq)


def progress(message: str) -> None:
    """Default progress sink of the int8 stage: stderr, so stdout stays the result (--json)."""
    import sys

    print(message, file=sys.stderr, flush=True)
