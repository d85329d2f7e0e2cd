"""Real exports, validated in their runtimes on real images: zoo x targets x precisions.

The default suite converts a representative set (FAST); the whole registry x targets x
precisions at small resolution and every model at full resolution are marked slow.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgebase.capabilities import TARGETS, get_target
from tests.export_helpers import (CLASSES, FAST, KNOWN_UNSUPPORTED, SMALL, exported,
                                  full_matrix)


def _ids(combos):
    return ["-".join(c) for c in combos]


def check_export(artifact, out_dir, model_name, target_name, precision, size):
    target = get_target(target_name)
    v = artifact.validation
    assert v["status"] == "passed", v
    assert v["images"] >= 64 and v["data"].endswith(".zip")
    assert v["output_shape"] == [v["images"], CLASSES] == v["reference_shape"]
    tol = target.tolerance(precision)
    if tol.max_abs is not None:
        assert v["max_abs_diff"] <= tol.max_abs
    assert v["top1_agreement"] >= tol.min_top1
    assert artifact.format == target_name and artifact.precision == precision
    assert artifact.file == target.file_name(model_name, precision)
    assert (out_dir / artifact.file).is_file() and (out_dir / (artifact.file + ".json")).is_file()
    for comp in artifact.companions:
        assert (out_dir / comp["file"]).is_file()
    shape = artifact.input.shape
    assert artifact.input.layout == target.input_layout == artifact.preprocess.layout
    assert shape == ((1, 3, size, size) if target.input_layout == "NCHW" else (1, size, size, 3))
    extra = artifact.extra
    assert extra["op_count"] == sum(extra["op_histogram"].values()) > 0
    if target_name == "tflite":
        # NHWC input and the rewrites leave no layout transposes: what remains is one
        # innermost-axes TRANSPOSE per channel shuffle that is not an interleaved concat
        # (ShuffleNet V1 shuffles a grouped conv's output: the data movement itself)
        rewrites = artifact.passes[0]["rewrites"]
        assert extra["transpose_count"] == rewrites["channel_shuffle"], extra["op_histogram"]
    # no temporary or failed leftovers beside the result
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".") or ".failed" in p.name]


@pytest.mark.parametrize("model_name, target_name, precision", FAST, ids=_ids(FAST))
def test_fast_exports(model_name, target_name, precision):
    artifact, out = exported(model_name, target_name, precision)
    check_export(artifact, out, model_name, target_name, precision, SMALL)


def test_every_registered_combination_is_tested():
    """Every zoo model x target x precision is in the slow matrix (or listed as unsupported
    with a reason), and the default suite covers every target x precision and both
    ShuffleNets on TFLite (channel shuffle)."""
    from zoo import list_models

    registered = {(m, t.name, p) for m in list_models() for t in TARGETS.values()
                  for p in t.precisions}
    tested = set(full_matrix()) | set(KNOWN_UNSUPPORTED)
    assert registered - tested == set()
    assert all(reason.strip() for reason in KNOWN_UNSUPPORTED.values())
    assert {(t, p) for _, t, p in FAST} == {(t.name, p) for t in TARGETS.values()
                                             for p in t.precisions}
    fast_tflite = {m for m, t, _ in FAST if t == "tflite"}
    assert any(m.startswith("shufflenet_v1") for m in fast_tflite)
    assert any(m.startswith("shufflenet_v2") for m in fast_tflite)
    assert set(FAST) <= registered


@pytest.mark.slow
@pytest.mark.parametrize("model_name, target_name, precision", full_matrix(),
                         ids=_ids(full_matrix()))
def test_matrix_small(model_name, target_name, precision):
    artifact, out = exported(model_name, target_name, precision)
    check_export(artifact, out, model_name, target_name, precision, SMALL)


FULL = [(m, t, "fp32") for m, t, p in full_matrix() if p == "fp32"]


@pytest.mark.slow
@pytest.mark.parametrize("model_name, target_name, precision", FULL, ids=_ids(FULL))
def test_matrix_full_resolution(model_name, target_name, precision):
    import zoo

    size = zoo.get_entry(model_name).input_size
    artifact, out = exported(model_name, target_name, precision, size=size)
    check_export(artifact, out, model_name, target_name, precision, size)


def test_exported_tflite_matches_torch_on_a_real_image(shared_data):
    """End to end, through the runner's own backend: the shipped NHWC file and the PyTorch
    parent give the same logits for a real photo preprocessed from the manifest alone."""
    import torch

    import zoo
    from edgebase.manifest import read_manifest
    from device_runners.loading import load
    from edgebase.images import ImageSet, preprocess
    from tests.export_helpers import checkpoint

    artifact, out = exported("shufflenet_v2_x0_5", "tflite", "fp32")
    manifest = read_manifest(out / artifact.file)
    images = ImageSet(shared_data / "imagenet-sample-1k.zip")
    rgb = images.load(images.subset(1, seed=123)[0])
    x = preprocess(rgb, manifest.preprocess)[None]  # NHWC, as the manifest says
    assert x.shape == tuple(manifest.input.shape)
    got = load(out / artifact.file).run(x)[0]
    model, _ = zoo.create_model("shufflenet_v2_x0_5", num_classes=CLASSES, input_size=SMALL)
    model.load_state_dict(torch.load(checkpoint("shufflenet_v2_x0_5"), weights_only=True))
    with torch.no_grad():
        want = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    assert np.abs(got - want).max() <= 1e-3
    assert np.abs(want).max() > 1e-2, "logits this small would make the check meaningless"


def test_tflite_nchw_input_option(tmp_path):
    """nhwc_input=False keeps PyTorch's layout: the manifest, the validation feed and the
    file agree on NCHW, and the converter adds the input TRANSPOSE that NHWC input avoids."""
    from deploy.export import ExportConfig, export, load_source
    from tests.export_helpers import checkpoint

    source = load_source("squeezenet1_1", weights=checkpoint("squeezenet1_1"),
                         num_classes=CLASSES, input_size=SMALL)
    a = export(source, ExportConfig(target="tflite", output_dir=tmp_path, threads=1,
                                    options={"nhwc_input": False}))
    assert a.validation["status"] == "passed"
    assert a.input.shape == (1, 3, SMALL, SMALL) and a.input.layout == "NCHW"
    assert a.preprocess.layout == "NCHW" and a.passes[0]["options"] == {"nhwc_input": False}
    assert a.extra["transpose_count"] >= 1
