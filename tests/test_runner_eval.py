"""``device_runners.evaluate``: accuracy against a direct interpreter loop, preprocessing rules."""
from __future__ import annotations

import io
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from deploy.errors import ConfigError
from deploy.manifest import Preprocess
from device_runners.evaluate import evaluate
from device_runners.backends import load
from device_runners.images import ImageSet
from tests.runner_models import (CIFAR10, FLOAT_TFLITE, IMAGENET, QUANT_TFLITE, direct_topk,
                                 need, small_models, write_artifact)  # noqa: F401

TF_FLAGS = dict(resize=256, label_offset=1, crop_offset="floor", threads=2)


def _imagenet_crops(indices):
    """Independent of the runner's pipeline: PIL decode, TF-style centre crop 224."""
    images = ImageSet(need(IMAGENET))
    crops, labels = [], []
    with zipfile.ZipFile(IMAGENET) as z:
        for i in indices:
            with Image.open(io.BytesIO(z.read(images.samples[i].key))) as im:
                rgb = np.asarray(im.convert("RGB"))
            h, w = rgb.shape[:2]
            assert min(h, w) == 256  # the sample is stored at short side 256
            t, l = (h - 224) // 2, (w - 224) // 2
            crops.append(rgb[t:t + 224, l:l + 224])
            labels.append(images.samples[i].label + 1)
    return np.stack(crops), np.array(labels)


@pytest.fixture(scope="module")
def hundred():
    idx = ImageSet(need(IMAGENET)).subset(100, seed=0)
    return _imagenet_crops(idx)


def test_eval_matches_direct_loop_on_100_images(hundred):
    crops, labels = hundred
    r = evaluate(need(FLOAT_TFLITE), IMAGENET, limit=100, mean=0.5, std=0.5, **TF_FLAGS)
    expect = direct_topk(FLOAT_TFLITE, crops.astype(np.float32) / 127.5 - 1, labels)
    assert (r.correct1, r.correct5) == expect and r.images == 100
    q = evaluate(need(QUANT_TFLITE), IMAGENET, limit=100, **TF_FLAGS)
    assert (q.correct1, q.correct5) == direct_topk(QUANT_TFLITE, crops, labels)
    assert q.preprocess["mean"] is None  # raw pixels into the uint8 input
    assert 0 <= q.ties["top5_tied"] <= 100
    assert r.to_dict()["top1"] == pytest.approx(r.correct1)


@pytest.mark.slow
@pytest.mark.parametrize("model,flags,top1,top5", [
    (FLOAT_TFLITE, {"mean": 0.5, "std": 0.5}, 55.1, 80.1),
    (QUANT_TFLITE, {}, 54.2, 78.3),
])
def test_eval_reproduces_google_reference(model, flags, top1, top5):
    r = evaluate(need(model), need(IMAGENET), **flags, **TF_FLAGS)
    assert r.images == 1000
    assert abs(r.top1 - top1) <= 0.3 + 1e-9 and abs(r.top5 - top5) <= 0.3 + 1e-9


def test_eval_with_manifest_matches_direct_onnx_loop(small_models, tmp_path):
    import onnxruntime as ort

    from device_runners.images import preprocess

    model = tmp_path / "tiny.onnx"
    shutil.copy(small_models["onnx"], model)
    pre = Preprocess(resize=32, crop=32, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
    write_artifact(model, load(model), preprocess=pre)
    r = evaluate(model, need(CIFAR10), limit=40, batch=8, isolate=False)
    assert r.preprocess["source"] == "manifest" and r.images == 40
    images = ImageSet(CIFAR10, split="test")
    idx = images.subset(40, seed=0)
    x = np.stack([preprocess(images.load(i), pre) for i in idx])
    y = np.array([images.samples[i].label for i in idx])
    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    assert r.correct1 == int((logits.argmax(1) == y).sum())
    with pytest.raises(ConfigError, match="contradicts the manifest"):
        evaluate(model, CIFAR10, limit=4, resize=36, isolate=False)


def test_eval_preprocessing_errors(small_models):
    model = small_models["onnx"]  # no manifest beside it
    with pytest.raises(ConfigError, match="--resize"):
        evaluate(model, need(CIFAR10), limit=4, mean=0.5, std=0.5, isolate=False)
    with pytest.raises(ConfigError, match="--mean and --std"):
        evaluate(model, CIFAR10, limit=4, resize=32, isolate=False)
    with pytest.raises(ConfigError, match="--size 40"):
        evaluate(model, CIFAR10, limit=4, resize=40, size=40, scale=1 / 255, isolate=False)
    with pytest.raises(ConfigError, match="--layout NHWC"):
        evaluate(model, CIFAR10, limit=4, resize=32, scale=1 / 255, layout="NHWC", isolate=False)
    with pytest.raises(ConfigError, match="--label-offset 1"):
        evaluate(need(FLOAT_TFLITE), need(IMAGENET), limit=2, resize=256, mean=0.5, std=0.5,
                 isolate=False)
    with pytest.raises(ConfigError, match="do not fit"):
        evaluate(need(FLOAT_TFLITE), IMAGENET, limit=2, resize=256, mean=0.5, std=0.5,
                 label_offset=2, isolate=False)
    r = evaluate(model, CIFAR10, limit=10, resize=32, scale=1 / 255, isolate=False)
    assert r.preprocess["std"] == pytest.approx((1.0,) * 3) and r.images == 10
