"""Per-layer pruning shares and codebook sizes from a sensitivity scan (Han et al., NIPS 2015,
section 4.3, for pruning; the same scan chooses bits per layer for weight sharing).

Scan: each conv/linear layer alone is changed to each level (pruned to a share, or shared on
2**bits values) and the network's outputs on a batch of fine-tuning images (never evaluation
images) are compared with the unchanged network's: the KL divergence of the softmax outputs.
One forward pass per layer and level.

Allocation: starting from no change, the step that costs least divergence per weight (or bit)
saved -- the next level of one layer -- is taken until the requested share of all conv/linear
weights is pruned, or the mean code width is down to the requested bits. Large layers that
tolerate it (wide 1x1 convolutions, classifiers) go furthest; small, sensitive ones (the
first convolution, depthwise 3x3) stay. Divergences add up across layers only approximately;
fine-tuning afterwards recovers what the estimate missed.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from quant.weight_sharing import kmeans_share, prune_magnitude, weighted_layers

PRUNE_LEVELS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)  # shares of a layer's weights set to zero
BIT_LEVELS = (7, 6, 5, 4, 3)  # codebook sizes below 8 bits
SCAN_IMAGES = 128  # 32-px inputs
SCAN_IMAGES_LARGE = 32  # larger inputs: a forward pass costs ~50x more


def scan_images(input_size: int) -> int:
    return SCAN_IMAGES if input_size <= 32 else SCAN_IMAGES_LARGE


def scan(model, x, levels, change: Callable[[np.ndarray, Any], np.ndarray]
         ) -> dict[str, list[float]]:
    """Per layer of ``model`` (BatchNorm folded: the weights as stored), the KL divergence from
    the unchanged outputs on ``x`` with that layer alone at each level (``change(w, level)``),
    made non-decreasing (a further level never helps)."""
    import torch
    from torch.nn import functional as F

    model.eval()
    out: dict[str, list[float]] = {}
    with torch.no_grad():
        ref = F.log_softmax(model(x), 1)
        for name, m in weighted_layers(model):
            w0 = m.weight.detach().clone()
            row = []
            for level in levels:
                m.weight.copy_(torch.from_numpy(change(w0.numpy(), level)))
                kl = F.kl_div(F.log_softmax(model(x), 1), ref, log_target=True,
                              reduction="batchmean")
                row.append(max(0.0, float(kl)))
            m.weight.copy_(w0)
            out[name] = np.maximum.accumulate(row).tolist()
    return out


def allocate(sensitivity: dict[str, list[float]], sizes: dict[str, int], target: float,
             levels, exact: bool = True) -> dict[str, float]:
    """Per-layer savings (``levels``: increasing shares of a layer saved) whose size-weighted
    mean reaches ``target`` (or the most the levels allow), chosen greedily by least
    divergence added per unit saved. ``exact``: the last step goes only as far as the target
    (a share between two levels); otherwise it is taken whole."""
    total = sum(sizes.values())
    level = {name: -1 for name in sensitivity}  # index into levels; -1 = unchanged
    saved, last = 0.0, {}

    def share(name):
        return levels[level[name]] if level[name] >= 0 else 0.0

    def cost(name):
        i = level[name]
        now = sensitivity[name][i] if i >= 0 else 0.0
        extra = (levels[i + 1] - share(name)) * sizes[name]
        return (sensitivity[name][i + 1] - now) / max(extra, 1e-12), extra

    while saved < target * total - 1e-9:
        open_layers = [n for n in level if level[n] + 1 < len(levels)]
        if not open_layers:
            break
        best = min(open_layers, key=lambda n: (cost(n)[0], n))
        extra = cost(best)[1]
        if exact and saved + extra > target * total:
            last[best] = share(best) + (target * total - saved) / sizes[best]
            break
        saved += extra
        level[best] += 1
    return {name: round(last.get(name, share(name)), 4) for name in level}


def pruning_shares(model, x, target: float) -> tuple[dict[str, float], dict[str, Any]]:
    """(share to prune per layer, record for the manifest) for ``model`` with BN folded."""
    t0 = time.perf_counter()
    sensitivity = scan(model, x, PRUNE_LEVELS, prune_magnitude)
    sizes = {name: int(m.weight.numel()) for name, m in weighted_layers(model)}
    shares = allocate(sensitivity, sizes, target, PRUNE_LEVELS)
    achieved = sum(shares[n] * sizes[n] for n in sizes) / sum(sizes.values())
    return shares, _record("pruning", PRUNE_LEVELS, len(x), target, round(achieved, 4),
                           shares, t0)


def sharing_bits(model, x, mean_bits: float, scale: str = "layer"
                 ) -> tuple[dict[str, int], dict[str, Any]]:
    """(codebook bits per layer, record) for a mean code width of at most ``mean_bits`` over
    the non-zero weights of ``model`` (pruned, BN folded); no layer above 8 bits. ``scale``:
    codebooks over raw or channel-scaled weights, as the sharing will use them."""
    t0 = time.perf_counter()
    sensitivity = scan(model, x, BIT_LEVELS, lambda w, bits: kmeans_share(w, bits, scale))
    sizes = {name: max(1, int(np.count_nonzero(m.weight.detach().numpy())))
             for name, m in weighted_layers(model)}
    saved = [(8 - b) / 8 for b in BIT_LEVELS]
    shares = allocate(sensitivity, sizes, (8 - mean_bits) / 8, saved, exact=False)
    bits = {n: int(round(8 - 8 * s)) for n, s in shares.items()}
    achieved = sum(bits[n] * sizes[n] for n in sizes) / sum(sizes.values())
    return bits, _record("sharing", BIT_LEVELS, len(x), mean_bits, round(achieved, 3), bits, t0)


def _record(step, levels, images, target, achieved, per_layer, t0) -> dict[str, Any]:
    return {"per_layer": "sensitivity scan", "levels": list(levels), "scan_images": images,
            "measure": f"KL divergence from the unchanged outputs, one layer's {step} at a "
                       f"time", "target": target, "achieved": achieved,
            "layers": dict(per_layer), "seconds": round(time.perf_counter() - t0, 1)}
