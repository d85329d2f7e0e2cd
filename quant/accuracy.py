"""fp32 vs int8 on labelled images: top-1/top-5 of both files, top-1 agreement, logit cosine.

Both model files run in their own runtime through ``device_runners.file_logits.FileLogits``
(integer inputs fed through their quantization, integer outputs dequantized), so every file
is compared on the same preprocessed pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgebase.errors import DataError


def label_offset(num_outputs: int, num_classes: int, where: str) -> int:
    """1 for 1001-output TensorFlow classifiers (class 0 = background) on 1000-class sets."""
    if num_outputs == num_classes:
        return 0
    if num_outputs == num_classes + 1:
        return 1
    raise DataError(f"{where} has {num_classes} classes; the model has {num_outputs} outputs")


@dataclass
class Comparison:
    """Accuracy of a reference and a candidate on the same images (percent, 0..100)."""

    images: int
    ref_top1: float
    ref_top5: float
    top1: float
    top5: float
    agreement: float  # share of images whose top-1 class is the reference's
    cosine_mean: float
    cosine_min: float

    @property
    def drop(self) -> float:
        return round(self.ref_top1 - self.top1, 2)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["top1_drop"] = self.drop
        return d


def compare_logits(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray) -> Comparison:
    def topk(logits, k):
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return float(np.mean(np.any(top == labels[:, None], axis=1)) * 100)

    r, c = ref.astype(np.float64), cand.astype(np.float64)
    cos = np.sum(r * c, 1) / np.maximum(np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1),
                                        1e-300)
    return Comparison(
        images=len(labels), ref_top1=round(topk(ref, 1), 2), ref_top5=round(topk(ref, 5), 2),
        top1=round(topk(cand, 1), 2), top5=round(topk(cand, 5), 2),
        agreement=round(float(np.mean(ref.argmax(1) == cand.argmax(1))) * 100, 2),
        cosine_mean=round(float(cos.mean()), 5), cosine_min=round(float(cos.min()), 5))


class EvalSet:
    """Preprocessed evaluation images kept in memory, so several files see identical inputs."""

    def __init__(self, images, indices: Sequence[int], preprocess):
        import dataclasses

        from edgebase.images import batches

        spec = dataclasses.replace(preprocess, layout="NCHW")
        xs, ys = [], []
        for x, y in batches(images, list(indices), spec, 64):
            xs.append(x)
            ys.append(y)
        self.x = np.concatenate(xs)
        self.labels = np.concatenate(ys)
        self.path = str(images.path)
        self.num_classes = images.num_classes
        self.ref_logits: np.ndarray | None = None  # the fp32 file's, kept for later comparisons

    def logits(self, file_logits, batch: int = 32) -> np.ndarray:
        """``file_logits`` (a FileLogits) on every image, in batches."""
        return np.concatenate([file_logits(self.x[s:s + batch])
                               for s in range(0, len(self.x), batch)])

    def compare(self, ref_logits: np.ndarray, cand_logits: np.ndarray) -> Comparison:
        offset = label_offset(ref_logits.shape[1], self.num_classes, self.path)
        return compare_logits(ref_logits, cand_logits, self.labels + offset)
