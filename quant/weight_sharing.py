"""Deep Compression's first two steps on a PyTorch model, layer by layer (Han et al., 2016):
magnitude pruning and k-means weight sharing with linear centroid initialisation.

Both act on the weights of convolutions and linear layers in place and return what they did
per layer. Layers whose weights already take at most 2**bits distinct values (a model that
was shared before, such as Song Han's SqueezeNet file) are left exactly as they are, so
re-encoding them is lossless. Fine-tuning after each step is ``quant.finetune``.
"""
from __future__ import annotations

import numpy as np

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


def kmeans_share(w: np.ndarray, bits: int, iterations: int = 30) -> np.ndarray:
    """``w`` with every non-zero weight replaced by the nearest of 2**bits - 1 centroids
    (linear initialisation between min and max, Lloyd iterations on the non-zeros); zeros
    stay zero (entry 0 of the codebook). Returns ``w`` itself when it already takes few
    enough values."""
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


def share_weights(model, bits: int | dict[str, int]) -> list[str]:
    """k-means-share every conv/linear weight of ``model`` in place (``bits``: one codebook
    size for all layers, or one per layer name); the names of the layers that changed (those
    already on at most 2**bits - 1 non-zero values are kept as they are)."""
    import torch

    changed = []
    for name, m in weighted_layers(model):
        w = m.weight.detach().cpu().numpy()
        shared = kmeans_share(w, bits[name] if isinstance(bits, dict) else bits)
        if shared is not w:
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(shared))
            changed.append(name)
    return changed


def layer_facts(model, before: dict[str, np.ndarray]) -> list[dict]:
    """Per layer: weights, non-zeros, distinct values before (``before``: the dense parent's
    folded weights) and now, and whether the layer is bit for bit what it was."""
    facts = []
    for name, m in weighted_layers(model):
        w, w0 = m.weight.detach().cpu().numpy(), before[name]
        facts.append({"layer": name, "weights": int(w.size),
                      "nonzero": int(np.count_nonzero(w)),
                      "distinct_before": int(len(np.unique(w0))),
                      "distinct_after": int(len(np.unique(w))),
                      "unchanged": bool(np.array_equal(w0, w))})
    return facts
