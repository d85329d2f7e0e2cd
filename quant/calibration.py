"""Calibration data for int8 PTQ: a small, deterministic set of preprocessed model inputs.

Sources (``--calib PATH``):
  * an ImageFolder directory or a zip of one, or ImageNet files named ``<wnid>_*.JPEG``
    (read with ``edgebase.images`` so calibration sees the same pixels as evaluation);
    a seeded, class-balanced subset of ``size`` images, preprocessed by the model's metadata;
  * a ``.npz`` holding one array (or ``x``/``inputs``/``images``): either float32 inputs already
    preprocessed ``[N, C, H, W]`` or raw RGB pixels uint8 ``[N, H, W, 3]`` (preprocessed here).
Data distilled from the model itself (no images) comes from ``quant.zeroq`` as the same type.
Without ``--calib``, a model whose trained weights ship in the package calibrates on the
training images that ship with them (``zoo.calib``, ``packaged``). ``--calib synthetic`` is
seeded noise (``synthetic``): the only choice for random-init weights, and it marks the file
"latency only" (int8 ranges taken on noise say nothing about accuracy on images).
"""
from __future__ import annotations

import os
import random
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgebase.errors import ConfigError, DataError, ShapeError

DEFAULT_SIZE = 300
NPZ_KEYS = ("x", "inputs", "images")
# --calib words that are not paths
ZEROQ, SYNTHETIC = "zeroq", "synthetic"
KEYWORDS = (ZEROQ, SYNTHETIC)
SYNTHETIC_SIZE = 64
LATENCY_ONLY = "latency only: int8 ranges calibrated on synthetic noise, accuracy unknown"


def calib_choice(value: str | None) -> Path | str | None:
    """A ``--calib`` value as the int8 stage takes it: a keyword as is, else a path."""
    return value if value is None or value in KEYWORDS else Path(value)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed float32 model inputs ``[N, C, H, W]`` plus where they came from."""

    inputs: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)  # recorded in the int8 manifest
    keys: tuple[str, ...] = ()  # image keys used (so evaluation can leave them out)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield self.inputs[start:start + batch_size]

    def describe(self) -> str:
        s = self.source
        if s.get("kind") == "zeroq":
            return (f"{len(self)} images distilled from the model's BatchNorm statistics "
                    f"(ZeroQ, no real data; {s.get('iterations')} iterations)")
        if s.get("kind") == "packaged":
            return (f"{len(self)} {s['source']} images, {s['classes']} classes balanced "
                    f"(seed {s['seed']}; {s['file']})")
        if s.get("kind") == SYNTHETIC:
            return f"{len(self)} synthetic noise inputs (seed {s['seed']}): {LATENCY_ONLY}"
        return f"{len(self)} images from {s.get('path')} (seed {s.get('seed')})"

    @property
    def latency_only(self) -> bool:
        return bool(self.source.get("latency_only"))


def load_calibration(path: str | os.PathLike, preprocess, size: int = DEFAULT_SIZE,
                     seed: int = 0, split: str = "train") -> CalibrationSet:
    """Read ``size`` calibration inputs from ``path`` for a model with ``preprocess``."""
    if size < 1:
        raise ConfigError(f"--calib-size must be >= 1, got {size}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"calibration data {path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".npz":
        return _from_npz(path, preprocess, size, seed)
    if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
        raise DataError(f"calibration data {path}: the folder is empty")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise DataError(f"calibration data {path}: not a folder, a zip of images or a .npz")
    images = _image_set(path, split)
    indices = images.subset(size, seed=seed, balanced=True)
    return from_image_set(images, indices, preprocess, seed=seed)


def packaged_calibration(dataset: str, preprocess, size: int | None = None,
                         seed: int = 0) -> CalibrationSet | None:
    """The training images that ship for weights trained on ``dataset`` (None: none ship)."""
    from zoo.calib import packaged_set

    pack = packaged_set(dataset)
    if pack is None:
        return None
    have = pack.record["images"]
    size = have if size is None else size
    if not 1 <= size <= have:
        raise ConfigError(f"--calib-size {size}: the packaged {dataset} calibration set holds "
                          f"{have} images; give 1..{have}, or --calib PATH for more")
    # the packaged order is the build's seeded choice; a different seed re-draws from it
    calib = load_calibration(pack.path, preprocess, size=size, seed=seed, split="train")
    source = {"kind": "packaged", "source": pack.label, "images": len(calib),
              "size": len(calib), "seed": seed, "classes": calib.source["classes"],
              "file": pack.record["file"], "sha256": pack.record["sha256"],
              "path": str(pack.path), "origin": pack.record["source"],
              "origin_seed": pack.record["seed"]}
    return CalibrationSet(calib.inputs, source, calib.keys)


def synthetic(preprocess, size: int | None = None, seed: int = 0) -> CalibrationSet:
    """Seeded standard-normal inputs clipped to the preprocessed pixel range: latency only."""
    n = SYNTHETIC_SIZE if size is None else size
    if n < 1:
        raise ConfigError(f"--calib-size must be >= 1, got {n}")
    lo = min((0.0 - m) / s for m, s in zip(preprocess.mean, preprocess.std))
    hi = max((1.0 - m) / s for m, s in zip(preprocess.mean, preprocess.std))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, preprocess.crop, preprocess.crop)).clip(lo, hi)
    source = {"kind": SYNTHETIC, "source": "synthetic noise", "size": n, "images": n,
              "seed": seed, "latency_only": True, "note": LATENCY_ONLY}
    return CalibrationSet(x.astype(np.float32), source)


def _image_set(path: Path, split: str):
    from edgebase.images import ImageSet

    try:
        return ImageSet(path, split=split)
    except DataError as e:
        # A set with only test/val folders is still usable for calibration.
        if "split" in str(e) and split == "train":
            return ImageSet(path, split="val")
        raise DataError(f"calibration data: {e}") from None


def from_image_set(images, indices, preprocess, seed: int = 0) -> CalibrationSet:
    from edgebase.images import preprocess as prep

    arrays = []
    for i in indices:
        arrays.append(prep(images.load(i), _nchw(preprocess)))
    keys = tuple(images.samples[i].key for i in indices)
    classes = len({images.samples[i].label for i in indices})
    source = {"kind": "images", "path": str(images.path), "size": len(indices), "seed": seed,
              "classes": classes, "layout": images.layout}
    return CalibrationSet(np.stack(arrays).astype(np.float32), source, keys)


def _nchw(preprocess):
    # torch parents and every exported file here take NCHW float input
    import dataclasses

    return dataclasses.replace(preprocess, layout="NCHW")


def _from_npz(path: Path, preprocess, size: int, seed: int) -> CalibrationSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.keys())
            if not names:
                raise DataError(f"calibration data {path}: the .npz holds no arrays")
            key = names[0] if len(names) == 1 else next((k for k in NPZ_KEYS if k in names), None)
            if key is None:
                raise DataError(f"calibration data {path}: several arrays ({', '.join(names)}) "
                                f"and none named {', '.join(NPZ_KEYS)}")
            x = data[key]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"calibration data {path}: unreadable .npz ({e})") from None
    if len(x) == 0:
        raise DataError(f"calibration data {path}: array {key!r} is empty")
    crop = preprocess.crop
    chosen = sorted(random.Random(seed).sample(range(len(x)), size)) if size < len(x) \
        else list(range(len(x)))
    x = x[chosen]
    if x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] == 3:
        from edgebase.images import preprocess as prep

        x = np.stack([prep(np.ascontiguousarray(im), _nchw(preprocess)) for im in x])
    elif np.issubdtype(x.dtype, np.floating) and x.ndim == 4:
        if tuple(x.shape[1:]) != (3, crop, crop):
            raise ShapeError(f"calibration data {path}: array {key!r} has inputs of shape "
                             f"{tuple(x.shape[1:])}; the model takes (3, {crop}, {crop}) "
                             f"preprocessed float (or give raw uint8 [N, H, W, 3] pixels)")
    else:
        raise ShapeError(f"calibration data {path}: array {key!r} is {x.dtype} {tuple(x.shape)}; "
                         f"expected float32 [N, 3, {crop}, {crop}] or uint8 [N, H, W, 3]")
    if not np.isfinite(x).all():
        raise DataError(f"calibration data {path}: array {key!r} contains NaN or inf")
    source = {"kind": "npz", "path": str(path), "array": key, "size": len(chosen), "seed": seed}
    return CalibrationSet(np.ascontiguousarray(x, dtype=np.float32), source)


def eval_indices(images, calib: CalibrationSet | None, limit: int | None = None,
                 seed: int = 0) -> list[int]:
    """Evaluation indices of ``images`` that were not used for calibration.

    When calibration and evaluation read the same set, the calibration images are left out so
    the reported accuracy is on held-out images."""
    used = set()
    if calib is not None and calib.source.get("kind") in ("images", "packaged") and \
            Path(calib.source["path"]).resolve() == Path(images.path).resolve():
        used = set(calib.keys)
    rest = [i for i, s in enumerate(images.samples) if s.key not in used]
    if not rest:
        raise DataError(f"{images.path}: every image was used for calibration; none is left "
                        f"to evaluate on (lower --calib-size or give another --data set)")
    if limit is not None and limit < len(rest):
        rest = sorted(random.Random(seed).sample(rest, limit))
    return rest
