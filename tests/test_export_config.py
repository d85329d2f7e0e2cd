"""The capability table, export options, validation metrics and data lookup (no conversions)."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from deploy.cli import main
from edgebase.errors import ConfigError, DataError, UnknownNameError
from edgebase.capabilities import FP16, TARGETS, Tolerance, all_precisions, get_target


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_is_complete(name):
    from edgebase.capabilities import RUNTIMES

    t = get_target(name)
    assert t.suffix.startswith(".") and t.runtime in RUNTIMES
    assert t.suffix in RUNTIMES[t.runtime].suffixes, "the target's runtime must read its files"
    assert "fp32" in t.precisions and t.input_layout in ("NCHW", "NHWC")
    module, _, fn = t.converter.partition(":")
    assert callable(getattr(importlib.import_module(module), fn))
    assert t.tolerance("fp32").max_abs is not None and t.tolerance("fp32").min_top1 == 1.0
    assert not set(t.refused) & set(t.precisions)


def test_issue_tolerances_are_the_table_values():
    assert get_target("onnx").tolerance("fp32").max_abs == 1e-4
    assert get_target("openvino").tolerance("fp32").max_abs == 1e-4
    assert get_target("tflite").tolerance("fp32").max_abs == 1e-3
    for name in ("tflite", "openvino"):
        assert get_target(name).tolerance("fp16").min_top1 >= 0.99
    assert set(all_precisions()) == {"fp16", "fp32", "int8"}


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid: " + ", ".join(sorted(TARGETS))):
        get_target("coreml")


def test_refused_precision_says_why():
    with pytest.raises(ConfigError, match="onnx does not offer fp16: .*openvino --fp16"):
        get_target("onnx").check_precision("fp16")
    with pytest.raises(ConfigError, match="valid: fp32, fp16, int8"):
        get_target("tflite").check_precision("fp64")


def test_export_config_rejects_what_the_target_cannot_do(tmp_path):
    from deploy.export import ExportConfig

    with pytest.raises(ConfigError, match="tflite has no option simplify; valid: nhwc_input"):
        ExportConfig(target="tflite", options={"simplify": False}, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="--batch must be >= 1"):
        ExportConfig(target="onnx", batch=0, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="at least 64 images"):
        ExportConfig(target="onnx", validate_images=10, output_dir=tmp_path)


@pytest.mark.parametrize("argv, exit_code, message", [
    (["export", "mobilenet_v2", "--target", "onnx", "--fp16"], 2, "onnx does not offer fp16"),
    (["export", "mobilenet_v9", "--target", "onnx"], 2, "unknown model 'mobilenet_v9'; valid:"),
    (["export", "mobilenet_v2", "--target", "tflite", "--no-simplify"], 2,
     "tflite has no option simplify"),
    (["export", "mobilenet_v2", "--target", "onnx", "--width", "0"], 2, "width"),
])
def test_cli_errors_are_one_line(argv, exit_code, message, capsys, tmp_path):
    assert main(argv + ["--output", str(tmp_path / "out")]) == exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_data_folder_is_a_data_error_before_converting(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEDEPLOY_DATA", str(tmp_path / "nowhere"))
    from deploy.validate import data_dir

    with pytest.raises(DataError, match="nowhere does not exist"):
        data_dir()
    out = tmp_path / "out"
    code = main(["export", "squeezenet1_1", "--target", "openvino", "--input-size", "64",
                 "--output", str(out)])
    assert code == DataError.exit_code
    assert "validation data folder" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_validate_data_option_reads_the_given_images(shared_data):
    from edgebase.manifest import Preprocess
    from deploy.validate import validation_batch

    pre = Preprocess(resize=36, crop=32)
    x, info = validation_batch(pre, 64, shared_data / "cifar10.zip")
    assert x.shape == (64, 3, 32, 32) and x.dtype == np.float32
    assert info["data"] == "cifar10.zip" and info["images"] == 64
    x2, _ = validation_batch(pre, 64, shared_data / "cifar10.zip")
    assert np.array_equal(x, x2), "the validation subset must be deterministic"
    with pytest.raises(DataError, match="no such file"):
        validation_batch(pre, 64, shared_data / "missing.zip")


@pytest.mark.parametrize("size, data", [(32, "cifar10.zip"), (64, "imagenet-sample-1k.zip"),
                                        (224, "imagenet-sample-1k.zip")])
def test_default_validation_images_follow_the_input_size(size, data, shared_data):
    from deploy.validate import default_data

    path, split = default_data(size)
    assert path.name == data and path.exists() and split == "test"


# ---- compare(): the metrics and the decision ------------------------------------------
REF = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.5]], dtype=np.float32)
STRICT = Tolerance(max_abs=1e-4, min_top1=1.0, min_cosine=0.9999)


def test_compare_passes_within_tolerance():
    v = compare_(REF + 5e-5)
    assert v["status"] == "passed" and v["top1_agreement"] == 1.0
    assert v["max_abs_diff"] == pytest.approx(5e-5, rel=1e-2) and "failures" not in v


def test_compare_fails_on_logit_difference():
    v = compare_(REF + np.array([[0, 0, 2e-3], [0, 0, 0]], dtype=np.float32))
    assert v["status"] == "failed" and v["top1_agreement"] == 1.0
    assert any("max |dlogit|" in f for f in v["failures"])


def test_compare_fails_on_top1_flip_even_when_fp16_allows_large_differences():
    flipped = REF.copy()
    flipped[1] = [0.5, 1.0, 3.0]
    v = compare_(flipped, FP16)
    assert v["status"] == "failed" and v["top1_agreement"] == 0.5
    assert any("top-1 agreement 50.0% < 99%" in f for f in v["failures"])


def test_compare_fails_on_shape_and_nan():
    v = compare_(REF[:, :2])
    assert v["status"] == "failed" and "output shape [2, 2]" in v["failures"][0]
    bad = REF.copy()
    bad[0, 0] = np.nan
    assert compare_(bad)["status"] == "failed"


def compare_(candidate, tol=STRICT):
    from deploy.validate import compare

    return compare(REF, np.asarray(candidate, dtype=np.float32), tol)


def test_compare_forgives_only_flips_between_near_tied_logits():
    ref = np.array([[1.0, 1.00005, 0.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    swapped = ref.copy()
    swapped[0] = [1.00005, 1.0, 0.0]  # within 1e-4 of the parent: a legitimate reorder
    from deploy.validate import compare

    v = compare(ref, swapped, STRICT)
    assert v["top1_agreement"] == 0.5 and v["near_ties"] == 1 and v["status"] == "passed"
    far = ref.copy()
    far[1] = [0.0, 2.0, 0.0]
    assert compare(ref, far, Tolerance(max_abs=None, min_top1=1.0))["status"] == "failed"


@pytest.mark.parametrize("name, width, stem", [
    ("mobilenet_v1", None, "mobilenet_v1_x0_5.cifar10"),  # the bare name: trained default
    ("mobilenet_v1", 0.25, "mobilenet_v1_x0_25"),
    ("mobilenet_v1_x0_5", 1.0, "mobilenet_v1_x1_0"),
    ("mobilenet_v2", 1.0, "mobilenet_v2"),
    ("mobilenet_v2", 0.75, "mobilenet_v2_x0_75"),
    ("shufflenet_v1_g3", 0.5, "shufflenet_v1_g3_x0_5"),
])
def test_file_stem_names_the_width_that_was_built(name, width, stem):
    from deploy.export import load_source
    from deploy.placement import file_stem

    assert file_stem(load_source(name, width=width)) == stem


def test_quiet_captures_python_prints_and_file_descriptor_writes(capsys):
    """Converters print from Python and from C++: neither may reach stdout, where `--json`
    puts the manifest; both stay readable for the error message."""
    import os
    import sys

    from exporters.common import quiet

    with quiet() as log:
        print("python progress")
        print("python warning", file=sys.stderr)
        os.write(1, b"native progress\n")
        text = log.text()  # read inside: the buffer is gone after the block
    assert "python progress" in text and "python warning" in text and "native progress" in text
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    print("after")
    assert capsys.readouterr().out == "after\n"
