"""Calibration images that ship in the package, for the trained ``*.cifar10`` entries.

``cifar10-train-300.zip`` holds 300 CIFAR-10 *training* images (30 per class, seeded), the
JPEG files byte for byte as they are in the source zip, in its ImageFolder layout
(``cifar10/train/<class>/NNNN.jpg``), so ``--calib`` readers take it as any other image set.
Test images are never in it: they are what int8 accuracy is measured on. The record beside it
(``.json``) says where the files came from (source name and sha256, seed, keys) and the zip's
own sha256, checked on every use. ``python -m zoo.calib.build_cifar10 PATH/cifar10.zip``
rebuilds both, byte-identical.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebase.errors import DataError

HERE = Path(__file__).parent
# dataset of the packaged weights -> the calibration set that ships for it
SETS = {"cifar10": "cifar10-train-300"}


@dataclass(frozen=True)
class PackagedSet:
    path: Path  # the zip
    record: dict[str, Any]  # the .json beside it

    @property
    def label(self) -> str:  # what the screen and the manifest call it
        return f"packaged {self.record['dataset']} {self.record['split']}"


def packaged_set(dataset: str) -> PackagedSet | None:
    """The calibration set shipped for weights trained on ``dataset`` (None: none ships)."""
    from edgebase.files import sha256_file

    name = SETS.get(dataset)
    if name is None:
        return None
    path, record_path = HERE / f"{name}.zip", HERE / f"{name}.json"
    if not path.is_file() or not record_path.is_file():
        raise DataError(f"the packaged calibration set {path.name} (or its .json) is missing "
                        f"from the installation; reinstall, or pass --calib PATH")
    record = json.loads(record_path.read_text())
    if sha256_file(path) != record["sha256"]:
        raise DataError(f"{path} does not match the sha256 in {record_path.name}; reinstall, "
                        f"or pass --calib PATH")
    return PackagedSet(path, record)
