"""Model families. Importing this package registers every builder with ``zoo.registry``.

Aliases (bare family names -> documented defaults) live here so that they are in one place.
``small_input_adaptation(arch)`` gives the text to record as ``ModelEntry.adaptation`` for a
32x32 (CIFAR) variant built with ``small_input=True``.
"""
from __future__ import annotations

from zoo.models import mobilenet_v1, mobilenet_v2, shufflenet_v2  # noqa: F401  (registrations)
from zoo.models._common import SMALL_INPUT
from zoo.registry import register_alias

ALIASES = {
    "mobilenet_v1": "mobilenet_v1_x1_0",
    "shufflenet_v2": "shufflenet_v2_x1_0",
}
for _alias, _target in ALIASES.items():
    register_alias(_alias, _target)


def family(arch: str) -> str:
    """``shufflenet_v2_x0_5`` -> ``shufflenet_v2`` (the key of SMALL_INPUT)."""
    base = arch.split(".", 1)[0]
    for fam in sorted(SMALL_INPUT, key=len, reverse=True):  # longest first: squeezenet1_0_bypass
        if base == fam or base.startswith(fam + "_") or base.startswith(fam):
            return fam
    raise KeyError(arch)


def small_input_adaptation(arch: str) -> str:
    return SMALL_INPUT[family(arch)]
