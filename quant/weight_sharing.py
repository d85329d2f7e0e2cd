"""Deep Compression's first two steps on a PyTorch model, layer by layer (Han et al., 2016):
magnitude pruning and k-means weight sharing with linear centroid initialisation.

Both act on the weights of convolutions and linear layers in place and return what they did
per layer. Layers whose weights already take at most 2**bits distinct values (a model that
was shared before, such as Song Han's SqueezeNet file) are left exactly as they are, so
re-encoding them is lossless. Fine-tuning after each step is not part of this module.
"""
from __future__ import annotations

import numpy as np

LAYER_TYPES = ("Conv2d", "Linear")


def weighted_layers(model) -> list[tuple[str, object]]:
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in LAYER_TYPES]


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


def kmeans_share(w: np.ndarray, bits: int, iterations: int = 30) -> np.ndarray:
    """``w`` with every non-zero weight replaced by the nearest of 2**bits - 1 centroids
    (linear initialisation between min and max, Lloyd iterations on the non-zeros); zeros
    stay zero (entry 0 of the codebook)."""
    nz = w != 0
    values = w[nz].astype(np.float64)
    k = (1 << bits) - 1
    if len(np.unique(values)) <= k:
        return w
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
    member = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
    out = np.zeros_like(w)
    out[nz] = centroids[member].astype(w.dtype)
    return out


def compress_weights(model, prune: float, bits: int) -> list[dict]:
    """Prune and share every conv/linear weight of ``model`` in place; per-layer facts."""
    import torch

    facts = []
    for name, m in weighted_layers(model):
        w = m.weight.detach().cpu().numpy()
        before = len(np.unique(w))
        shared = kmeans_share(prune_magnitude(w, prune), bits)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(shared))
        facts.append({"layer": name, "weights": int(w.size),
                      "nonzero": int(np.count_nonzero(shared)),
                      "distinct_before": int(before),
                      "distinct_after": int(len(np.unique(shared))),
                      "unchanged": bool(np.array_equal(w, shared))})
    return facts
