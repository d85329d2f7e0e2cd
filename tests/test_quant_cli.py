"""`deploy export --int8` flags: one-line errors for combinations that cannot work, raised
before anything slow runs; and the PTQ registry keyed by target name."""
from __future__ import annotations

import pytest

from edgebase.errors import ConfigError, UnknownNameError


def run(argv, capsys):
    from deploy.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("flags, message", [
    (["--calib", "x"], "--calib needs --int8"),
    (["--max-drop", "1"], "--max-drop needs --int8"),
    (["--int8-io", "uint8"], "--int8-io needs --int8"),
    (["--limit", "5"], "--limit needs --int8"),
    (["--int8", "--fp16"], "--int8 and --fp16 exclude each other"),
    (["--int8", "--max-drop", "0.5"], "--max-drop needs --data PATH"),
    (["--int8", "--limit", "5"], "--limit needs --data PATH"),
    (["--int8", "--calib-size", "0"], "--calib-size: must be at least 1, got 0"),
    (["--int8", "--max-drop", "-1", "--data", "x"], "--max-drop: must be at least 0, got -1"),
])
def test_flag_errors(flags, message, capsys, tmp_path):
    code, err = run(["export", "shufflenet_v2_x0_5.cifar10", "--target", "onnx",
                     "--output", str(tmp_path)] + flags, capsys)
    assert code == 2 and message in err and "\n" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target, flags, message", [
    ("onnx", ["--int8-io", "uint8"], "onnx int8 models take float input"),
    ("openvino", ["--io", "int8"], "OpenVINO int8 models take float input"),
    ("onnx", ["--calib-method", "ema"], "valid: image-percentile, percentile, minmax, entropy"),
    ("tflite", ["--calib-method", "entropy"], "valid: image-percentile, minmax, ema"),
])
def test_target_option_errors(target, flags, message, capsys, tmp_path):
    code, err = run(["export", "shufflenet_v2_x0_5.cifar10", "--target", target, "--int8",
                     "--output", str(tmp_path)] + flags, capsys)
    assert code == 2 and message in err, err
    assert not list(tmp_path.iterdir())


def test_no_calibration_and_no_batchnorm_statistics(shared_data, capsys, tmp_path):
    """Without --calib, ZeroQ needs BN statistics; a BN-folded import has none: a clear error,
    never a silent fall-back to noise, and nothing written."""
    code, err = run(["export", "mobilenet_v1_x0_25", "--num-classes", "1001", "--weights",
                     str(shared_data / "models/mobilenet_v1_0.25_224_float.tflite"),
                     "--target", "onnx", "--int8", "--output", str(tmp_path)], capsys)
    assert code == 2 and "no BatchNorm running statistics" in err and "--calib PATH" in err
    assert not list(tmp_path.iterdir())


def test_missing_calibration_path(capsys, tmp_path):
    code, err = run(["export", "shufflenet_v2_x0_5.cifar10", "--target", "tflite", "--int8",
                     "--calib", str(tmp_path / "none"), "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and "no such file or folder" in err


def test_registry_is_keyed_by_target_name():
    import quant
    from edgebase.capabilities import TARGETS

    for name, target in TARGETS.items():
        if "int8" in target.precisions:
            ptq = quant.get_pass(name)
            assert ptq.TARGET == name and ptq.METHODS
            assert isinstance(ptq.QUANTIZES_PARENT, bool)  # deploy guidelines reads it
            assert ptq.make_options().method == ptq.METHODS[0]
    with pytest.raises(UnknownNameError, match="valid: " + ", ".join(sorted(TARGETS))):
        quant.get_pass("coreml")
    with pytest.raises(ConfigError):
        quant.get_pass("tflite").make_options(io="int4")


def test_ptq_methods_are_the_tables():
    """Each PTQ module accepts exactly the calibration methods the table offers (and the CLI
    lists), the table's first being the module's default."""
    import quant
    from edgebase.capabilities import TARGETS

    for name, target in TARGETS.items():
        if target.ptq is None:
            assert not target.calib_methods, name
            continue
        ptq = quant.get_pass(name)
        assert tuple(ptq.METHODS) == target.calib_methods, name
        assert ptq.make_options().method == target.calib_methods[0]
        for method in target.calib_methods:
            assert ptq.make_options(method).method == method
        with pytest.raises(ConfigError, match="valid: " + ", ".join(target.calib_methods)):
            ptq.make_options("no-such-method")


def test_int8_export_end_to_end(shared_data, capsys, tmp_path):
    """The promised command on a 32x32 net: uint8 TFLite with calibration and a held-out
    accuracy report, the fp32 parent beside it, everything recorded in the manifest."""
    import json

    import torch

    from edgebase.manifest import read_manifest
    from tests.export_helpers import nontrivial_
    from zoo import create_model

    torch.manual_seed(0)
    model, _ = create_model("shufflenet_v2_x0_5.cifar10")
    ckpt = tmp_path / "ckpt.pt"
    torch.save(nontrivial_(model).state_dict(), ckpt)
    data = shared_data / "cifar10.zip"
    out = tmp_path / "out"
    from deploy.cli import main

    # the old flag names (--io, --eval, --eval-limit) still work for one release
    code = main(["export", "shufflenet_v2_x0_5.cifar10", "--weights", str(ckpt),
                 "--target", "tflite", "--int8", "--io", "uint8", "--calib", str(data),
                 "--calib-size", "8", "--eval", str(data), "--eval-limit", "32",
                 "--threads", "1", "--output", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # progress goes to stderr; stdout is exactly the manifest a machine can parse
    assert "calibrat" in captured.err.lower()
    assert json.loads(captured.out)["precision"] == "int8"
    a = read_manifest(out / "shufflenet_v2_x0_5.cifar10.int8.tflite")
    assert a.precision == "int8" and a.passed
    assert a.inputs[0].dtype == "uint8" and a.inputs[0].scale and a.inputs[0].layout == "NHWC"
    names = [p["name"] for p in a.passes]
    assert names == ["export", "int8_ptq"]
    calib = a.passes[-1]["calibration"]
    assert calib["kind"] == "images" and calib["size"] == 8 and calib["path"] == str(data)
    acc = a.extra["accuracy"]
    assert acc["images"] == 32 and 0 <= acc["agreement"] <= 100
    # each step timed on its own: the converter is not charged with quantization
    seconds = a.extra["seconds"]
    assert {"calibration", "fp32 conversion", "fp32 validation", "quantization", "validation",
            "accuracy"} <= set(seconds) and all(v >= 0 for v in seconds.values())
    assert a.extra["conversion_seconds"] == pytest.approx(seconds["fp32 conversion"], abs=1e-3)
    assert a.extra["fp32_parent"]["file"] == "shufflenet_v2_x0_5.cifar10.tflite"
    assert (out / a.extra["fp32_parent"]["file"]).is_file()
    assert a.extra["size_ratio_vs_fp32"] > 2.5
    assert json.loads((out / "shufflenet_v2_x0_5.cifar10.int8.tflite.json").read_text())
    assert not [p for p in out.iterdir() if p.name.startswith(".") or ".failed" in p.name]


@pytest.mark.parametrize("target", ["onnx", "tflite", "openvino"])
def test_int8_screen_report(target, shared_data, capsys, tmp_path):
    """The table people read after `deploy export --int8` renders for every target's facts
    (OpenVINO's once recorded its bias correction in a shape the report could not print)."""
    from deploy.cli import main

    data = shared_data / "cifar10.zip"
    code = main(["export", "squeezenet1_1.cifar10", "--target", target, "--int8",
                 "--calib", str(data), "--calib-size", "8", "--data", str(data),
                 "--limit", "32", "--threads", "1", "--output", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = captured.out
    assert "bias corr.:" in out and "layers against the PyTorch parent" in out, out
    assert "accuracy:    32 held-out images" in out, out
    assert "time:        calibration " in out and "quantization " in out, out
