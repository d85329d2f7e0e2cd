"""The model registry: names -> builders plus the metadata that travels with each model.

Names are ``arch`` or ``arch.tag`` (``shufflenet_v2_x0_5.cifar10``). A bare family name
(``shufflenet_v2``) is an alias. timm's convention: it means the family's default *trained*
entry when one ships (``shufflenet_v2`` -> ``shufflenet_v2_x0_5.cifar10``), else the family's
architecture default (``shufflenet_v2_x1_0``). ``resolve_entry`` also takes the user's
overrides: when they replace the trained entry's weights (``--weights``, or a class count or
width its weights do not fit) the bare name means the architecture default, whose shape
(ImageNet input, 1000 classes) is what checkpoints and imports are made for. Either way it
says which (``Resolved.note``). Builders register themselves with ``@register_model``; a
duplicate name raises. Lookups that fail list the valid names.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from edgebase.errors import ConfigError, UnknownNameError
from edgebase.manifest import Preprocess

IMAGENET = Preprocess(resize=256, crop=224)
CIFAR10 = Preprocess(resize=32, crop=32, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


@dataclass(frozen=True)
class Weights:
    """Trained weights shipped with the package (path relative to ``zoo/weights/``)."""

    file: str
    sha256: str
    dataset: str
    top1: float  # measured on the dataset's test split, percent
    recipe: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    arch: str  # torchvision-style architecture name, the part before the dot
    builder: Callable[..., Any]
    kwargs: Mapping[str, Any]  # keyword arguments for the builder (num_classes included)
    preprocess: Preprocess = IMAGENET
    labels: str | None = "imagenet"  # label set name (zoo.labels), None when unknown
    weights: Weights | None = None
    width_kwarg: str | None = None  # which builder kwarg --width sets, None if fixed by name
    adaptation: str | None = None  # e.g. the CIFAR stride changes, recorded in manifests
    doc: str = ""

    @property
    def input_size(self) -> int:
        return self.preprocess.crop

    @property
    def num_classes(self) -> int:
        return int(self.kwargs["num_classes"])

    @property
    def trained(self) -> bool:
        return self.weights is not None

    def with_overrides(
        self, *, num_classes: int | None = None, width: float | None = None,
        input_size: int | None = None,
    ) -> "ModelEntry":
        """A copy with user overrides; an override the architecture cannot take raises.

        Changing num_classes or width detaches the shipped weights (they no longer fit)."""
        kwargs = dict(self.kwargs)
        weights, labels = self.weights, self.labels
        if num_classes is not None and num_classes != self.num_classes:
            if num_classes < 1:
                raise ConfigError(f"--num-classes must be >= 1, got {num_classes}")
            kwargs["num_classes"] = num_classes
            weights, labels = None, _labels_for(num_classes, labels)
        if width is not None:
            if self.width_kwarg is None:
                raise ConfigError(
                    f"{self.name} has no width option (its width is fixed by the name); "
                    f"choose another variant from `deploy models`"
                )
            if width != kwargs.get(self.width_kwarg):
                kwargs[self.width_kwarg] = width
                weights = None
        preprocess = self.preprocess
        if input_size is not None and input_size != self.input_size:
            if input_size < 16:
                raise ConfigError(f"--input-size must be >= 16, got {input_size}")
            resize = round(input_size * self.preprocess.resize / self.preprocess.crop)
            preprocess = dataclasses.replace(preprocess, resize=resize, crop=input_size)
        return dataclasses.replace(
            self, kwargs=kwargs, weights=weights, labels=labels, preprocess=preprocess
        )

    def build(self):
        """The nn.Module in eval mode, with shipped weights loaded when there are any."""
        model = self.builder(**self.kwargs)
        if self.weights is not None:
            from zoo.weights import load_packaged_weights

            load_packaged_weights(model, self.weights)
        return model.eval()


def _labels_for(num_classes: int, current: str | None) -> str | None:
    from zoo.labels import LABEL_SETS

    for name, labels in LABEL_SETS.items():
        if len(labels()) == num_classes:
            return name if current == name else None
    return None


_REGISTRY: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}  # bare family name -> architecture default
_TRAINED_DEFAULTS: dict[str, str] = {}  # bare family name -> default trained entry


def register(entry: ModelEntry) -> ModelEntry:
    if entry.name in _REGISTRY or entry.name in _ALIASES:
        raise ValueError(f"model {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry
    return entry


def register_alias(alias: str, target: str) -> None:
    if alias in _REGISTRY or alias in _ALIASES:
        raise ValueError(f"alias {alias!r} clashes with a registered name")
    _ALIASES[alias] = target


def register_trained_default(alias: str, target: str) -> None:
    """Make bare ``alias`` mean the trained entry ``target`` (it must ship weights)."""
    if alias not in _ALIASES:
        raise ValueError(f"{alias!r} is not a family alias")
    if alias in _TRAINED_DEFAULTS:
        raise ValueError(f"family {alias!r} has two default trained entries")
    if not _REGISTRY[target].trained:
        raise ValueError(f"{target!r} ships no weights; it cannot be a trained default")
    _TRAINED_DEFAULTS[alias] = target


def list_models(pattern: str | None = None) -> list[str]:
    import fnmatch

    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def aliases() -> dict[str, str]:
    """What each alias means with no overrides (the trained default where one ships)."""
    return {**_ALIASES, **_TRAINED_DEFAULTS}


def architecture_defaults() -> dict[str, str]:
    """Bare family name -> the family's architecture default (used when weights are replaced)."""
    return {a: _ALIASES[a] for a in _ALIASES if "." not in a}


def get_entry(name: str) -> ModelEntry:
    target = _TRAINED_DEFAULTS.get(name) or _ALIASES.get(name, name)
    try:
        return _REGISTRY[target]
    except KeyError:
        raise UnknownNameError("model", name, list(_REGISTRY) + list(_ALIASES)) from None


@dataclass(frozen=True)
class Resolved:
    entry: ModelEntry  # with the overrides applied
    requested: str  # the name as given
    note: str | None  # set when ``requested`` was an alias: which entry it meant and why


def resolve_entry(name: str, *, weights_given: bool = False, num_classes: int | None = None,
                  width: float | None = None, input_size: int | None = None) -> Resolved:
    """The entry ``name`` means with these overrides applied (see the module docstring)."""
    entry = get_entry(name)  # raises UnknownNameError for unknown names
    why = None
    if name in _TRAINED_DEFAULTS:
        replaced = [flag for flag, hit in (
            ("--weights", weights_given),
            ("--num-classes", num_classes is not None and num_classes != entry.num_classes),
            ("--width", width is not None and width != entry.kwargs.get(entry.width_kwarg or "")),
        ) if hit]
        if replaced:
            entry = _REGISTRY[_ALIASES[name]]
            why = (f"the architecture default, since {', '.join(replaced)} replaces the weights "
                   f"of the trained default {_TRAINED_DEFAULTS[name]}")
        else:
            w = entry.weights
            why = (f"the family's default trained entry ({w.top1:.2f} % top-1 on {w.dataset}; "
                   f"{_ALIASES[name]} is the untrained ImageNet-shape model)")
    elif name in _ALIASES:
        why = "the family's default" + ("" if entry.trained else " (no trained weights ship)")
    note = f"{name} -> {entry.name}: {why}" if why else None
    entry = entry.with_overrides(num_classes=num_classes, width=width, input_size=input_size)
    return Resolved(entry, name, note)
