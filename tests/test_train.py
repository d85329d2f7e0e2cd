"""deploy train: one epoch on a small real subset, exact resume, data and option errors.

Runs on a tiny ImageFolder zip cut from the real CIFAR-10 zip (10 train + 5 test images per
class) with a private cache folder, so nothing here decodes the full data set.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deploy.cli import main as deploy_main
from edgebase.errors import ConfigError, DataError
from zoo import get_entry
from zoo.cifar10 import ship, trained_records
from zoo.train import Recipe, lr_at, train
from zoo.traindata import Augmenter, Split, load_dataset, subset

MODEL = "shufflenet_v2_x0_5.cifar10"


def _cut(src: Path, dst: Path, per_class: dict[str, int], size_fn=None) -> Path:
    counts: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            parts = name.split("/")  # cifar10/<split>/<class>/<file>
            if len(parts) != 4 or not parts[3] or parts[1] not in per_class:
                continue
            key = (parts[1], parts[2])
            if counts.get(key, 0) >= per_class[parts[1]]:
                continue
            counts[key] = counts.get(key, 0) + 1
            data = zin.read(name)
            zout.writestr(name, size_fn(data) if size_fn else data)
    return dst


@pytest.fixture(scope="module")
def tiny_zip(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "cifar10-tiny.zip"
    return _cut(shared_data / "cifar10.zip", out, {"train": 10, "test": 5})


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDEPLOY_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _recipe(**kw) -> Recipe:
    return Recipe(**{"epochs": 2, "batch_size": 32, "lr": 0.05, "seed": 3, "limit": 64, **kw})


def test_one_epoch_writes_loadable_weights_and_honest_record(tiny_zip, tmp_path):
    data = load_dataset(tiny_zip, progress=False)
    assert data.train.images.shape == (100, 32, 32, 3) and data.test.images.shape == (50, 32, 32, 3)
    assert list(np.bincount(data.test.labels)) == [5] * 10
    entry = get_entry(MODEL)
    rec = train(entry, data, _recipe(epochs=1, limit=None), tmp_path / "run", progress=False,
                log=lambda m: None)
    assert rec["test_images"] == 50 and rec["train_images"] == 100
    assert len(rec["history"]) == 1 and rec["recipe"]["epochs"] == 1
    assert 0 < rec["cpu_time_s"] == rec["history"][0]["cpu_seconds"]
    # the shipped file is a plain fp32 state dict that loads with weights_only=True
    state = torch.load(tmp_path / "run" / f"{MODEL}.pt", weights_only=True)
    assert all(v.dtype == torch.float32 for k, v in state.items() if "num_batches" not in k)
    model = entry.builder(**entry.kwargs)
    model.load_state_dict(state)
    model.eval()
    # the recorded top-1 is what the saved weights score on the test images
    aug = Augmenter(entry.preprocess.mean, entry.preprocess.std)
    with torch.no_grad():
        pred = model(aug.normalize(torch.from_numpy(data.test.images))).argmax(1).numpy()
    assert rec["top1"] == pytest.approx(100 * np.mean(pred == data.test.labels), abs=0.01)
    on_disk = json.loads((tmp_path / "run" / f"{MODEL}.json").read_text())
    assert on_disk["sha256"] == rec["sha256"] and on_disk["top1"] == rec["top1"]
    # shipping copies the file and merges the record the registry reads
    records = tmp_path / "zoo" / "cifar10.json"
    ship(tmp_path / "run" / f"{MODEL}.json", records)
    shipped = trained_records(records)[MODEL]
    assert (tmp_path / "zoo" / f"{MODEL}.pt").read_bytes() == (tmp_path / "run" / f"{MODEL}.pt").read_bytes()
    assert shipped["sha256"] == rec["sha256"] and shipped["recipe"]["epochs"] == 1


def test_resume_after_interruption_matches_uninterrupted_run(tiny_zip, tmp_path):
    data = load_dataset(tiny_zip, progress=False)
    entry = get_entry(MODEL)
    full = train(entry, data, _recipe(), tmp_path / "a", progress=False, log=lambda m: None)

    def crash_after_first_epoch(message):
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt  # after the epoch's checkpoint was written

    with pytest.raises(KeyboardInterrupt):
        train(entry, data, _recipe(), tmp_path / "b", progress=False, log=crash_after_first_epoch)
    assert (tmp_path / "b" / f"{MODEL}.ckpt").exists()
    assert not (tmp_path / "b" / f"{MODEL}.pt").exists()
    with pytest.raises(ConfigError, match="--resume"):
        train(entry, data, _recipe(), tmp_path / "b", progress=False, log=lambda m: None)
    with pytest.raises(ConfigError, match="different settings"):
        train(entry, data, _recipe(lr=0.2), tmp_path / "b", resume=True, progress=False,
              log=lambda m: None)
    messages = []
    resumed = train(entry, data, _recipe(), tmp_path / "b", resume=True, progress=False,
                    log=messages.append)
    assert messages[0].startswith("resuming") and len(resumed["history"]) == 2
    a = torch.load(tmp_path / "a" / f"{MODEL}.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / f"{MODEL}.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    assert resumed["top1"] == full["top1"]


def test_cli_trains_and_reports(tiny_zip, tmp_path, capsys):
    rc = deploy_main(["train", "shufflenet_v2_x0_5", "--data", str(tiny_zip), "--epochs", "1",
                      "--batch-size", "32", "--limit", "64", "--output", str(tmp_path),
                      "--threads", "1", "--no-progress"])
    assert rc == 0
    rec = json.loads((tmp_path / f"{MODEL}.json").read_text())
    assert rec["train_images"] == 64 and rec["test_images"] == 50
    assert rec["command"].startswith(f"deploy train {MODEL} --data ")
    assert "test top-1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--data", "{missing}"], "no such file"),
    (["--data", "{notzip}"], "not a folder or a zip"),
    (["--data", "{tiny}", "--epochs", "0"], "--epochs: must be at least 1, got 0"),
    (["--data", "{tiny}", "--limit", "8"], "smaller than one batch"),
])
def test_cli_errors_are_one_line(argv, message, tiny_zip, tmp_path, capsys):
    notzip = tmp_path / "notes.txt"
    notzip.write_text("not images")
    subs = {"{missing}": str(tmp_path / "nope.zip"), "{notzip}": str(notzip), "{tiny}": str(tiny_zip)}
    argv = [subs.get(a, a) for a in argv]
    rc = deploy_main(["train", "shufflenet_v2_x0_5", "--output", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_unknown_model_lists_trainable_names(tiny_zip, capsys):
    rc = deploy_main(["train", "resnet50", "--data", str(tiny_zip)])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown trainable model 'resnet50'" in err and MODEL in err


def test_data_without_train_split_or_wrong_size_is_refused(shared_data, tmp_path):
    only_test = _cut(shared_data / "cifar10.zip", tmp_path / "test-only.zip", {"test": 2})
    with pytest.raises(DataError, match="train"):
        load_dataset(only_test, progress=False)

    def enlarge(data: bytes) -> bytes:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).resize((40, 40)).save(buf, "JPEG")
        return buf.getvalue()

    big = _cut(shared_data / "cifar10.zip", tmp_path / "big.zip", {"train": 1, "test": 1}, enlarge)
    with pytest.raises(DataError, match="expected 32x32"):
        load_dataset(big, progress=False)


def test_cache_is_reused_and_keyed_by_content(tiny_zip, tmp_path):
    first = load_dataset(tiny_zip, progress=False)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1 and first.source_sha256[:16] in cached[0].name
    again = load_dataset(tiny_zip, progress=False)
    assert np.array_equal(first.train.images, again.train.images)
    assert np.array_equal(first.test.labels, again.test.labels)


def test_augmentation_is_a_padded_crop_or_its_mirror():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(1, 256, (64, 32, 32, 3), dtype=np.uint8))
    aug = Augmenter((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # output = raw pixel values
    out = aug(x, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).round().to(torch.uint8)
    padded = torch.nn.functional.pad(x, (0, 0, 4, 4, 4, 4))
    flips = shifts = 0
    for i in range(len(x)):
        found = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if torch.equal(out[i], (lambda c: c.flip(1) if f else c)(padded[i, dy:dy + 32, dx:dx + 32]))]
        assert found, f"image {i} is not a crop of the padded original"
        flips += found[0][2]
        shifts += (found[0][0], found[0][1]) != (4, 4)
    assert 10 < flips < 54 and shifts > 48  # both augmentations actually happen


def test_one_cycle_schedule_shape():
    r = Recipe(lr=0.2)
    total = 1000
    lrs = [lr_at(s, total, r) for s in range(total)]
    warm = int(total * r.warmup)
    assert lrs[0] == pytest.approx(0.02) and max(lrs) == pytest.approx(0.2, rel=1e-3)
    assert all(a <= b for a, b in zip(lrs[:warm], lrs[1:warm + 1]))
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    assert lrs[-1] < 0.2 * 0.01


def test_subset_is_class_balanced_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    split = Split(np.zeros((500, 1, 1, 3), np.uint8), labels)
    a, b = subset(split, 100, seed=1), subset(split, 100, seed=1)
    assert list(np.bincount(a.labels)) == [10] * 10 and np.array_equal(a.labels, b.labels)
    assert subset(split, None, 0) is split


def test_warm_restart_starts_from_the_given_weights_and_records_its_parent(tiny_zip, tmp_path):
    data = load_dataset(tiny_zip, progress=False)
    entry = get_entry(MODEL)
    first = train(entry, data, _recipe(epochs=1), tmp_path / "a", progress=False,
                  log=lambda m: None)
    parent = tmp_path / "a" / f"{MODEL}.pt"
    second = train(entry, data, _recipe(epochs=1), tmp_path / "b", init=parent, progress=False,
                   log=lambda m: None)
    assert second["init"]["sha256"] == first["sha256"]
    assert second["init"]["parent"]["epochs"] == 1 and second["init"]["parent"]["top1"] == first["top1"]
    # the same recipe from scratch gives other weights: the init was used, not ignored
    scratch = train(entry, data, _recipe(epochs=1), tmp_path / "c", progress=False,
                    log=lambda m: None)
    assert scratch["init"] is None and scratch["sha256"] != second["sha256"]
    # a checkpoint of that run cannot be resumed as a from-scratch run
    def crash(message):
        if message.startswith("epoch 1/"):
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(entry, data, _recipe(), tmp_path / "d", init=parent, progress=False, log=crash)
    with pytest.raises(ConfigError, match="init_sha256"):
        train(entry, data, _recipe(), tmp_path / "d", resume=True, progress=False,
              log=lambda m: None)
    # the table counts the whole chain
    records = tmp_path / "zoo" / "cifar10.json"
    ship(tmp_path / "b" / f"{MODEL}.json", records)
    assert trained_records(records)[MODEL]["init"]["parent"]["epochs"] == 1


def test_init_from_another_architecture_is_one_line(tiny_zip, tmp_path, capsys):
    other = tmp_path / "mv1.pt"
    torch.save(get_entry("mobilenet_v1_x0_5.cifar10").builder(
        **get_entry("mobilenet_v1_x0_5.cifar10").kwargs).state_dict(), other)
    rc = deploy_main(["train", "shufflenet_v2_x0_5", "--data", str(tiny_zip), "--epochs", "1",
                      "--batch-size", "32", "--limit", "64", "--output", str(tmp_path / "o"),
                      "--init", str(other), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "mv1.pt" in err, err
