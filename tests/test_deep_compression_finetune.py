"""Fine-tuning after pruning and after weight sharing (quant.finetune), on real CIFAR-10
training images: masks hold, shared layers keep their few values, and the loss goes down."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _tiny_net():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def cifar_train(shared_data):
    from quant.finetune_data import load_finetune_data
    from zoo.registry import CIFAR10

    return load_finetune_data(shared_data / "cifar10.zip", CIFAR10, labelled=True,
                              num_classes=10, limit=512, progress=False)


def _unlabelled(data):
    from quant.finetune_data import FinetuneData

    return FinetuneData(data.pixels, None, data.preprocess, {**data.source, "labelled": False})


def _teacher(data):
    """A dense net briefly trained on the labelled images, so it has something to teach."""
    import torch

    net = _tiny_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    net.train()
    for epoch in range(2):
        for x, y in data.batches(64, epoch, 0):
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def _distill_loss(student, teacher, x):
    import torch
    from torch.nn import functional as F

    student.eval()
    with torch.no_grad():
        return float(F.kl_div(F.log_softmax(student(x), 1), F.log_softmax(teacher(x), 1),
                              log_target=True, reduction="batchmean"))


def test_masked_then_centroid_finetuning_keeps_masks_and_codebooks(cifar_train):
    import torch

    from deploy.compress_stage import fold_batchnorm
    from quant.finetune import FinetuneConfig, centroid_finetune, masked_finetune
    from quant.weight_sharing import apply_masks, magnitude_masks, share_weights, weighted_layers

    teacher = _teacher(cifar_train)
    unlabelled = _unlabelled(cifar_train)
    x = next(unlabelled.batches(256, 99, 1))[0]  # a fixed batch to judge the loss on
    config = FinetuneConfig(epochs=2, batch_size=32)

    model = copy.deepcopy(teacher)
    masks = magnitude_masks(fold_batchnorm(model), 0.6)
    apply_masks(model, masks)
    pruned_loss = _distill_loss(model, teacher, x)
    record = masked_finetune(model, {n: torch.from_numpy(m) for n, m in masks.items()},
                             unlabelled, config, teacher=teacher, progress=False,
                             log=lambda m: None)
    tuned_loss = _distill_loss(model, teacher, x)
    assert tuned_loss < pruned_loss
    layers = dict(weighted_layers(model))
    for name, mask in masks.items():
        w = layers[name].weight.detach().numpy()
        assert not np.any(w[~mask]) and not np.any(np.signbit(w[~mask]))  # +0.0, not -0.0
    assert record["steps"] == 2 * (512 // 32) and record["data"]["images"] == 512
    assert record["loss"].startswith("distillation")

    folded = fold_batchnorm(model)
    share_weights(folded, 3)
    shared_loss = _distill_loss(folded, teacher, x)
    names = [n for n, _ in weighted_layers(folded)]
    record = centroid_finetune(folded, names, unlabelled, config, teacher=teacher,
                               progress=False, log=lambda m: None)
    assert _distill_loss(folded, teacher, x) < shared_loss
    for name, m in weighted_layers(folded):
        w = m.weight.detach().numpy()
        assert len(np.unique(w)) <= 2 ** 3 and m.weight.grad is None
        assert not np.any(w[~masks[name]])  # pruned weights stayed pruned
        assert m.weight.requires_grad  # the model is handed back trainable
    assert record["optimizer"] == "adam" and "summed per cluster" in record["trained"]


def test_centroid_finetuning_with_labels_lowers_cross_entropy(cifar_train):
    import torch
    from torch.nn import functional as F

    from quant.finetune import FinetuneConfig, centroid_finetune
    from quant.weight_sharing import share_weights, weighted_layers

    data = cifar_train
    assert data.labelled and data.source["split"] == "train"
    model = _tiny_net().eval()
    share_weights(model, 2)
    x, y = next(data.batches(256, 5, 3))
    with torch.no_grad():
        before = float(F.cross_entropy(model(x), y))
    record = centroid_finetune(model, [n for n, _ in weighted_layers(model)], data,
                               FinetuneConfig(epochs=2, batch_size=32, share_lr=3e-3),
                               progress=False, log=lambda m: None)
    with torch.no_grad():
        after = float(F.cross_entropy(model.eval()(x), y))
    assert after < before and record["loss"] == "cross-entropy (labels)"
    assert all(len(np.unique(m.weight.detach().numpy())) <= 4 for _, m in weighted_layers(model))


def test_sensitivity_allocation_changes_tolerant_large_layers_first(cifar_train):
    from quant.layer_sensitivity import PRUNE_LEVELS, allocate, pruning_shares, sharing_bits

    sens = {"big": [0.0, 0.0, 0.01, 0.02, 0.05, 0.2], "small": [1, 2, 3, 4, 5, 6],
            "mid": [0.01, 0.02, 0.1, 0.2, 0.4, 0.8]}
    sizes = {"big": 8000, "small": 1000, "mid": 1000}
    shares = allocate(sens, sizes, 0.8, PRUNE_LEVELS)
    assert sum(shares[n] * sizes[n] for n in sizes) == pytest.approx(0.8 * 10000, abs=1)
    assert shares["big"] > shares["mid"] > shares["small"] == 0.0
    # a target beyond the last level stops there
    assert allocate(sens, sizes, 0.99, PRUNE_LEVELS) == {n: PRUNE_LEVELS[-1] for n in sizes}

    net, x = _teacher(cifar_train), cifar_train.inputs(64)
    shares, record = pruning_shares(net, x, 0.5)
    assert set(shares) == {"0", "3", "8"} and record["achieved"] == pytest.approx(0.5, abs=1e-3)
    bits, record = sharing_bits(net, x, 5)
    assert all(3 <= b <= 8 for b in bits.values()) and record["achieved"] <= 5
    assert record["per_layer"] == "sensitivity scan" and record["layers"] == bits


def _compress(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "deploy.cli", "compress", *args], cwd=cwd,
                          capture_output=True, text=True)


@pytest.mark.parametrize("flag,data,expected", [
    ("--distill-data", "imagenet-sample-1k.zip", "evaluation images"),
    ("--train-data", "imagenet-sample-1k.zip", "no train/<class>/<image> folders"),
    ("--train-data", "nowhere.zip", "no such file or folder"),
])
def test_fine_tuning_data_mistakes_are_one_line_errors(tmp_path, shared_data, flag, data,
                                                       expected):
    p = _compress("shufflenet_v2_x0_5.cifar10", "--target", "onnx", "--prune", "0.5",
                  flag, str(shared_data / data), "--output", str(tmp_path / "out"))
    assert p.returncode != 0
    assert expected in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_labelled_data_of_other_classes_is_refused(tmp_path, shared_data):
    p = _compress("squeezenet1_0", "--weights",
                  str(shared_data / "models" / "squeezenet_v1.0_deep_compression.net"),
                  "--target", "onnx", "--share-bits", "6", "--train-data",
                  str(shared_data / "cifar10.zip"), "--output", str(tmp_path / "out"))
    assert p.returncode != 0 and "10 classes, the model has 1000 outputs" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_compress_fine_tunes_and_records_every_step(tmp_path, shared_data):
    """End to end: prune, fine-tune, share, fine-tune, export, container; each step's data,
    epochs, rate, time and PyTorch top-1 in the manifest."""
    p = _compress("shufflenet_v2_x0_5.cifar10", "--target", "onnx", "--prune", "0.5",
                  "--prune-layers", "uniform", "--share-bits", "5", "--share-layers",
                  "uniform", "--epochs", "1",
                  "--train-limit", "256",
                  "--data", str(shared_data / "cifar10.zip"), "--limit", "200",
                  "--no-progress", "--json", "--output", str(tmp_path))
    assert p.returncode == 0, p.stderr
    art = json.loads(p.stdout)
    record = art["passes"][-1]
    assert record["fine_tuned"] is True
    pruning, sharing = record["steps"]["pruning"], record["steps"]["sharing"]
    for step in (pruning, sharing):
        ft = step["finetune"]
        assert ft["data"]["data"] == "cifar10.zip" and ft["data"]["split"] == "train"
        assert ft["data"]["images"] == 256 and "default" in ft["data"]["note"]
        assert ft["steps"] == 256 // 64 and ft["seconds"] > 0 and ft["lr"] > 0
        assert step["top1"] is not None
    c = art["extra"]["container"]
    # channel-scaled codebooks (the default) trained under their fixed scales, and stored
    assert all(f["codebook_entries"] <= 31 and f["scale"] == "channel" for f in c["layers"])
    assert c["sizes"]["scales"] > 0
    assert abs(c["accuracy"]["top1"] - sharing["top1"]) <= 1.0  # file vs PyTorch, same net
    manifest = json.loads((tmp_path / (art["file"] + ".json")).read_text())
    assert manifest["passes"][-1]["steps"]["sharing"]["finetune"]["optimizer"] == "adam"


def test_masked_finetuning_keeps_placeholder_batchnorm_statistics(cifar_train):
    """A net imported from a file that had folded its BatchNorm (Google's MobileNetV1) carries
    mean-0, variance-1 placeholders: batch statistics would renormalise every layer, so
    fine-tuning keeps them; a net trained with BatchNorm re-estimates its own."""
    import torch

    from quant.finetune import FinetuneConfig, masked_finetune

    config = FinetuneConfig(epochs=1)
    data = _unlabelled(cifar_train)
    for placeholder in (True, False):
        net = _tiny_net()
        if not placeholder:
            net.train()
            with torch.no_grad():
                net(data.inputs(64, seed=1))  # real statistics, as after training
        net.eval()
        before = [m.running_mean.clone() for m in net.modules()
                  if isinstance(m, torch.nn.BatchNorm2d)]
        masks = {"0": torch.ones(16, 3, 3, 3, dtype=torch.bool)}
        record = masked_finetune(net, masks, data, config, teacher=_tiny_net().eval(),
                                 progress=False, log=lambda m: None)
        after = [m.running_mean for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        kept = all(torch.equal(a, b) for a, b in zip(before, after))
        assert kept is placeholder
        assert record["batchnorm_statistics"] == (
            "kept (placeholder statistics of a folded import)" if placeholder else "re-estimated")


def test_the_sample_splits_into_halves_that_never_meet(tmp_path, shared_data):
    """benchmarks/split_sample.py: every photo of the ImageNet sample in exactly one half, the
    same photos in each half when made again (tuning never reads an evaluation photo)."""
    import zipfile

    script = REPO / "benchmarks" / "split_sample.py"
    argv = [sys.executable, str(script), "--sample", str(shared_data / "imagenet-sample-1k.zip")]
    for out in ("a", "b"):
        p = subprocess.run(argv + [str(tmp_path / out)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    def photos(out, half):
        with zipfile.ZipFile(tmp_path / out / f"{half}.zip") as z:
            return {Path(n).name for n in z.namelist()}

    tune, held = (photos("a", h) for h in ("imagenet-sample-tune500", "imagenet-sample-held500"))
    assert photos("b", "imagenet-sample-tune500") == tune
    with zipfile.ZipFile(shared_data / "imagenet-sample-1k.zip") as z:
        every = {Path(n).name for n in z.namelist() if n.endswith(".JPEG")}
    assert len(tune) == len(held) == 500 and not tune & held and tune | held == every
