"""Files that describe themselves: ``runner eval`` and ``runner bench`` on a file with no manifest
read the preprocessing and labels it carries (TFLite Support metadata, ONNX metadata_props,
OpenVINO rt_info), flags override them, pixel-unit --mean/--std are read as such, and the result
says where each setting came from. Imported models keep their labels and a name that says
their width."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgebase.errors import ConfigError
from edgebase.manifest import Preprocess
from device_runners.embedded import Embedded, background_first, from_properties
from device_runners.evaluate import evaluate
from tests.runner_models import (CIFAR10, FLOAT_TFLITE, IMAGENET, MODELS, QUANT_TFLITE,
                                 make_small_models, need, write_artifact)

WITH_METADATA = MODELS / "mobilenet_v1_0.25_224_float_with_metadata.tflite"
FLAGS = dict(resize=256, mean=0.5, std=0.5, label_offset=1, threads=2)


def test_google_metadata_file_needs_no_flags():
    """The same numbers as the plain float file with the flags its README gives."""
    r = evaluate(need(WITH_METADATA), need(IMAGENET), limit=100, threads=2)
    ref = evaluate(need(FLOAT_TFLITE), IMAGENET, limit=100, **FLAGS)
    assert (r.correct1, r.correct5) == (ref.correct1, ref.correct5) and r.images == 100
    src = r.preprocess["sources"]
    assert src["normalization"] == "TFLite metadata"
    assert src["label offset"].startswith("TFLite metadata (its labels start with 'background')")
    assert src["resize"].startswith("default (crop 224 = 87.5 % of the short side")
    assert src["crop"] == "input shape" and r.preprocess["label_offset"] == 1
    assert r.preprocess["mean"] == pytest.approx((0.5,) * 3)
    assert "TFLite metadata: normalization" in r.preprocess["from"]


@pytest.mark.slow
def test_google_metadata_file_scores_its_reference_with_no_flags():
    r = evaluate(need(WITH_METADATA), need(IMAGENET), threads=2)
    assert r.images == 1000 and abs(r.top1 - 55.0) <= 0.2 + 1e-9, r.top1


def test_flags_override_the_metadata():
    r = evaluate(need(WITH_METADATA), need(IMAGENET), limit=20, resize=224, mean=0.5, std=0.5,
                 label_offset=1, crop_offset="floor", threads=2)
    src = r.preprocess["sources"]
    assert src["resize"] == src["normalization"] == src["label offset"] == "flags"
    assert r.preprocess["resize"] == 224 and r.preprocess["crop_offset"] == "floor"


def test_pixel_unit_mean_and_std_are_read_as_pixel_units():
    a = evaluate(need(FLOAT_TFLITE), need(IMAGENET), limit=40, **FLAGS)
    b = evaluate(FLOAT_TFLITE, IMAGENET, limit=40, **{**FLAGS, "mean": 127.5, "std": 127.5})
    assert (a.correct1, a.correct5) == (b.correct1, b.correct5) and a.correct1 > 10
    assert b.preprocess["mean"] == pytest.approx((0.5,) * 3)
    assert "pixel units" in b.preprocess["sources"]["normalization"]
    assert "127.5 / 127.5 = 0.5 / 0.5" in b.preprocess["from"]
    with pytest.raises(ConfigError, match="mix units"):
        evaluate(FLOAT_TFLITE, IMAGENET, limit=2, **{**FLAGS, "mean": 0.5, "std": 127.5})
    with pytest.raises(ConfigError, match="--std must be positive"):
        evaluate(FLOAT_TFLITE, IMAGENET, limit=2, **{**FLAGS, "std": (0.5, 0.0, 0.5)})


def test_integer_input_gets_raw_pixels_whatever_the_metadata_says():
    """Google's uint8 model: its quantization maps raw pixels (Android's Task Library too)."""
    r = evaluate(need(QUANT_TFLITE), need(IMAGENET), limit=10, resize=256, label_offset=1,
                 threads=2)
    assert r.preprocess["mean"] is None
    assert r.preprocess["sources"]["normalization"].startswith("default (raw pixels")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_small_models(tmp_path_factory.mktemp("embedded"))


def _with_props(src: Path, dst: Path, props: dict[str, str]) -> Path:
    import onnx

    proto = onnx.load(str(src))
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(proto, str(dst))
    return dst


def test_onnx_image_metadata_props(tiny, tmp_path):
    """ONNX's own keys (Image.NominalPixelRange, Image.BitmapPixelFormat) give the
    normalization and the channel order; the result equals a manifest that says the same."""
    model = _with_props(tiny["onnx"], tmp_path / "bgr.onnx", {
        "Image.NominalPixelRange": "Normalized_0_1", "Image.BitmapPixelFormat": "Bgr8"})
    r = evaluate(model, need(CIFAR10), limit=30, resize=32, batch=10, isolate=False)
    assert r.preprocess["color"] == "BGR" and r.preprocess["std"] == pytest.approx((1.0,) * 3)
    assert r.preprocess["sources"]["normalization"] == "ONNX metadata_props"
    assert r.preprocess["sources"]["colour"] == "ONNX metadata_props"
    twin = tmp_path / "twin.onnx"
    shutil.copyfile(tiny["onnx"], twin)
    from device_runners.loading import load

    write_artifact(twin, load(twin), preprocess=Preprocess(
        resize=32, crop=32, mean=(0.0,) * 3, std=(1.0,) * 3, color="BGR", layout="NCHW"))
    m = evaluate(twin, CIFAR10, limit=30, batch=10, isolate=False)
    assert (r.correct1, r.correct5) == (m.correct1, m.correct5)


def test_edgedeploy_metadata_needs_no_flags_and_names_the_labels(tiny, tmp_path):
    """A file from `deploy export` copied without its manifest still evaluates with no flags."""
    labels = [f"class {i}" for i in range(10)]
    pre = {"resize": 36, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
           "interpolation": "bicubic", "color": "RGB", "layout": "NCHW"}
    model = _with_props(tiny["onnx"], tmp_path / "alone.onnx", {
        "edgedeploy.preprocess": json.dumps(pre), "edgedeploy.labels": "\n".join(labels)})
    r = evaluate(model, need(CIFAR10), limit=20, batch=10, isolate=False)
    p = r.preprocess
    assert (p["resize"], p["crop"], p["interpolation"]) == (36, 32, "bicubic")
    assert p["sources"]["resize"] == p["sources"]["label offset"] == "ONNX metadata_props"
    assert p["label_offset"] == 0 and r.warnings == []


def test_unusable_metadata_is_ignored_with_a_warning(tiny, tmp_path):
    model = _with_props(tiny["onnx"], tmp_path / "odd.onnx",
                        {"Image.NominalPixelRange": "NominalRange_16_235"})
    r = evaluate(model, need(CIFAR10), limit=4, resize=32, scale=1 / 255, isolate=False)
    assert r.preprocess["sources"]["normalization"] == "flags"
    assert any("NominalRange_16_235" in w and "ignored" in w for w in r.warnings)


def test_openvino_rt_info_is_read(tiny, tmp_path):
    import openvino as ov

    m = ov.Core().read_model(str(tiny["xml"]))
    m.set_rt_info(json.dumps({"resize": 40, "crop": 32, "mean": [0.5], "std": [0.5]}),
                  ["edgedeploy", "edgedeploy.preprocess"])
    ov.save_model(m, str(tmp_path / "ov.xml"), compress_to_fp16=False)
    from device_runners.loading import load

    with load(tmp_path / "ov.xml") as b:
        e = b.embedded()
    assert e.where == "OpenVINO rt_info" and e.resize == 40 and e.mean == (0.5,) * 3


def test_bench_says_what_the_file_carries():
    from device_runners.bench import bench, format_table

    r = bench(need(WITH_METADATA), runs=2, warmup=0, threads=1, isolate=False)
    assert r.embedded["labels"] == 1001 and r.embedded["where"] == "TFLite metadata"
    assert "file says    TFLite metadata: normalization (x/255 - 0.5) / 0.5; 1001 labels " \
           "(first 'background': label offset 1)" in format_table(r)


def test_property_parsing():
    assert from_properties({"other": "x"}, "w") is None
    e = from_properties({"Image.NominalPixelRange": "Normalized_1_1"}, "w")
    assert e.mean == e.std == (0.5,) * 3 and e.problem is None
    bad = from_properties({"edgedeploy.preprocess": "{not json"}, "w")
    assert bad.problem and bad.empty
    zero = from_properties({"edgedeploy.preprocess": json.dumps(
        {"resize": 1, "crop": 1, "mean": [0], "std": [0]})}, "w")
    assert zero.mean is None and "std of 0" in zero.problem
    said = from_properties({"edgedeploy.labels": "imagenet1001", "edgedeploy.label_offset": "1"},
                           "w")
    assert said.label_offset == 1 and said.labels is None and not said.empty
    assert background_first(["background", "x"]) and not background_first(["cat", "dog"])
    assert Embedded("w").empty


def test_imported_model_keeps_its_name_width_and_labels(shared_data):
    """Google's file through the importer: named by its width, 1001 labels with background."""
    from deploy.export import load_source

    source = load_source("mobilenet_v1", weights=need(FLOAT_TFLITE), width=0.25,
                         num_classes=1001)
    assert source.name == "mobilenet_v1_x0_25" and source.describe()["name"] == source.name
    assert source.identity("fp32")["model"] == "mobilenet_v1_x0_25"
    assert len(source.labels) == 1001 and source.labels[0] == "background"


@pytest.mark.slow
def test_imported_model_files_evaluate_with_no_flags(shared_data, tmp_path):
    """deploy export of the import (ONNX, fp32 and int8), then runner eval with no flags: on
    the file with its manifest, and on the ONNX file alone (its metadata_props)."""
    from deploy.cli import main

    assert main(["export", "mobilenet_v1", "--width", "0.25", "--num-classes", "1001",
                 "--weights", str(need(FLOAT_TFLITE)), "--target", "onnx", "--int8",
                 "--calib", str(need(IMAGENET)), "--calib-size", "64",
                 "--output", str(tmp_path / "out"), "--threads", "2"]) == 0
    out = tmp_path / "out"
    fp32, int8 = out / "mobilenet_v1_x0_25.onnx", out / "mobilenet_v1_x0_25.int8.onnx"
    assert json.loads(Path(str(fp32) + ".json").read_text())["model"]["name"] == \
        "mobilenet_v1_x0_25"
    alone = tmp_path / "alone.onnx"
    shutil.copyfile(fp32, alone)
    for model in (fp32, int8, alone):
        r = evaluate(model, IMAGENET, limit=200, threads=2)
        assert r.preprocess["label_offset"] == 1 and r.top1 > 40, (model, r.top1)
    assert evaluate(alone, IMAGENET, limit=1, threads=2).preprocess["sources"]["label offset"] \
        == "ONNX metadata_props"
