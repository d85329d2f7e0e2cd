"""Labelled image sets and preprocessing, with numpy and Pillow only (no torch).

Used by ``runner eval``, by export validation and by int8 calibration, so the three see the
same pixels. Sources:
  * an ImageFolder directory ``root/<class>/<image>`` (class index = sorted class names);
  * a zip of one (``cifar10.zip`` holds ``cifar10/{train,test}/<class>/...``: ``split``
    chooses the folder when there are several);
  * a flat folder or zip of ImageNet files named ``<wnid>_<anything>.JPEG`` whose label is the
    wnid's index in the standard sorted list of 1000 wnids.
"""
from __future__ import annotations

import io
import os
import random
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edgebase.errors import ConfigError, DataError, MissingDependencyError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".gif"}
SPLIT_PREFERENCE = {"test": ("test", "val", "validation"), "train": ("train",),
                    "val": ("val", "validation", "test")}


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    return tuple((Path(__file__).with_name("imagenet_wnids.txt")).read_text().split())


@dataclass(frozen=True)
class Sample:
    key: str  # path inside the folder or zip, for error messages
    label: int


class ImageSet:
    """A labelled set of images from a folder or a zip; ``load(i)`` returns RGB uint8 HWC."""

    def __init__(self, path: str | os.PathLike, split: str = "test"):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file or folder")
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            files = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                     if p.is_file()]
        elif zipfile.is_zipfile(self.path):
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{self.path}: unreadable zip ({e})") from None
            files = [n for n in self._zip.namelist() if not n.endswith("/")]
            unsafe = next((n for n in files if _unsafe(n)), None)
            if unsafe is not None:  # never read, and never silently skipped either
                raise DataError(f"{self.path}: member {unsafe!r} points outside the archive "
                                f"(absolute path or '..'); repack the zip with relative paths")
        else:
            raise DataError(f"{self.path}: not a folder or a zip of images")
        images = sorted(f for f in files if _suffix(f) in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{self.path}: contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.samples, self.classes, self.layout = _label(images, split, self.path)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def read_bytes(self, key: str) -> bytes:
        if self._zip is not None:
            try:
                return self._zip.read(key)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as e:
                raise DataError(f"{self.path}:{key}: damaged in the zip ({e})") from None
        try:
            return (self.path / key).read_bytes()
        except OSError as e:
            raise DataError(f"{self.path / key}: unreadable ({e.strerror})") from None

    def load(self, index: int) -> np.ndarray:
        return decode(self.read_bytes(self.samples[index].key), f"{self.path}:{self.samples[index].key}")

    def subset(self, n: int | None, seed: int = 0, balanced: bool = True) -> list[int]:
        """Deterministic indices: all when n is None, else n drawn class-balanced and seeded."""
        idx = list(range(len(self.samples)))
        if n is None or n >= len(idx):
            return idx
        rng = random.Random(seed)
        if not balanced:
            return sorted(rng.sample(idx, n))
        by_class: dict[int, list[int]] = {}
        for i in idx:
            by_class.setdefault(self.samples[i].label, []).append(i)
        for members in by_class.values():
            rng.shuffle(members)
        chosen: list[int] = []
        queues = [by_class[c] for c in sorted(by_class)]
        while len(chosen) < n:  # round-robin over classes
            for q in queues:
                if q and len(chosen) < n:
                    chosen.append(q.pop())
        return sorted(chosen)


# string operations, not PurePosixPath: a 60,000-entry zip is listed on every open
def _suffix(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base[base.rfind("."):].lower() if "." in base else ""


def _unsafe(name: str) -> bool:
    return name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") \
        or (len(name) > 1 and name[1] == ":")  # C:/... from a Windows zip tool


def _label(images: list[str], split: str, path: Path):
    """Work out the layout and give each image its label."""
    names = [f.rsplit("/", 1)[-1] for f in images]
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    if all(n.split("_")[0] in index for n in names):
        samples = [Sample(f, index[n.split("_")[0]]) for f, n in zip(images, names)]
        return samples, list(imagenet_wnids()), "imagenet-wnid"
    # ImageFolder: strip the common prefix, then choose a split if there are several
    parts = [tuple(f.split("/")) for f in images]
    depth = 0
    while all(len(p) > depth + 2 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    tops = sorted({p[depth] for p in parts})
    if all(len(p) > depth + 2 for p in parts) and len(tops) > 1:
        wanted = next((t for t in SPLIT_PREFERENCE.get(split, (split,)) if t in tops), None)
        if wanted is None:
            raise DataError(f"{path}: has folders {', '.join(tops)}; none is a {split!r} split")
        parts = [p for p in parts if p[depth] == wanted]
        images = ["/".join(p) for p in parts]
        depth += 1
    if not all(len(p) == depth + 2 for p in parts):
        raise DataError(
            f"{path}: expected <class>/<image> folders (ImageFolder) or ImageNet files named "
            f"<wnid>_*.JPEG"
        )
    classes = sorted({p[depth] for p in parts})
    index = {c: i for i, c in enumerate(classes)}
    samples = [Sample(f, index[p[depth]]) for f, p in zip(images, parts)]
    return samples, classes, "imagefolder"


def decode(data: bytes, where: str = "image") -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise MissingDependencyError("Pillow (image decoding)", "images") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{where}: unreadable image ({e})") from None


def resize_crop(rgb: np.ndarray, resize: int, crop: int, interpolation: str = "bilinear",
                offset: str = "round") -> np.ndarray:
    """Resize the short side to ``resize`` (aspect kept), then centre-crop ``crop``.

    ``offset`` places the crop when the margin is odd: "round" is torchvision's
    ``int(round(margin / 2))``; "floor" is TensorFlow's ``margin // 2`` (tf.image.central_crop),
    the convention of TF-trained models.
    """
    from PIL import Image

    h, w = rgb.shape[:2]
    if (h, w) != (resize, resize) and min(h, w) != resize:
        if h <= w:
            nh, nw = resize, int(resize * w / h)
        else:
            nh, nw = int(resize * h / w), resize
        method = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                  "nearest": Image.NEAREST}[interpolation]
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), method))
        h, w = nh, nw
    if h < crop or w < crop:
        raise DataError(f"image of {h}x{w} is smaller than the crop {crop} after resizing")
    if offset == "floor":
        top, left = (h - crop) // 2, (w - crop) // 2
    else:
        top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return rgb[top:top + crop, left:left + crop]


def normalize(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float],
              layout: str = "NCHW") -> np.ndarray:
    """uint8 HWC -> float32 (x/255 - mean)/std, CHW or HWC (no batch axis)."""
    x = rgb.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if layout == "NCHW" else x)


def preprocess(rgb: np.ndarray, spec) -> np.ndarray:
    """Apply a ``edgebase.manifest.Preprocess`` to one RGB image."""
    if spec.color == "BGR":
        rgb = rgb[..., ::-1]
    rgb = resize_crop(rgb, spec.resize, spec.crop, spec.interpolation)
    return normalize(rgb, spec.mean, spec.std, spec.layout)


def batches(images: ImageSet, indices: Sequence[int], spec, batch_size: int
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (inputs float32 [N,...], labels int64 [N]) in order."""
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        x = np.stack([preprocess(images.load(i), spec) for i in chunk])
        y = np.array([images.samples[i].label for i in chunk], dtype=np.int64)
        yield x, y


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW batch in ``layout`` (NCHW or NHWC)."""
    if layout == "NCHW":
        return x
    if layout == "NHWC":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    raise ConfigError(f"unknown input layout {layout!r}; valid: NCHW, NHWC")
