"""What a model file's manifest says its numbers cannot mean (no number without its meaning).

``runner eval`` and ``runner bench`` print these on stderr and put them in their JSON: a file
made from random-init weights (``model.weights.trained: false``) has an accuracy of chance and
a latency that is all it is good for; an int8 file calibrated on synthetic noise
(``extra.latency_only``) has ranges that say nothing about images. No manifest: nothing known,
nothing said (the runner also takes files made elsewhere).
"""
from __future__ import annotations

from typing import Any


def weights_trained(artifact) -> bool | None:
    """The manifest's ``model.weights.trained`` (None without a manifest or the field)."""
    if artifact is None:
        return None
    trained = ((artifact.model or {}).get("weights") or {}).get("trained")
    return None if trained is None else bool(trained)


def caveats(artifact, name: str) -> list[str]:
    """One line per reason the file's numbers are for latency only; empty when none."""
    found: list[str] = []
    if weights_trained(artifact) is False:
        found.append(f"{name} has random-init weights (its manifest says trained: false): "
                     f"accuracy is chance level and means nothing; latency only")
    latency_only: Any = (artifact.extra or {}).get("latency_only") if artifact else None
    if latency_only:
        found.append(f"{name}: {latency_only}")
    return found
