"""The calibration images that ship in the package (zoo/calib): CIFAR-10 *training* images,
class-balanced and seeded, byte-identical to the source zip's files, rebuilt identically by the
committed script, and what `--int8` uses by default for the packaged models."""
from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter

import numpy as np
import pytest

from edgebase.errors import ConfigError

REPO_CALIB = "zoo/calib/cifar10-train-300"


def test_the_packaged_file_is_300_balanced_training_images(shared_data):
    from edgebase.images import ImageSet
    from zoo.calib import packaged_set

    pack = packaged_set("cifar10")
    rec = pack.record
    assert rec["split"] == "train" and rec["images"] == 300 and rec["seed"] == 0
    assert hashlib.sha256(pack.path.read_bytes()).hexdigest() == rec["sha256"]
    source = shared_data / "cifar10.zip"
    assert rec["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    with zipfile.ZipFile(pack.path) as z, zipfile.ZipFile(source) as src:
        names = z.namelist()
        assert names == rec["keys"] and len(set(names)) == 300
        assert all(n.startswith("cifar10/train/") for n in names)  # never a test image
        for n in names[::15]:  # the very bytes of the source's training files
            assert z.read(n) == src.read(n)
    assert Counter(n.split("/")[2] for n in names) == {c: 30 for c in rec["per_class"]}
    images = ImageSet(pack.path, split="train")
    assert len(images) == 300 and images.num_classes == 10
    assert images.load(0).shape == (32, 32, 3)


def test_the_script_rebuilds_it_byte_identically(shared_data, tmp_path):
    from zoo.calib import HERE
    from zoo.calib.build_cifar10 import build

    rec = build(shared_data / "cifar10.zip", out_dir=tmp_path)
    shipped = json.loads((HERE / "cifar10-train-300.json").read_text())
    assert rec["sha256"] == shipped["sha256"] == \
        hashlib.sha256((tmp_path / "cifar10-train-300.zip").read_bytes()).hexdigest()
    assert (tmp_path / "cifar10-train-300.json").read_text() == \
        (HERE / "cifar10-train-300.json").read_text()


def test_it_ships_as_package_data():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"calib/*.zip"' in text and '"calib/*.json"' in text


def _config(**kw):
    from deploy.int8_stage import Int8Config

    return Int8Config(**kw)


def test_packaged_models_calibrate_on_it_by_default(capsys):
    from deploy.export import load_source
    from deploy.int8_stage import calibration_data

    source = load_source("shufflenet_v2")  # the bare name: the trained CIFAR-10 entry
    calib = calibration_data(source, _config())
    s = calib.source
    assert len(calib) == 300 and calib.inputs.shape == (300, 3, 32, 32)
    assert s["kind"] == "packaged" and s["source"] == "packaged cifar10 train"
    assert s["images"] == 300 and s["classes"] == 10 and s["origin"]["file"] == "cifar10.zip"
    assert all(k.startswith("cifar10/train/") for k in calib.keys)
    assert "300 packaged cifar10 train images" in capsys.readouterr().err
    # preprocessed with the model's own mean/std: roughly zero-mean, unit-spread pixels
    assert abs(float(calib.inputs.mean())) < 0.3 and 0.7 < float(calib.inputs.std()) < 1.3
    fewer = calibration_data(source, _config(calib_size=50)).keys
    assert len(fewer) == 50 and set(Counter(k.split("/")[2] for k in fewer).values()) == {5}
    with pytest.raises(ConfigError, match="holds 300 images; give 1..300, or --calib PATH"):
        calibration_data(source, _config(calib_size=301))


def test_random_init_weights_must_choose(capsys):
    from deploy.export import load_source
    from deploy.int8_stage import calibration_data

    source = load_source("shufflenet_v2_x1_0", input_size=32)  # random init
    with pytest.raises(ConfigError, match="random-init weights.*--calib PATH.*--calib synthetic"):
        calibration_data(source, _config())
    calib = calibration_data(source, _config(calib="synthetic", calib_size=8))
    assert calib.latency_only and calib.source["kind"] == "synthetic" and len(calib) == 8
    assert np.isfinite(calib.inputs).all()
    assert "WARNING" in capsys.readouterr().err and "latency only" in calib.describe()


def test_synthetic_calibration_marks_the_file_latency_only(tmp_path, capsys):
    """`--calib synthetic` on random-init weights: exported, marked "latency only" on screen and
    in the manifest, and the runner says so beside its numbers."""
    import json

    import torch

    from deploy.cli import main
    from edgebase.manifest import read_manifest
    from device_runners.cli import main as runner

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = tmp_path / "out"
    code = main(["export", "shufflenet_v2_x1_0", "--input-size", "32", "--num-classes", "10",
                 "--target", "onnx", "--int8", "--calib", "synthetic", "--calib-size", "8",
                 "--threads", "1", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "calibration: WARNING: 8 synthetic noise inputs" in captured.err
    assert "WARNING:     LATENCY ONLY" in captured.out
    path = out / "shufflenet_v2_x1_0.int8.onnx"
    a = read_manifest(path)
    assert a.passes[-1]["calibration"]["kind"] == "synthetic"
    assert a.extra["latency_only"].startswith("latency only") and "latency only" in \
        a.validation["note"]
    assert runner(["bench", str(path), "--runs", "2", "--warmup", "0", "--threads", "1",
                   "--no-isolate", "--json", str(tmp_path / "b.json")]) == 0
    warnings = [w for w in capsys.readouterr().err.splitlines() if w.startswith("warning: ")]
    assert len(warnings) == 2 and "random-init" in warnings[0] and "noise" in warnings[1]
    assert json.loads((tmp_path / "b.json").read_text())["warnings"] == [w[9:] for w in warnings]
