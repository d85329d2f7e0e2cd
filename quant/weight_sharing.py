"""Deep Compression's first two steps on a PyTorch model, layer by layer (Han et al., 2016):
magnitude pruning and k-means weight sharing with linear centroid initialisation.

Both act on the weights of convolutions and linear layers in place and return what they did
per layer. Layers whose weights already take at most 2**bits distinct values (a model shared
before with per-layer codebooks, such as Song Han's SqueezeNet file) are left exactly as they
are, so re-encoding them is lossless; a channel-scaled layer has more distinct values than
its codebook and is clustered again. Fine-tuning after each step is ``quant.finetune``.

Codebooks are per layer, as in the paper (``scale="layer"``), or per layer over weights scaled
per output channel (``scale="channel"``: each channel divided by its largest magnitude before
k-means, so a layer's channels share one codebook of values in [-1, 1] and each keeps its own
float16 scale, as Core ML's per-channel-scale palettization does). BatchNorm folding gives the
channels of one layer ranges that differ by orders of magnitude; one plain codebook then
spends its entries on the wide channels and rounds the narrow ones coarsely.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALES = ("channel", "layer")  # one codebook per layer, over channel-scaled or raw weights
TINY_SCALE = float(np.float16(2.0 ** -24))  # the smallest positive float16


@dataclass
class SharedLayer:
    """A layer stored as ``book[codes] * scales`` (scales along PyTorch's output axis 0):
    ``book`` float32 with entry 0 = 0.0, ``codes`` int64 in the weight's shape, ``scales``
    per output channel (float16 values, held as float32). The product is one float32
    multiplication per weight, so PyTorch, numpy and the runner's decoder give the same
    bits."""

    book: np.ndarray
    codes: np.ndarray
    scales: np.ndarray

    def weights(self) -> np.ndarray:
        shape = (-1,) + (1,) * (self.codes.ndim - 1)
        return (self.book[self.codes] * self.scales.reshape(shape)).astype(np.float32)


def weighted_layers(model) -> list[tuple[str, object]]:
    """Every convolution and linear layer, subclasses too (a conv with TF "SAME" padding)."""
    from torch import nn

    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def prune_magnitude(w: np.ndarray, sparsity: float) -> np.ndarray:
    """``w`` with its ``sparsity`` share of smallest-magnitude weights set to zero."""
    if sparsity <= 0:
        return w
    k = int(round(sparsity * w.size))
    if k == 0:
        return w
    flat = np.abs(w).reshape(-1)
    cut = np.partition(flat, k - 1)[k - 1]
    return np.where(np.abs(w) <= cut, 0.0, w).astype(w.dtype)


def kmeans_share(w: np.ndarray, bits: int, scale: str = "layer") -> np.ndarray:
    """``w`` with every non-zero weight replaced by the nearest of 2**bits - 1 centroids
    (per-layer codebook over raw or channel-scaled weights, see ``share_layer``); zeros stay
    zero. Returns ``w`` itself when it already takes few enough values."""
    shared = share_layer(w, bits, scale)
    if shared is None:
        return w
    return shared if isinstance(shared, np.ndarray) else shared.weights()


def share_layer(w: np.ndarray, bits: int, scale: str = "layer"
                ) -> np.ndarray | SharedLayer | None:
    """None when ``w`` already takes at most 2**bits - 1 distinct non-zero values (kept as
    is); else the shared weights (``scale="layer"``) or their factors (``"channel"``)."""
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: one of {', '.join(SCALES)}")
    k = (1 << bits) - 1
    if len(np.unique(w[w != 0])) <= k:
        return None
    if scale == "layer":
        return _kmeans(w, k)
    flat = w.reshape(w.shape[0], -1)
    # float16 values (the container stores 2 bytes per channel), held as float32 for the
    # product; the smallest positive float16 for a channel pruned away or below its range
    largest = np.minimum(np.abs(flat).max(axis=1), np.finfo(np.float16).max)
    scales = largest.astype(np.float16).astype(np.float32)
    scales[~(scales > 0)] = TINY_SCALE
    normalised = (flat / scales[:, None]).astype(np.float32)
    centroids, member = _centroids(normalised[normalised != 0].astype(np.float64), k)
    codes = np.zeros(normalised.shape, np.int64)
    codes[normalised != 0] = member + 1
    book = np.concatenate([[0.0], centroids]).astype(np.float32)
    return SharedLayer(book, codes.reshape(w.shape), scales)


def _kmeans(w: np.ndarray, k: int) -> np.ndarray:
    nz = w != 0
    centroids, member = _centroids(w[nz].astype(np.float64), k)
    out = np.zeros_like(w)
    out[nz] = centroids[member].astype(w.dtype)
    return out


def _centroids(values: np.ndarray, k: int, iterations: int = 30
               ) -> tuple[np.ndarray, np.ndarray]:
    """(k centroids ascending, index of each value's): linear initialisation between min and
    max, as the paper found best, then Lloyd iterations."""
    centroids = np.linspace(values.min(), values.max(), k)
    for _ in range(iterations):
        edges = (centroids[1:] + centroids[:-1]) / 2
        member = np.searchsorted(edges, values)
        sums = np.bincount(member, weights=values, minlength=k)
        counts = np.bincount(member, minlength=k)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids):
            break
        centroids = np.sort(moved)
    return centroids, np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)


def magnitude_masks(model, sparsity: float | dict[str, float]) -> dict[str, np.ndarray]:
    """Per conv/linear layer of ``model`` (its weights as they will be stored, i.e. with
    BatchNorm folded): True for the weights kept when the ``sparsity`` share of the smallest
    magnitudes goes (one share for all layers, or one per layer name)."""
    masks = {}
    for name, m in weighted_layers(model):
        share = sparsity.get(name, 0.0) if isinstance(sparsity, dict) else sparsity
        w = m.weight.detach().cpu().numpy()
        masks[name] = prune_magnitude(w, share) != 0 if share > 0 else w != 0
    return masks


def apply_masks(model, masks: dict[str, np.ndarray]) -> None:
    """Zero the masked-out weights of ``model`` in place (+0.0, never -0.0)."""
    import torch

    layers = dict(weighted_layers(model))
    with torch.no_grad():
        for name, mask in masks.items():
            w = layers[name].weight
            w.copy_(torch.where(torch.from_numpy(mask), w, torch.zeros((), dtype=w.dtype)))


def share_weights(model, bits: int | dict[str, int], scale: str = "layer"
                  ) -> dict[str, SharedLayer | None]:
    """k-means-share every conv/linear weight of ``model`` in place (``bits``: one codebook
    size for all layers, or one per layer name); per layer that changed, its factors
    (``scale="channel"``) or None (a plain codebook, read back from the weights). Layers
    already on at most 2**bits - 1 non-zero values are kept as they are."""
    import torch

    changed: dict[str, SharedLayer | None] = {}
    for name, m in weighted_layers(model):
        w = m.weight.detach().cpu().numpy()
        shared = share_layer(w, bits[name] if isinstance(bits, dict) else bits, scale)
        if shared is None:
            continue
        factors = shared if isinstance(shared, SharedLayer) else None
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(factors.weights() if factors else shared))
        changed[name] = factors
    return changed


def layer_facts(model, before: dict[str, np.ndarray], factors: dict | None = None
                ) -> list[dict]:
    """Per layer: weights, non-zeros, distinct values before (``before``: the dense parent's
    folded weights) and now, the non-zero codebook entries it is stored with (its distinct
    non-zeros, or for a channel-scaled layer the entries its codes use), and whether the
    layer is bit for bit what it was."""
    facts = []
    for name, m in weighted_layers(model):
        w, w0 = m.weight.detach().cpu().numpy(), before[name]
        f = (factors or {}).get(name)
        entries = len(np.unique(f.codes[f.codes != 0])) if f is not None \
            else len(np.unique(w[w != 0]))
        facts.append({"layer": name, "weights": int(w.size),
                      "nonzero": int(np.count_nonzero(w)),
                      "distinct_before": int(len(np.unique(w0))),
                      "distinct_after": int(len(np.unique(w))),
                      "codebook_entries": int(entries),
                      "scale": "channel" if f is not None else "layer",
                      "unchanged": bool(np.array_equal(w0, w))})
    return facts
