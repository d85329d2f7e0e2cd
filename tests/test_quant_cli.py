"""`deploy export --int8` flags: one-line errors for combinations that cannot work, raised
before anything slow runs; and the PTQ registry keyed by target name."""
from __future__ import annotations

import pytest

from deploy.errors import ConfigError, UnknownNameError


def run(argv, capsys):
    from deploy.cli import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("flags, message", [
    (["--calib", "x"], "--calib needs --int8"),
    (["--max-drop", "1"], "--max-drop needs --int8"),
    (["--io", "uint8"], "--io needs --int8"),
    (["--int8", "--fp16"], "--int8 and --fp16 exclude each other"),
    (["--int8", "--max-drop", "0.5"], "--max-drop needs --eval PATH"),
    (["--int8", "--calib-size", "0"], "--calib-size must be >= 1"),
    (["--int8", "--max-drop", "-1", "--eval", "x"], "--max-drop must be >= 0"),
])
def test_flag_errors(flags, message, capsys, tmp_path):
    code, err = run(["export", "shufflenet_v2_x0_5.cifar10", "--target", "onnx",
                     "--output", str(tmp_path)] + flags, capsys)
    assert code == 2 and message in err and "\n" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target, flags, message", [
    ("onnx", ["--io", "uint8"], "onnx int8 models take float input"),
    ("openvino", ["--io", "int8"], "OpenVINO int8 models take float input"),
    ("onnx", ["--calib-method", "ema"], "valid: minmax, percentile, entropy"),
    ("tflite", ["--calib-method", "entropy"], "valid: minmax, ema"),
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
    from exporters.capabilities import TARGETS

    for name, target in TARGETS.items():
        if "int8" in target.precisions:
            ptq = quant.get_pass(name)
            assert ptq.TARGET == name and ptq.METHODS
            assert ptq.make_options().method == ptq.METHODS[0]
    with pytest.raises(UnknownNameError, match="valid: onnx, openvino, tflite"):
        quant.get_pass("coreml")
    with pytest.raises(ConfigError):
        quant.get_pass("tflite").make_options(io="int4")
