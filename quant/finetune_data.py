"""Images for the fine-tuning that follows pruning and weight sharing (``quant.finetune``).

Two kinds, both never the evaluation images (``deploy compress`` checks the two sets apart):
  * labelled (``--train-data``): the ``train`` split of an ImageFolder set whose classes are
    the model's; the loss is cross-entropy on its labels;
  * unlabelled (``--distill-data``, and the default): any images, labels ignored; the
    compressed net learns to give the dense parent's outputs on them (distillation).

Pixels are decoded once through ``edgebase.images`` (the reader evaluation uses), resized and
centre-cropped with the model's own preprocessing, put in the model's colour order and kept as
uint8 ``[N, crop, crop, 3]``; batches are augmented like the CIFAR-10 training recipe (random
crop of the 4-px padded image for inputs of 32 px or less, horizontal flip) and normalised by
``zoo.traindata``. Images smaller than the model's input are enlarged and marked ``upscaled``:
their statistics are not the model's, so fine-tuning keeps BatchNorm statistics as they are
(``quant.finetune``). A CIFAR-size set read at its own size, for more than 10,000 images, goes
through ``zoo.traindata``'s decoded cache, so a second run does not decode 50,000 JPEGs again;
fewer are decoded directly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgebase.errors import ConfigError, DataError

SMALL_INPUT = 32  # inputs this small get the CIFAR recipe's padded random crop
PADDING = 4
CACHE_ABOVE = 10_000  # more images than this: decode the whole set once into the cache


@dataclass
class FinetuneData:
    pixels: np.ndarray  # uint8 [N, crop, crop, 3], the model's colour order
    labels: np.ndarray | None  # int64 [N]; None: unlabelled (distillation)
    preprocess: Any  # edgebase.manifest.Preprocess of the model
    source: dict[str, Any] = field(default_factory=dict)  # for the manifest

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def inputs(self, n: int, seed: int = 0):
        """``n`` images drawn at random (seeded), normalised, not augmented."""
        import torch

        from zoo.traindata import Augmenter

        pick = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        p = self.preprocess
        return Augmenter(p.mean, p.std).normalize(torch.from_numpy(self.pixels[pick]))

    def batches(self, batch_size: int, epoch: int, seed: int) -> Iterator[tuple[Any, Any]]:
        """One shuffled, augmented epoch of (float32 NCHW inputs, labels or None); seeded by
        (seed, epoch), the last incomplete batch dropped (BatchNorm dislikes tiny batches)."""
        import torch

        from zoo.traindata import Augmenter, Split, train_batches

        p = self.preprocess
        padding = PADDING if p.crop <= SMALL_INPUT else 0
        augment = Augmenter(p.mean, p.std, padding=padding, flip=True)
        labels = self.labels if self.labels is not None else np.zeros(len(self), np.int64)
        gen = torch.Generator().manual_seed(seed * 7919 + epoch)
        for x, y in train_batches(Split(self.pixels, labels), batch_size, gen, augment):
            yield x, (y if self.labels is not None else None)


def check_finetune_set(path: str | os.PathLike, *, labelled: bool,
                       num_classes: int | None = None):
    """The set's train split (an ``edgebase.images.ImageSet``) and whether it has one;
    a labelled set without a train split or of other classes than the model's is refused."""
    from edgebase.images import ImageSet

    path = Path(path)
    if not path.exists():
        raise DataError(f"fine-tuning data {path}: no such file or folder")
    images = ImageSet(path, split="train")
    has_train = images.layout == "imagefolder" and all(
        "train" in s.key.split("/")[:-2] for s in images.samples)
    if labelled:
        if not has_train:
            raise DataError(f"--train-data {path}: no train/<class>/<image> folders; labelled "
                            f"fine-tuning reads a train split (give unlabelled images with "
                            f"--distill-data instead)")
        if num_classes is not None and images.num_classes != num_classes:
            raise DataError(f"--train-data {path}: {images.num_classes} classes, the model has "
                            f"{num_classes} outputs; give images of the model's classes, or "
                            f"use them unlabelled with --distill-data")
    return images, has_train


def load_finetune_data(path: str | os.PathLike, preprocess, *, labelled: bool,
                       num_classes: int | None = None, limit: int | None = None, seed: int = 0,
                       progress: bool = True, note: str | None = None) -> FinetuneData:
    """``limit`` images (class-balanced, seeded; all when None) of ``path``'s train split, or of
    the whole set when it has no splits (unlabelled only)."""
    if limit is not None and limit < 2:
        raise ConfigError(f"--train-limit must be at least 2 images, got {limit}")
    images, has_train = check_finetune_set(path, labelled=labelled, num_classes=num_classes)
    pixels = labels = None
    if (limit is None or limit > CACHE_ABOVE) and _cifar_sized(images, preprocess):
        pixels, labels = _cached_cifar(Path(path), preprocess, progress)
    upscaled = False
    if pixels is None:
        indices = images.subset(limit, seed=seed)
        pixels, upscaled = _decode(images, indices, preprocess, progress)
        labels = np.array([images.samples[i].label for i in indices], np.int64)
    elif limit is not None and limit < len(labels):
        from zoo.traindata import Split, subset

        picked = subset(Split(pixels, labels), limit, seed)
        pixels, labels = picked.images, picked.labels
    source = {"data": Path(path).name, "split": "train" if has_train else "all (no splits)",
              "images": int(len(pixels)), "size": f"{preprocess.crop}x{preprocess.crop}",
              "labelled": labelled, "seed": seed, "limit": limit, "upscaled": upscaled,
              "use": "labels, cross-entropy" if labelled else "unlabelled, distillation "
                     "from the dense parent"}
    if note:
        source["note"] = note
    return FinetuneData(pixels, labels if labelled else None, preprocess, source)


def image_keys(path: str | os.PathLike, split: str) -> set[str]:
    """The files an image set serves for ``split`` (to keep fine-tuning off evaluation images)."""
    from edgebase.images import ImageSet

    return {s.key for s in ImageSet(path, split=split).samples}


def _cifar_sized(images, preprocess) -> bool:
    """A train/test ImageFolder whose images already have the model's input size."""
    if images.layout != "imagefolder" or preprocess.crop > SMALL_INPUT or preprocess.resize != \
            preprocess.crop:
        return False
    first = images.load(0)
    return first.shape[:2] == (preprocess.crop, preprocess.crop)


def _cached_cifar(path: Path, preprocess, progress: bool):
    from zoo.traindata import load_dataset

    try:
        data = load_dataset(path, size=preprocess.crop, progress=progress)
    except DataError:
        return None, None  # not a train/test set of equal-size images: decode it here
    pixels = data.train.images
    if preprocess.color == "BGR":
        pixels = np.ascontiguousarray(pixels[..., ::-1])
    return pixels, data.train.labels


def _decode(images, indices, preprocess, progress: bool) -> tuple[np.ndarray, bool]:
    """uint8 crops at the model's input size, and whether any image had to be enlarged."""
    from edgebase.images import resize_crop

    out = np.empty((len(indices), preprocess.crop, preprocess.crop, 3), np.uint8)
    upscaled = False
    it = enumerate(indices)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(indices), desc="decoding fine-tuning images", unit="img",
                  leave=False, mininterval=1.0)
    for n, i in it:
        rgb = images.load(i)
        upscaled |= min(rgb.shape[:2]) < preprocess.crop
        rgb = resize_crop(rgb, preprocess.resize, preprocess.crop, preprocess.interpolation)
        out[n] = rgb[..., ::-1] if preprocess.color == "BGR" else rgb
    return out, upscaled
