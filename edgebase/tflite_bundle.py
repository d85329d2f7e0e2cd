"""What a release bundle's ``.tflite`` carries: TFLite Support metadata (normalization,
descriptions, ``labels.txt`` packed inside) -- the capability table's ``BundleHooks`` of the
tflite target.

``pack`` runs in ``deploy release``; ``check`` runs in ``runner verify`` on the device, so this
module imports no framework (``edgebase.tflite_metadata`` reads with flatbuffers only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edgebase.errors import ConfigError, DeployError

PASS = "tflite_metadata"  # the pass record's name, and the flag on the bundle entry


def pack(data: bytes, art, labels: Sequence[str], version: str
         ) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """(the file with metadata packed in, its pass record, fields for its bundle entry)."""
    from edgebase.tflite_metadata import write_metadata

    pre = art.preprocess
    if pre is None:
        raise ConfigError(f"{art.file}: the manifest has no preprocessing to record in the metadata")
    packed = write_metadata(
        data, name=art.model.get("name", Path(art.file).stem), version=version, labels=labels,
        description=f"{art.model.get('arch', 'image')} classifier, {len(labels)} classes, "
                    f"{art.precision}",
        mean=[255.0 * m for m in pre.mean], std=[255.0 * s for s in pre.std],
        input_description=(f"RGB image, {pre.crop}x{pre.crop} centre crop after resizing the "
                           f"short side to {pre.resize}, {art.input.layout or ''} "
                           f"{art.input.dtype}").replace("  ", " "),
        output_description=f"{len(labels)} class scores (logits), in labels.txt order")
    record = {"name": PASS, "schema": "tflite-support metadata 1.0.0", "packed": ["labels.txt"],
              "outputs_identical": True}
    return packed, record, {PASS: True}


def check(root: Path, path: Path, entry: dict[str, Any], manifest: dict[str, Any]) -> list[str]:
    """The labels and normalization an Android app reads must be the bundle's."""
    if not entry.get(PASS):
        return []
    try:
        from edgebase.tflite_metadata import read_metadata
        meta = read_metadata(path)
    except DeployError as e:
        return [f"packed TFLite metadata unreadable ({e})"]
    problems = []
    try:
        labels = (root / manifest["labels"]).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, KeyError, TypeError) as e:
        # its checksum line already says it is missing; this model cannot be compared
        why = getattr(e, "strerror", None) or type(e).__name__
        return [f"cannot compare its packed labels with {manifest.get('labels')!r} ({why})"]
    if meta["labels"] != labels:
        problems.append(f"packed labels differ from {manifest['labels']}")
    pre = manifest.get("preprocess") or {}
    want_mean = [255.0 * m for m in pre.get("mean", ())]
    want_std = [255.0 * s for s in pre.get("std", ())]
    if not (_close(meta["mean"], want_mean) and _close(meta["std"], want_std)):
        problems.append(f"packed normalization mean {meta['mean']} std {meta['std']} differs "
                        f"from the bundle's {want_mean} / {want_std} (pixel units)")
    return problems


def _close(a, b) -> bool:
    return a is not None and len(a) == len(b) and all(abs(x - y) <= 1e-4 * max(1.0, abs(y))
                                                      for x, y in zip(a, b))
