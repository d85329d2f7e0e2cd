"""The torch-free image sets: layouts, labels, deterministic subsets, preprocessing, errors."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from edgebase.errors import DataError
from edgebase.manifest import Preprocess
from edgebase.images import ImageSet, preprocess, resize_crop


def test_cifar_zip_picks_the_requested_split(shared_data):
    test = ImageSet(shared_data / "cifar10.zip", split="test")
    train = ImageSet(shared_data / "cifar10.zip", split="train")
    assert (len(test), len(train)) == (10_000, 50_000)
    assert test.classes[:3] == ["airplane", "automobile", "bird"]
    assert test.samples[0].key.startswith("cifar10/test/airplane/")
    assert test.load(0).shape == (32, 32, 3) and test.load(0).dtype == np.uint8


def test_imagenet_sample_labels_come_from_wnids(shared_data):
    s = ImageSet(shared_data / "imagenet-sample-1k.zip")
    assert len(s) == 1000 and s.layout == "imagenet-wnid"
    labels = {smp.key.split("/")[-1]: smp.label for smp in s.samples}
    assert labels["n01440764_tench.JPEG"] == 0
    assert labels["n01443537_goldfish.JPEG"] == 1
    assert sorted(labels.values()) == list(range(1000))


def test_balanced_subset_is_deterministic_and_balanced(shared_data):
    s = ImageSet(shared_data / "cifar10.zip", split="test")
    a, b = s.subset(100, seed=3), s.subset(100, seed=3)
    assert a == b and len(set(a)) == 100
    counts = np.bincount([s.samples[i].label for i in a], minlength=10)
    assert counts.tolist() == [10] * 10
    assert s.subset(100, seed=4) != a


def _folder(root, classes=("cat", "dog"), n=3, size=(40, 50)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder_directory_and_zip_agree(tmp_path):
    root = _folder(tmp_path / "set")
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for p in sorted(root.rglob("*.png")):
            z.write(p, f"set/{p.relative_to(root)}")
    d, z = ImageSet(root), ImageSet(zpath)
    assert d.classes == z.classes == ["cat", "dog"]
    assert [s.label for s in d.samples] == [s.label for s in z.samples] == [0, 0, 0, 1, 1, 1]
    assert np.array_equal(d.load(4), z.load(4))


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "contains no images"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "contains no images"),
    (lambda p: p.write_bytes(b"not a zip"), "not a folder or a zip"),
])
def test_bad_sources_are_clear_errors(tmp_path, make, message):
    path = tmp_path / "data"
    make(path)
    with pytest.raises(DataError, match=message):
        ImageSet(path)


def test_missing_path_and_unreadable_image(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        ImageSet(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    s = ImageSet(tmp_path)
    with pytest.raises(DataError, match="unreadable image"):
        s.load(0)


@pytest.mark.parametrize("member", ["../outside/cat/x.png", "/abs/cat/x.png",
                                    "set\\..\\..\\cat\\x.png", "C:/cat/x.png"])
def test_zip_entries_escaping_the_archive_are_refused_by_name(tmp_path, member):
    zpath = tmp_path / "evil.zip"
    buf = np.zeros((8, 8, 3), np.uint8)
    Image.fromarray(buf).save(tmp_path / "x.png")
    with zipfile.ZipFile(zpath, "w") as z:
        z.write(tmp_path / "x.png", "set/cat/x.png")
        z.writestr(zipfile.ZipInfo(member), (tmp_path / "x.png").read_bytes())
        z.write(tmp_path / "x.png", "set/dog/y.png")
    with pytest.raises(DataError, match="points outside the archive"):
        ImageSet(zpath)


def test_resize_crop_matches_torchvision_rounding():
    img = np.arange(300 * 400 * 3, dtype=np.uint16).reshape(300, 400, 3).astype(np.uint8)
    out = resize_crop(img, 256, 224)
    assert out.shape == (224, 224, 3)
    # short side 300 -> 256, long side int(256*400/300)=341; crop offsets round((256-224)/2)=16, round((341-224)/2)=58
    from PIL import Image as I
    ref = np.asarray(I.fromarray(img).resize((341, 256), I.BILINEAR))[16:240, 58:282]
    assert np.array_equal(out, ref)


def test_preprocess_normalises_and_lays_out():
    rgb = np.full((32, 32, 3), 255, np.uint8)
    spec = Preprocess(resize=32, crop=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = preprocess(rgb, spec)
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and np.allclose(x, 1.0)
    nhwc = preprocess(rgb, Preprocess(resize=32, crop=32, layout="NHWC"))
    assert nhwc.shape == (32, 32, 3)
