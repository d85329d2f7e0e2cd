"""CIFAR-style training data: decode once into a uint8 cache, augment whole batches with tensor ops.

Decoding 50,000 JPEGs takes longer than a training epoch on a small CPU, so the images are
decoded once (through ``edgebase.images.ImageSet``, the same reader that evaluation and
export validation use, so all stages see the same pixels) and stored as uint8 arrays in
``~/.cache/edgedeploy/`` (``$EDGEDEPLOY_CACHE`` overrides it), keyed by the source's sha256.
The cache lives outside the repository and is rebuilt whenever the source changes.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from edgebase.errors import DataError
from edgebase.files import atomic_path, sha256_file

CACHE_VERSION = 1
SPLIT_NAMES = {"train": ("train",), "test": ("test", "val", "validation")}


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int64 [N]


@dataclass
class Dataset:
    train: Split
    test: Split
    classes: list[str]
    source: str  # path of the zip or folder
    source_sha256: str


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEDEPLOY_CACHE", Path.home() / ".cache" / "edgedeploy"))


def _source_key(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    # a folder: hash the listing with sizes and mtimes (hashing every image would cost
    # as much as decoding them)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _decode_split(path: Path, split: str, size: int, progress: bool) -> tuple[Split, list[str]]:
    from edgebase.images import ImageSet

    images = ImageSet(path, split=split)
    if images.layout != "imagefolder":
        raise DataError(f"{path}: expected ImageFolder layout <split>/<class>/<image>, "
                        f"found {images.layout}")
    # ImageSet falls back to the only folder there is; training needs both splits for real
    wanted = SPLIT_NAMES[split]
    if not all(set(PurePosixPath(s.key).parts[:-2]) & set(wanted) for s in images.samples):
        raise DataError(f"{path}: no {split!r} folder ({' or '.join(wanted)}/<class>/<image>); "
                        f"training needs both train/ and test/")
    n = len(images)
    out = np.empty((n, size, size, 3), np.uint8)
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"decoding {split}", unit="img", leave=False, mininterval=1.0)
    for i in it:
        rgb = images.load(i)
        if rgb.shape != (size, size, 3):
            raise DataError(f"{path}:{images.samples[i].key}: image is {rgb.shape[1]}x"
                            f"{rgb.shape[0]}, expected {size}x{size}")
        out[i] = rgb
    labels = np.array([s.label for s in images.samples], np.int64)
    return Split(out, labels), list(images.classes)


def load_dataset(path: str | os.PathLike, *, size: int = 32, progress: bool = True,
                 use_cache: bool = True) -> Dataset:
    """Train and test splits of an ImageFolder zip/folder with ``train/`` and ``test/`` folders."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (expected e.g. ../shared/data/cifar10.zip)")
    key = _source_key(path)
    cache = cache_dir() / f"{path.stem}-{size}px-v{CACHE_VERSION}-{key[:16]}.npz"
    if use_cache and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return Dataset(Split(z["train_x"], z["train_y"]), Split(z["test_x"], z["test_y"]),
                               [str(c) for c in z["classes"]], str(path), key)
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: rebuild it below
    train, classes = _decode_split(path, "train", size, progress)
    test, test_classes = _decode_split(path, "test", size, progress)
    if test_classes != classes:
        raise DataError(f"{path}: train classes {classes} differ from test classes {test_classes}")
    if use_cache:
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, train_x=train.images, train_y=train.labels, test_x=test.images,
                         test_y=test.labels, classes=np.array(classes))
    return Dataset(train, test, classes, str(path), key)


class Augmenter:
    """Random crop with zero padding + horizontal flip, on uint8 NHWC batches, then normalize."""

    def __init__(self, mean, std, padding: int = 4, flip: bool = True):
        import torch

        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.padding, self.flip = padding, flip

    def normalize(self, x_u8):
        """uint8 NHWC -> float32 NCHW, (x/255 - mean)/std as in the zoo's Preprocess."""
        x = x_u8.permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std

    def __call__(self, x_u8, generator):
        import torch

        n, h, w, _ = x_u8.shape
        p = self.padding
        if p:
            padded = torch.nn.functional.pad(x_u8, (0, 0, p, p, p, p))  # zeros = black border
            oy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            rows = (oy[:, None] + torch.arange(h))[:, :, None]
            cols = (ox[:, None] + torch.arange(w))[:, None, :]
            x_u8 = padded[torch.arange(n)[:, None, None], rows, cols]
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            x_u8 = torch.where(flip[:, None, None, None], x_u8.flip(2), x_u8)
        return self.normalize(x_u8)


def train_batches(split: Split, batch_size: int, generator, augment: Augmenter
                  ) -> Iterator[tuple["object", "object"]]:
    """One shuffled epoch; the last incomplete batch is dropped (BatchNorm dislikes tiny batches)."""
    import torch

    x = torch.from_numpy(split.images)
    y = torch.from_numpy(split.labels)
    order = torch.randperm(len(y), generator=generator)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield augment(x[idx], generator), y[idx]


def eval_batches(split: Split, batch_size: int, augment: Augmenter):
    import torch

    x = torch.from_numpy(split.images)
    y = torch.from_numpy(split.labels)
    for start in range(0, len(y), batch_size):
        yield augment.normalize(x[start:start + batch_size]), y[start:start + batch_size]


def subset(split: Split, n: int | None, seed: int) -> Split:
    """A class-balanced, seeded subset of ``n`` images (all when n is None or too large)."""
    if n is None or n >= len(split.labels):
        return split
    rng = np.random.default_rng(seed)
    classes = np.unique(split.labels)
    per = [rng.permutation(np.flatnonzero(split.labels == c)) for c in classes]
    chosen: list[int] = []
    k = 0
    while len(chosen) < n:  # round-robin so every class is represented
        for members in per:
            if k < len(members) and len(chosen) < n:
                chosen.append(int(members[k]))
        k += 1
    idx = np.sort(np.array(chosen))
    return Split(split.images[idx], split.labels[idx])
