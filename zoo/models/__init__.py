"""Model families. Importing this package registers every builder with ``zoo.registry``.

Bare family names are aliases for documented defaults (ALIASES). Every builder takes
``small_input=True`` for 32x32 inputs (CIFAR): it changes strides only, never state-dict keys;
``small_input_adaptation(arch)`` is the text to record as ``ModelEntry.adaptation`` for such a
variant, e.g. ``shufflenet_v2_x0_5.cifar10``.
"""
from __future__ import annotations

from zoo.models import (  # noqa: F401  (imports run the registrations)
    mobilenet_v1, mobilenet_v2, mobilenet_v3, shufflenet_v1, shufflenet_v2, squeezenet,
)
from zoo.models._common import SMALL_INPUT
from zoo.registry import register_alias

ALIASES = {
    "mobilenet_v1": "mobilenet_v1_x1_0",  # alpha = 1.0
    "mobilenet_v3": "mobilenet_v3_small",
    "shufflenet_v1": "shufflenet_v1_g3",  # g = 3, scale 1.0 (the paper's main model)
    "shufflenet_v2": "shufflenet_v2_x1_0",
    "squeezenet": "squeezenet1_1",
}
for _alias, _target in ALIASES.items():
    register_alias(_alias, _target)


def family(arch: str) -> str:
    """``shufflenet_v2_x0_5.cifar10`` -> ``shufflenet_v2`` (a key of SMALL_INPUT)."""
    base = arch.split(".", 1)[0]
    for fam in sorted(SMALL_INPUT, key=len, reverse=True):
        if base.startswith(fam):
            return fam
    raise KeyError(f"no model family for {arch!r}")


def small_input_adaptation(arch: str) -> str:
    """What ``small_input=True`` changes for ``arch``, e.g. for ModelEntry.adaptation."""
    return SMALL_INPUT[family(arch)]
