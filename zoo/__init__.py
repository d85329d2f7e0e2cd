"""The compact-net zoo: SqueezeNet, MobileNet V1/V2/V3, ShuffleNet V1/V2.

Public API (torchvision ``_api`` style): ``list_models``, ``get_entry``, ``create_model``.
State-dict key names follow torchvision wherever torchvision has the architecture.
"""
from zoo.registry import ModelEntry, Weights, aliases, get_entry, list_models

# The registrations run on import, here and only here, so the registry and the weights loader
# import none of the modules that register into them (no cycles): the families first, then the
# trained CIFAR-10 entries built on them, then the importers of foreign weight files.
import zoo.models  # noqa: E402,F401
import zoo.cifar10  # noqa: E402,F401
import zoo.importers  # noqa: E402,F401


def create_model(name: str, *, num_classes: int | None = None, width: float | None = None,
                 input_size: int | None = None):
    """Build ``name`` (with overrides) and return ``(model, entry)``; model is in eval mode."""
    from zoo.registry import resolve_entry

    entry = resolve_entry(name, num_classes=num_classes, width=width,
                          input_size=input_size).entry
    return entry.build(), entry


__all__ = ["ModelEntry", "Weights", "aliases", "create_model", "get_entry", "list_models"]
