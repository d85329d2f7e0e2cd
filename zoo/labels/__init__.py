"""Label sets shipped with the zoo, by name."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_HERE = Path(__file__).parent


@lru_cache(maxsize=None)
def _read(name: str) -> tuple[str, ...]:
    return tuple((_HERE / f"{name}.txt").read_text().splitlines())


# name -> loader; ImageNet is the 1000-class list (torchvision order, no background)
LABEL_SETS = {
    "imagenet": lambda: _read("imagenet"),
    "cifar10": lambda: _read("cifar10"),
    # TensorFlow-slim classifiers: class 0 is "background", then the 1000 in the order above
    "imagenet1001": lambda: ("background",) + _read("imagenet"),
}


def labels(name: str | None) -> tuple[str, ...]:
    return LABEL_SETS[name]() if name else ()
