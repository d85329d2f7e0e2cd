"""Per-layer pruning shares from a sensitivity scan (Han et al., NIPS 2015, section 4.3).

Scan: each conv/linear layer alone is magnitude-pruned to each share in ``LEVELS`` and the
network's outputs on a batch of fine-tuning images (never evaluation images) are compared
with the unpruned network's: the KL divergence of the softmax outputs. One forward pass per
layer and level.

Allocation: starting from nothing pruned, the step that costs least divergence per weight
removed (the next level of one layer) is taken until the requested share of all conv/linear
weights is pruned. Large layers that tolerate pruning (the wide 1x1 convolutions and
classifiers) end up sparse; small, sensitive ones (depthwise 3x3, the first convolution)
stay dense. Divergences add up across layers only approximately; fine-tuning afterwards
recovers what the estimate missed.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from quant.weight_sharing import prune_magnitude, weighted_layers

LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
SCAN_IMAGES = 128


def scan(model, x, levels=LEVELS) -> dict[str, list[float]]:
    """Per layer of ``model`` (BatchNorm folded: the weights as stored), the KL divergence from
    the unpruned outputs on ``x`` with that layer alone pruned to each level."""
    import torch
    from torch.nn import functional as F

    model.eval()
    with torch.no_grad():
        ref = F.log_softmax(model(x), 1)
        out: dict[str, list[float]] = {}
        for name, m in weighted_layers(model):
            w0 = m.weight.detach().clone()
            row = []
            for share in levels:
                m.weight.copy_(torch.from_numpy(prune_magnitude(w0.numpy(), share)))
                kl = F.kl_div(F.log_softmax(model(x), 1), ref, log_target=True,
                              reduction="batchmean")
                row.append(max(0.0, float(kl)))
            m.weight.copy_(w0)
            out[name] = np.maximum.accumulate(row).tolist()  # more pruning never helps
    return out


def allocate(sensitivity: dict[str, list[float]], sizes: dict[str, int], target: float,
             levels=LEVELS) -> dict[str, float]:
    """Per-layer shares whose weighted mean reaches ``target`` (or the most the levels allow),
    chosen greedily by least divergence added per weight pruned."""
    total = sum(sizes.values())
    level = {name: -1 for name in sensitivity}  # index into levels; -1 = unpruned
    pruned = 0.0

    def share(name):
        return levels[level[name]] if level[name] >= 0 else 0.0

    def cost(name):
        i = level[name]
        now = sensitivity[name][i] if i >= 0 else 0.0
        extra = (levels[i + 1] - share(name)) * sizes[name]
        return (sensitivity[name][i + 1] - now) / max(extra, 1e-12), extra

    exact: dict[str, float] = {}
    while pruned < target * total:
        open_layers = [n for n in level if level[n] + 1 < len(levels)]
        if not open_layers:
            break
        best = min(open_layers, key=lambda n: (cost(n)[0], n))
        extra = cost(best)[1]
        if pruned + extra > target * total:  # the last step: only as far as the target
            exact[best] = share(best) + (target * total - pruned) / sizes[best]
            break
        pruned += extra
        level[best] += 1
    return {name: round(exact.get(name, share(name)), 4) for name in level}


def sensitivity_shares(model, x, target: float) -> tuple[dict[str, float], dict[str, Any]]:
    """(per-layer shares, record for the manifest) for ``model`` with BatchNorm folded."""
    t0 = time.perf_counter()
    sensitivity = scan(model, x)
    sizes = {name: int(m.weight.numel()) for name, m in weighted_layers(model)}
    shares = allocate(sensitivity, sizes, target)
    achieved = sum(shares[n] * sizes[n] for n in sizes) / sum(sizes.values())
    record = {"per_layer": "sensitivity scan", "levels": list(LEVELS), "scan_images": len(x),
              "measure": "KL divergence from the unpruned outputs, one layer pruned at a time",
              "target": target, "achieved": round(achieved, 4),
              "shares": {n: s for n, s in shares.items()},
              "seconds": round(time.perf_counter() - t0, 1)}
    return shares, record
