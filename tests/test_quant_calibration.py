"""Calibration data: folders, zips and .npz files, deterministic class-balanced sampling, and
one-line errors for empty, image-less and unreadable inputs."""
from __future__ import annotations

import zipfile
from collections import Counter

import numpy as np
import pytest

from edgebase.errors import ConfigError, DataError, ShapeError
from edgebase.manifest import Preprocess
from quant.calibration import CalibrationSet, eval_indices, load_calibration

PRE = Preprocess(resize=36, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _png(path, rgb):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


@pytest.fixture
def folder(tmp_path):
    """Three classes of 4, 6 and 8 images, each image a flat colour (class, index) can be read
    back from."""
    root = tmp_path / "set"
    for c, n in enumerate((4, 6, 8)):
        for i in range(n):
            _png(root / f"class{c}" / f"{i}.png", np.full((40, 48, 3), (c * 60, i * 20, 7), np.uint8))
    return root


def test_folder_is_preprocessed_seeded_and_class_balanced(folder):
    calib = load_calibration(folder, PRE, size=9, seed=3)
    assert calib.inputs.shape == (9, 3, 32, 32) and calib.inputs.dtype == np.float32
    per_class = Counter(k.split("/")[0] for k in calib.keys)
    assert sorted(per_class.values()) == [3, 3, 3]
    # the model's preprocessing: (x/255 - 0.5) / 0.25 of the flat colours
    red = {round(float(v), 4) for v in calib.inputs[:, 0].reshape(9, -1).mean(1)}
    assert red == {round((c * 60 / 255 - 0.5) / 0.25, 4) for c in range(3)}
    again = load_calibration(folder, PRE, size=9, seed=3)
    assert again.keys == calib.keys and np.array_equal(again.inputs, calib.inputs)
    other = load_calibration(folder, PRE, size=9, seed=4)
    assert other.keys != calib.keys
    assert calib.source["kind"] == "images" and calib.source["classes"] == 3
    assert len(load_calibration(folder, PRE, size=500)) == 18  # all there is


def test_zip_of_a_folder(folder, tmp_path):
    z = tmp_path / "set.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in folder.rglob("*.png"):
            f.write(p, "set/" + p.relative_to(folder).as_posix())
    calib = load_calibration(z, PRE, size=6, seed=0)
    direct = load_calibration(folder, PRE, size=6, seed=0)
    assert np.array_equal(calib.inputs, direct.inputs)


def test_npz_float_and_uint8(tmp_path):
    x = np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "f.npz", x=x, y=np.arange(20))
    calib = load_calibration(tmp_path / "f.npz", PRE, size=5, seed=1)
    assert calib.inputs.shape == (5, 3, 32, 32)
    assert all(any(np.array_equal(row, r) for r in x) for row in calib.inputs)
    pixels = np.full((4, 40, 40, 3), 255, np.uint8)
    np.savez(tmp_path / "u.npz", pixels)
    raw = load_calibration(tmp_path / "u.npz", PRE, size=10)
    assert raw.inputs.shape == (4, 3, 32, 32) and np.allclose(raw.inputs, 2.0)


@pytest.mark.parametrize("make, error, match", [
    (lambda p: p.mkdir(), DataError, "the folder is empty"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), DataError, "contains no images"),
    (lambda p: (p.mkdir(), (p / "a").mkdir(), (p / "a" / "0.jpg").write_bytes(b"not a jpeg")),
     DataError, "unreadable image"),
    (lambda p: p.write_bytes(b"plain bytes"), DataError, "not a folder, a zip of images or a .npz"),
])
def test_bad_folders_fail_with_one_line(tmp_path, make, error, match):
    path = tmp_path / "calib"
    make(path)
    with pytest.raises(error, match=match) as e:
        load_calibration(path, PRE, size=4)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("arrays, error, match", [
    ({}, DataError, "holds no arrays"),
    ({"x": np.zeros((0, 3, 32, 32), np.float32)}, DataError, "is empty"),
    ({"x": np.zeros((2, 3, 16, 16), np.float32)}, ShapeError, r"takes \(3, 32, 32\)"),
    ({"x": np.zeros((2, 5), np.int64)}, ShapeError, "expected float32"),
    ({"x": np.full((2, 3, 32, 32), np.nan, np.float32)}, DataError, "NaN"),
    ({"a": np.zeros(2), "b": np.zeros(2)}, DataError, "none named x"),
])
def test_bad_npz(tmp_path, arrays, error, match):
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(error, match=match):
        load_calibration(tmp_path / "c.npz", PRE, size=4)


def test_missing_path_and_bad_size(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_calibration(tmp_path / "nope", PRE)
    with pytest.raises(ConfigError, match="--calib-size must be >= 1"):
        load_calibration(tmp_path, PRE, size=0)


def test_evaluation_leaves_the_calibration_images_out(folder):
    from edgebase.images import ImageSet

    calib = load_calibration(folder, PRE, size=6, seed=0)
    images = ImageSet(folder)
    rest = eval_indices(images, calib)
    assert len(rest) == 12
    assert not {images.samples[i].key for i in rest} & set(calib.keys)
    # another set (or distilled data) leaves everything in
    assert len(eval_indices(images, CalibrationSet(calib.inputs, {"kind": "zeroq"}))) == 18
    everything = load_calibration(folder, PRE, size=18)
    with pytest.raises(DataError, match="none is left to evaluate"):
        eval_indices(images, everything)
