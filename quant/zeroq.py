"""Calibration data distilled from the model itself: ZeroQ (Cai et al., CVPR 2020).

Chosen with ``--calib zeroq`` (and the default for trained checkpoints given without
``--calib``). Starting from Gaussian noise, a batch of inputs is optimised so that, at every
BatchNorm layer, the batch mean and standard deviation of the layer's input match the running
statistics the network recorded in training (and the input itself has mean 0 and std 1, the
statistics of normalised images). Loss per layer:
``||mu_batch - mu_running||^2 + ||sigma_batch - sigma_running||^2`` (ZeroQ's, averaged over
channels), Adam from learning rate 0.5.

Not the paper's 500 iterations at a constant rate: at a constant 0.5 the loss oscillates (it
ended above its midway value, 0.03 -> 1.16, after 5-24 minutes on 2 cores). The rate here
decays to zero on a cosine, so the last iterate is the settled one, and the default budget is
one batch of 32 for 50 iterations, the one that lets a whole ``--calib zeroq`` export finish in
about a minute on 2 cores. Measured on shufflenet_v2_x0_5.cifar10, TFLite int8, all 10,000
test images (fp32 85.42 %; ``benchmarks/zeroq_budget.py``, benchmarks/results/zeroq_budget.md):
32 x 50 -> drop 0.50 in 21 s; 32 x 100 -> 0.68 in 36 s; 32 x 200 -> 0.16 in 60 s; 64 x 100
-> 0.45 in 56 s; 16 x 200 -> 0.49 in 29 s (load 4-6); the old 64 x 500 -> 0.16 in ~5 min.
Differences of a few tenths are within the spread of the distilled draw; the packaged real
images (0.07) beat all of them, which is why ZeroQ is only the default for checkpoints.
A progress bar with an ETA runs on stderr.

A network without BatchNorm statistics (BN folded into the weights, as in an imported
``.tflite``, or never trained) cannot be distilled this way; that is an error, never a silent
fall-back to random noise.
"""
from __future__ import annotations

import time
import weakref
from typing import Any, Callable

import numpy as np

from edgebase.errors import ConfigError
from quant.calibration import CalibrationSet

DEFAULT_IMAGES = 32
BATCH = 32
ITERATIONS = 50
LEARNING_RATE = 0.5  # the start of the cosine decay


def batchnorm_layers(model) -> list:
    """BatchNorm layers that carry running statistics (not freshly initialised ones)."""
    import torch
    from torch import nn

    found = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats \
                and m.running_mean is not None:
            fresh = torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)
            if not fresh:
                found.append(m)
    return found


# distilled sets per model object: quantizing one parent for several targets distills once
_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def distill(model, input_size: int, n: int = DEFAULT_IMAGES, seed: int = 0,
            iterations: int = ITERATIONS, batch: int = BATCH,
            progress: Callable[[str], None] | None = None, bar: bool = False) -> CalibrationSet:
    """``n`` distilled inputs (NCHW float32, in the model's normalised input space).

    ``bar``: a tqdm progress bar with ETA on stderr (iterations over all batches)."""
    key = (input_size, n, seed, iterations, batch)
    cached = _CACHE.get(model, {}).get(key)
    if cached is not None:
        return cached
    result = _distill(model, input_size, n, seed, iterations, batch, progress, bar)
    _CACHE.setdefault(model, {})[key] = result
    return result


def _distill(model, input_size, n, seed, iterations, batch, progress, bar) -> CalibrationSet:
    import sys

    import torch
    from tqdm import tqdm

    if n < 1 or iterations < 1:
        raise ConfigError(f"ZeroQ needs n >= 1 and iterations >= 1 (got {n}, {iterations})")
    model = model.eval()
    bns = batchnorm_layers(model)
    if not bns:
        raise ConfigError(
            "no calibration data given and the model has no BatchNorm running statistics to "
            "distill inputs from (BatchNorm folded into the weights, e.g. imported from "
            ".tflite, or untrained): pass --calib PATH with real images (or --calib synthetic: "
            "noise, the file is then for latency only)")
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    stats: list[tuple[Any, Any]] = []

    def hook(module, inputs, output):
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        stats.append((x.mean(dim=dims), torch.sqrt(x.var(dim=dims, unbiased=False) + module.eps),
                      module))

    handles = [m.register_forward_hook(hook) for m in bns]
    # One intra-op thread: the tensors are small (a batch of 32 at the model's input size), so
    # a second thread gains little, and on a shared 2-core machine (load ~6) it spin-waited:
    # 10 iterations took 88.7 s with 2 threads against 2.6 s with 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out, losses, first, mid, t0 = [], [], [], [], time.perf_counter()
    batches = -(-n // batch)
    meter = tqdm(total=batches * iterations, desc="ZeroQ", unit="it", file=sys.stderr,
                 disable=not bar, leave=False, mininterval=0.5)
    try:
        for start in range(0, n, batch):
            b = min(batch, n - start)
            x = torch.randn(b, 3, input_size, input_size, generator=gen).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=LEARNING_RATE)
            decay = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=iterations)
            for it in range(iterations):
                stats.clear()
                opt.zero_grad()
                model(x)
                loss = _input_loss(x)
                for mean, std, m in stats:
                    loss = loss + _l2(mean, m.running_mean) + \
                        _l2(std, torch.sqrt(m.running_var + m.eps))
                loss.backward()
                opt.step()
                decay.step()
                if it == 0:
                    first.append(float(loss.item()))
                if it == iterations // 2:
                    mid.append(float(loss.item()))
                meter.update(1)
                meter.set_postfix_str(f"batch {start // batch + 1}/{batches}, BN loss "
                                      f"{loss.item():.4f}", refresh=False)
            losses.append(float(loss.item()))
            if progress and not bar:
                progress(f"ZeroQ batch {start // batch + 1}/{batches}: {iterations} "
                         f"iterations, BN statistics loss {first[-1]:.4f} -> {losses[-1]:.4f}")
            out.append(x.detach().numpy().astype(np.float32))
    finally:
        torch.set_num_threads(threads)
        meter.close()
        for h in handles:
            h.remove()
        for p in model.parameters():
            p.requires_grad_(True)
    source = {"kind": "zeroq", "method": "ZeroQ (Cai et al. 2020): BatchNorm statistics matching",
              "size": n, "seed": seed, "iterations": iterations, "batch": batch,
              "learning_rate": LEARNING_RATE, "schedule": "cosine to 0",
              "batchnorm_layers": len(bns),
              "initial_loss": [round(v, 5) for v in first],
              "midway_loss": [round(v, 5) for v in mid],
              "final_loss": [round(v, 5) for v in losses],
              "seconds": round(time.perf_counter() - t0, 1)}
    return CalibrationSet(np.concatenate(out), source)


def statistics_loss(model, x) -> float:
    """ZeroQ's objective for inputs ``x`` (how far their BN statistics are from the model's)."""
    import torch

    bns = batchnorm_layers(model)
    total = []

    def hook(module, inputs, output):
        v = inputs[0]
        dims = [0] + list(range(2, v.dim()))
        std = torch.sqrt(v.var(dim=dims, unbiased=False) + module.eps)
        total.append(_l2(v.mean(dim=dims), module.running_mean)
                     + _l2(std, torch.sqrt(module.running_var + module.eps)))

    handles = [m.register_forward_hook(hook) for m in bns]
    try:
        with torch.no_grad():
            model(torch.as_tensor(x))
    finally:
        for h in handles:
            h.remove()
    return float(sum(total))


def _l2(a, b):
    # ZeroQ's loss: squared L2 distance, divided by the number of channels
    return (a - b).norm() ** 2 / b.numel()


def _input_loss(x):
    dims = [0, 2, 3]
    mean, std = x.mean(dim=dims), x.std(dim=dims, unbiased=False)
    import torch

    return _l2(mean, torch.zeros_like(mean)) + _l2(std, torch.ones_like(std))
