"""The CIFAR-10 training recipe behind ``deploy train`` and the shipped ``*.cifar10`` weights.

Recipe (seeded, CPU-sized; see docs/TRAINING.md for the numbers it produced):
  * SGD, momentum 0.9, Nesterov, weight decay 5e-4 (not on BatchNorm/bias), batch 128;
  * one-cycle learning rate per step: linear warm-up from lr/10 over the first 15 % of the
    steps, then cosine annealing to ~0 -- short schedules need the large early rate and the
    long quiet tail;
  * label smoothing 0.1; augmentation: random 32x32 crop of the 4-px zero-padded image and
    horizontal flip, applied on whole uint8 batches with tensor ops (zoo.traindata);
  * the model's own CIFAR adaptation (early strides reduced), taken from its registry entry.

Everything random (init, shuffling, augmentation, dropout) derives from ``seed`` and the epoch
number, so a run resumed from its per-epoch checkpoint continues exactly as the uninterrupted
run would. The checkpoint is written atomically after every epoch.

``init`` starts from earlier weights instead of a fresh initialisation and runs a new full
cycle (a warm restart, Loshchilov & Hutter's SGDR): a finished run keeps its value when more
epochs are wanted, and the record names the parent file and its own record.
"""
from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebase.errors import ConfigError, WeightsError
from edgebase.files import atomic_path, sha256_file, write_text_atomic

CHECKPOINT_FORMAT = "edgedeploy.train/1"


@dataclass(frozen=True)
class Recipe:
    epochs: int = 10  # what the shipped checkpoints used (docs/TRAINING.md)
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate of the one-cycle schedule
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup: float = 0.15  # fraction of all steps spent warming up
    padding: int = 4
    flip: bool = True
    seed: int = 0
    limit: int | None = None  # train on a class-balanced subset of this many images

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2 (BatchNorm), got {self.batch_size}"),
            (0 < self.lr <= 10, f"--lr must be in (0, 10], got {self.lr}"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 <= self.warmup < 1, "warm-up fraction must be in [0, 1)"),
            (self.limit is None or self.limit >= self.batch_size,
             f"--limit {self.limit} is smaller than one batch ({self.batch_size} images)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(optimizer="sgd", schedule="one-cycle (linear warm-up, cosine decay)",
                 augment=f"random crop 32 pad {self.padding} + hflip" if self.flip
                 else f"random crop 32 pad {self.padding}")
        return d


def lr_at(step: int, total: int, recipe: Recipe) -> float:
    """One-cycle: lr/10 -> lr linearly over the warm-up, then cosine to lr/1000."""
    warm = max(1, int(total * recipe.warmup))
    if step < warm:
        return recipe.lr * (0.1 + 0.9 * step / warm)
    t = (step - warm) / max(1, total - warm)
    return recipe.lr * (1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * t)))


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)  # BN weights/biases, conv/linear biases
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def evaluate(model, split, augment, batch_size: int = 500) -> tuple[float, int]:
    """(top-1 in percent, number of images) of ``model`` on every image of ``split``."""
    import torch

    from zoo.traindata import eval_batches

    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in eval_batches(split, batch_size, augment):
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * correct / total, total


class Paths:
    def __init__(self, out_dir: Path, name: str):
        self.dir = out_dir
        self.checkpoint = out_dir / f"{name}.ckpt"  # full training state, every epoch
        self.weights = out_dir / f"{name}.pt"  # fp32 state_dict only, the shippable file
        self.record = out_dir / f"{name}.json"  # recipe, timings and test accuracy


def _load_checkpoint(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    from zoo.weights import load_tensors_only

    ckpt = load_tensors_only(path)  # a truncated, foreign or code-running file: one line
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not an edgedeploy training checkpoint")
    saved = ckpt["config"]
    diffs = [f"{k}={saved.get(k)!r} (now {config.get(k)!r})" for k in {**saved, **config}
             if k != "epochs" and saved.get(k) != config.get(k)]
    if diffs:
        raise ConfigError(f"{path} was made with different settings: {', '.join(diffs)}; "
                          f"rerun with the same options or choose another --output")
    return ckpt


def _lineage(path: Path, sha256: str) -> dict[str, Any] | None:
    """What is known of how the ``init`` weights were made: their ``deploy train`` record (next to
    the file, or the shipped record with the same sha256), summarised."""
    from zoo.cifar10 import trained_records

    candidates = list(trained_records().values())
    sibling = path.with_suffix(".json")
    if sibling.is_file():
        try:
            candidates.insert(0, json.loads(sibling.read_text()))
        except (OSError, ValueError):
            pass
    for rec in candidates:
        if isinstance(rec, dict) and rec.get("sha256") == sha256:
            return {"command": rec.get("command"), "epochs": rec.get("recipe", {}).get("epochs"),
                    "top1": rec.get("top1"), "wall_time_s": rec.get("wall_time_s"),
                    "init": rec.get("init")}
    return None


def train(entry, data, recipe: Recipe, out_dir: str | Path, *, resume: bool = False,
          init: str | Path | None = None, progress: bool = True, command: str | None = None,
          log=print) -> dict[str, Any]:
    """Train ``entry``'s architecture on ``data`` (zoo.traindata.Dataset), from scratch or from
    the weights file ``init``.

    Returns the record written to ``<out>/<name>.json``: test top-1 on every test image,
    recipe, timings. ``<out>/<name>.pt`` is the final fp32 state_dict."""
    import torch

    from zoo.traindata import Augmenter, subset, train_batches

    if data.classes and len(data.classes) != entry.num_classes:
        raise ConfigError(f"{entry.name} has {entry.num_classes} outputs but the data has "
                          f"{len(data.classes)} classes ({', '.join(data.classes)})")
    paths = Paths(Path(out_dir), entry.name)
    config = {"model": entry.name, "builder_kwargs": {k: v for k, v in entry.kwargs.items()},
              "data_sha256": data.source_sha256, **recipe.as_dict()}
    train_split = subset(data.train, recipe.limit, recipe.seed)
    augment = Augmenter(entry.preprocess.mean, entry.preprocess.std, recipe.padding, recipe.flip)
    steps_per_epoch = len(train_split.labels) // recipe.batch_size
    total_steps = steps_per_epoch * recipe.epochs

    torch.manual_seed(recipe.seed)
    model = entry.builder(**entry.kwargs)  # fresh weights, never the shipped ones
    init_facts = None
    if init is not None:
        from zoo.weights import load_weights

        loaded = load_weights(model, init, entry.arch)  # weights_only; mismatched keys: one line
        init_facts = {"file": Path(init).name, "sha256": loaded.sha256,
                      "parent": _lineage(Path(init), loaded.sha256)}
        config["init_sha256"] = loaded.sha256  # absent for from-scratch runs (older checkpoints)
    # channels-last runs oneDNN's convolutions without layout reorders (faster on CPU)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(_param_groups(model, recipe.weight_decay), lr=recipe.lr,
                                momentum=recipe.momentum, nesterov=recipe.nesterov)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    start_epoch, elapsed, history = 0, 0.0, []
    if paths.checkpoint.exists():
        if not resume:
            raise ConfigError(f"{paths.checkpoint} exists: pass --resume to continue that run "
                              f"or choose another --output")
        ckpt = _load_checkpoint(paths.checkpoint, config)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, elapsed, history = ckpt["epoch"], ckpt["elapsed"], list(ckpt["history"])
        if ckpt["config"]["epochs"] != recipe.epochs:
            raise ConfigError(f"{paths.checkpoint} is a {ckpt['config']['epochs']}-epoch run; "
                              f"--epochs {recipe.epochs} would change its schedule")
        log(f"resuming {entry.name} after epoch {start_epoch}/{recipe.epochs}")
    elif resume:
        log(f"no checkpoint at {paths.checkpoint}; starting from scratch")
    paths.dir.mkdir(parents=True, exist_ok=True)
    monitor = subset(data.test, 1000, 0)  # cheap per-epoch signal; the final number uses all

    for epoch in range(start_epoch, recipe.epochs):
        t0, c0 = time.perf_counter(), time.process_time()
        torch.manual_seed(recipe.seed * 1009 + epoch)  # dropout etc.
        gen = torch.Generator().manual_seed(recipe.seed * 7919 + epoch)
        model.train()
        loss_sum = correct = seen = 0
        batches = train_batches(train_split, recipe.batch_size, gen, augment)
        bar = None
        if progress:
            from tqdm import tqdm

            batches = bar = tqdm(batches, total=steps_per_epoch, unit="batch", mininterval=1.0,
                                 desc=f"{entry.name} {epoch + 1}/{recipe.epochs}")
        for i, (x, y) in enumerate(batches):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, recipe)
            out = model(x.contiguous(memory_format=torch.channels_last))
            loss = criterion(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            if bar is not None and i % 10 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                                lr=f"{optimizer.param_groups[0]['lr']:.3f}")
        if bar is not None:
            bar.close()
        if not math.isfinite(loss_sum):
            raise ConfigError(f"training diverged in epoch {epoch + 1} (loss {loss_sum}); "
                              f"try a smaller --lr than {recipe.lr}")
        monitor_top1, _ = evaluate(model, monitor, augment)
        seconds = time.perf_counter() - t0
        cpu_seconds = time.process_time() - c0  # unlike wall time, not inflated by pauses
        elapsed += seconds
        history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / seen, 4),
                        "train_top1": round(100 * correct / seen, 2),
                        "test1k_top1": round(monitor_top1, 2), "seconds": round(seconds, 1),
                        "cpu_seconds": round(cpu_seconds, 1)})
        with atomic_path(paths.checkpoint) as tmp:
            torch.save({"format": CHECKPOINT_FORMAT, "config": config, "epoch": epoch + 1,
                        "elapsed": elapsed, "history": history, "model": model.state_dict(),
                        "optimizer": optimizer.state_dict()}, tmp)
        log(f"epoch {epoch + 1}/{recipe.epochs}: loss {loss_sum / seen:.3f}, train "
            f"{100 * correct / seen:.1f}%, test (1k) {monitor_top1:.1f}%, {seconds:.0f} s")

    if start_epoch == recipe.epochs:
        ckpt = _load_checkpoint(paths.checkpoint, config)  # finished run: just re-report
        model.load_state_dict(ckpt["model"])
    top1, n_test = evaluate(model, data.test, augment)
    state = {k: (v.float() if v.is_floating_point() else v).detach().contiguous().clone()
             for k, v in model.state_dict().items()}
    with atomic_path(paths.weights) as tmp:
        torch.save(state, tmp)
    record = {
        "model": entry.name, "arch": entry.arch, "builder_kwargs": config["builder_kwargs"],
        "adaptation": entry.adaptation, "dataset": "cifar10" if entry.num_classes == 10 else None,
        "data": Path(data.source).name, "data_sha256": data.source_sha256,
        "train_images": int(len(train_split.labels)), "test_images": n_test,
        "top1": round(top1, 2), "weights_file": paths.weights.name,
        "sha256": sha256_file(paths.weights), "size_bytes": paths.weights.stat().st_size,
        "recipe": recipe.as_dict(), "init": init_facts, "wall_time_s": round(elapsed, 1),
        "s_per_epoch": round(elapsed / max(1, len(history)), 1),
        # CPU seconds over all threads; unknown when an older checkpoint's epochs lack them
        "cpu_time_s": (round(sum(h["cpu_seconds"] for h in history), 1)
                       if all("cpu_seconds" in h for h in history) else None),
        "command": command,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(), "history": history,
    }
    write_text_atomic(paths.record, json.dumps(record, indent=2) + "\n")
    log(f"{entry.name}: test top-1 {top1:.2f}% on {n_test} images; weights {paths.weights}")
    return record
