"""Fine-tuning after pruning and after weight sharing, as in Deep Compression (Han et al., 2016).

* ``masked_finetune``: after magnitude pruning, every weight may train except the pruned ones,
  which stay exactly zero: each pruned layer's weight is ``where(mask, w, 0)`` (a torch
  parametrization), so a pruned weight gets no gradient and cannot come back. BatchNorm is
  still live here: its running statistics re-estimate themselves for the thinner layers (the
  stage folds it afterwards, and folding keeps zeros zero) -- unless the images are upscaled
  stand-ins (CIFAR-10 for an ImageNet net), whose statistics would replace the real ones; then
  only BatchNorm's scale and shift train.
* ``centroid_finetune``: after k-means sharing, a layer's weight is ``codebook[index]`` with
  the indices fixed and the codebook entries (entry 0 = 0.0 excluded) trainable. Autograd of
  that gather sums the gradients of all weights in a cluster, which is the paper's centroid
  update; biases train too (they are stored as plain floats). Every layer keeps at most
  2**bits distinct values.

Loss: cross-entropy on labels when the data has them (``--train-data``), else distillation
from the dense parent (KL divergence of temperature-softened outputs, Hinton et al.). Masked
fine-tuning uses SGD with Nesterov momentum, as the parent was trained; centroid fine-tuning
uses Adam, whose step does not grow with the size of a cluster (a centroid's gradient is a sum
over up to thousands of weights). Both follow a cosine schedule to zero. Everything random
derives from ``seed``. A progress bar (stderr) shows loss and rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from edgebase.errors import ConfigError


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: float = 1.0  # passes over the fine-tuning images, per step (pruning, sharing)
    batch_size: int = 64
    prune_lr: float = 0.01  # SGD, masked fine-tuning
    share_lr: float = 1e-4  # Adam, centroid fine-tuning
    momentum: float = 0.9
    weight_decay: float = 5e-5  # masked fine-tuning, conv/linear weights only
    temperature: float = 2.0  # distillation
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.epochs <= 1000:
            raise ConfigError(f"--epochs {self.epochs}: fine-tuning epochs per step, 0 (none) "
                              f"to 1000")
        if self.batch_size < 2:
            raise ConfigError(f"fine-tuning batch size must be >= 2 (BatchNorm), got "
                              f"{self.batch_size}")
        if not (self.prune_lr > 0 and self.share_lr > 0 and self.temperature > 0):
            raise ConfigError("fine-tuning learning rates and temperature must be positive")

    def steps(self, images: int) -> int:
        per_epoch = images // self.batch_size
        if per_epoch < 1:
            raise ConfigError(f"{images} fine-tuning images are fewer than one batch of "
                              f"{self.batch_size}")
        return max(1, round(self.epochs * per_epoch))


def _mask_parametrization(mask):
    import torch
    from torch import nn

    class Mask(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            # where(), not w * mask: a negative weight times 0 is -0.0, whose bytes the
            # container's zero (+0.0) would not reproduce
            return torch.where(self.mask, w, torch.zeros((), dtype=w.dtype))

    return Mask()


def _codebook_parametrization(index, centroids, scales=None):
    from torch import nn

    class Codebook(nn.Module):
        """weight = [0, c_1 .. c_k][index] (times the output channel's scale, when scaled);
        the parameter is (c_1 .. c_k)."""

        def __init__(self):
            super().__init__()
            self.register_buffer("index", index)
            self.register_buffer("scales", scales)
            self.initial = centroids

        def forward(self, c):
            w = nn.functional.pad(c, (1, 0))[self.index]
            if self.scales is None:
                return w
            # one float32 product per weight, as the container's decoder computes it
            return w * self.scales.reshape((-1,) + (1,) * (w.ndim - 1))

        def right_inverse(self, w):
            return self.initial.to(w.dtype)

    return Codebook()


def masked_finetune(model, masks: dict[str, Any], data, config: FinetuneConfig, teacher=None,
                    progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune ``model`` in place with the weights of ``masks`` (layer name -> bool tensor,
    True = kept) held at zero; returns the record of the run."""
    import torch
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    for name, mask in masks.items():
        parametrize.register_parametrization(modules[name], "weight",
                                             _mask_parametrization(torch.as_tensor(mask)))
    try:
        decay = [p for n, p in model.named_parameters() if n.endswith("weight.original")
                 or (n.endswith(".weight") and p.ndim > 1)]
        ids = {id(p) for p in decay}
        rest = [p for p in model.parameters() if id(p) not in ids]
        optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": rest, "weight_decay": 0.0}],
            lr=config.prune_lr, momentum=config.momentum, nesterov=True)
        frozen = _keep_batchnorm_statistics(model, data)
        record = _train(model, optimizer, data, config, teacher, "fine-tuning pruned net",
                        progress, log, freeze_batchnorm=frozen is not None)
    finally:
        _drop_grads(model)
        for name in masks:
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
    return {**record, "optimizer": "sgd", "lr": config.prune_lr, "momentum": config.momentum,
            "nesterov": True, "weight_decay": config.weight_decay,
            "trained": "all parameters; pruned weights held at zero (masks kept)",
            "batchnorm_statistics": f"kept ({frozen})" if frozen else "re-estimated"}


def _keep_batchnorm_statistics(model, data) -> str | None:
    """Why BatchNorm's running statistics must stay as they are during masked fine-tuning
    (None: re-estimate them from the fine-tuning batches)."""
    from torch import nn

    if data.source.get("upscaled"):
        return "upscaled images"
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and m.running_mean is not None]
    # an imported net whose BatchNorm the file had folded into its convs: mean 0, variance 1
    # stand in; batch statistics would renormalise every layer
    if norms and all(bool((m.running_mean == 0).all() and (m.running_var == 1).all())
                     for m in norms):
        return "placeholder statistics of a folded import"
    return None


def centroid_finetune(model, layers: list[str], data, config: FinetuneConfig, teacher=None,
                      progress: bool = True, log: Callable[[str], None] = print,
                      factors: dict | None = None) -> dict[str, Any]:
    """Fine-tune the codebooks of the shared ``layers`` of ``model`` (and every parameter that
    is not a conv/linear weight, such as biases) in place; the weights of layers not listed
    stay fixed. A layer with factors (``quant.weight_sharing.SharedLayer``, channel-scaled)
    trains its codebook under its fixed scales, and its factors' book is updated."""
    import numpy as np
    import torch
    from torch.nn.utils import parametrize

    modules = dict(model.named_modules())
    factors = factors or {}
    for name in layers:
        f = factors.get(name)
        if f is not None:
            index, values = torch.from_numpy(f.codes), torch.from_numpy(f.book[1:].copy())
            scales = torch.from_numpy(f.scales)
        else:
            w = modules[name].weight.detach()
            values = torch.unique(w[w != 0])  # sorted
            index = torch.zeros(w.shape, dtype=torch.long)
            nz = w != 0
            index[nz] = torch.searchsorted(values, w[nz]) + 1
            scales = None
        parametrize.register_parametrization(
            modules[name], "weight", _codebook_parametrization(index, values.clone(), scales))
    try:
        params = []
        for n, p in model.named_parameters():
            frozen = n.endswith(".weight") and p.ndim > 1  # a conv/linear weight not shared
            p.requires_grad_(not frozen)
            if not frozen:
                params.append(p)
        optimizer = torch.optim.Adam(params, lr=config.share_lr)
        record = _train(model, optimizer, data, config, teacher, "fine-tuning shared net",
                        progress, log, freeze_batchnorm=True)
    finally:
        _drop_grads(model)  # a centroid's gradient would stay on the weight it turns into
        for name in layers:
            if factors.get(name) is not None:
                trained = modules[name].parametrizations.weight.original.detach().numpy()
                factors[name].book = np.concatenate([[0.0], trained]).astype(np.float32)
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
        for p in model.parameters():
            p.requires_grad_(True)
    return {**record, "optimizer": "adam", "lr": config.share_lr,
            "trained": "codebook entries (gradients summed per cluster) and biases"}


def _drop_grads(model) -> None:
    for p in model.parameters():
        p.grad = None


def _train(model, optimizer, data, config: FinetuneConfig, teacher, desc: str, progress: bool,
           log, freeze_batchnorm: bool) -> dict[str, Any]:
    import torch
    from torch import nn

    steps = config.steps(len(data))
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    torch.manual_seed(config.seed)  # dropout
    model.train()
    if freeze_batchnorm:  # BatchNorm the fold left (none after a conv): statistics fixed
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    if teacher is not None:
        teacher.eval()
    losses: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step", mininterval=1.0, leave=False)
    t0, c0 = time.perf_counter(), time.process_time()
    step, epoch = 0, 0
    try:
        while step < steps:
            for x, y in data.batches(config.batch_size, epoch, config.seed):
                if step >= steps:
                    break
                scale = 0.5 * (1 + math.cos(math.pi * step / steps))
                for group, lr in zip(optimizer.param_groups, base_lrs):
                    group["lr"] = lr * scale
                loss = _loss(model, teacher, x, y, config.temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise ConfigError(f"{desc}: the loss diverged at step {step + 1} "
                                      f"({value}); try a smaller learning rate")
                losses.append(value)
                step += 1
                if bar is not None:
                    bar.update(1)
                    if step % 10 == 0:
                        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
            epoch += 1
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    window = max(1, steps // 10)
    record = {"data": dict(data.source), "loss": "cross-entropy (labels)" if data.labelled else
              f"distillation from the dense parent (KL, temperature {config.temperature:g})",
              "epochs": round(steps * config.batch_size / len(data), 3), "steps": steps,
              "batch_size": config.batch_size, "images_seen": steps * config.batch_size,
              "schedule": "cosine to 0", "seed": config.seed,
              "loss_start": round(sum(losses[:window]) / window, 5),
              "loss_end": round(sum(losses[-window:]) / window, 5),
              "seconds": round(seconds, 1), "cpu_seconds": round(time.process_time() - c0, 1),
              "threads": torch.get_num_threads()}
    log(f"{desc}: {steps} steps of {config.batch_size} ({record['epochs']:g} epochs of "
        f"{len(data)} images), loss {record['loss_start']:.4f} -> {record['loss_end']:.4f}, "
        f"{seconds:.0f} s")
    return record


def _loss(model, teacher, x, y, temperature: float):
    import torch
    from torch.nn import functional as F

    out = model(x)
    if y is not None:
        return F.cross_entropy(out, y)
    with torch.no_grad():
        target = teacher(x)
    t = temperature
    return F.kl_div(F.log_softmax(out / t, 1), F.log_softmax(target / t, 1), log_target=True,
                    reduction="batchmean") * t * t
