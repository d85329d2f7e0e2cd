"""`deploy export shufflenet_v2 --target tflite --int8`, the command the product was promised
with: the bare name is the trained CIFAR-10 entry (said on the first line), calibration is the
packaged training images (said on screen and recorded), and the int8 file keeps fp32's top-1.

The default run takes the same path on ONNX with 20 calibration images (fast); the exact
command with its 10,000-image accuracy check is marked slow."""
from __future__ import annotations

import json
import time

import pytest

FIRST_LINE = ("shufflenet_v2 -> shufflenet_v2_x0_5.cifar10: the family's default trained "
              "entry (85.42 % top-1 on cifar10; shufflenet_v2_x1_0 is the untrained "
              "ImageNet-shape model)")


def _export(argv, capsys):
    from deploy.cli import main

    code = main(["export", "shufflenet_v2"] + argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured


def _check_manifest(path, images):
    from edgebase.manifest import read_manifest

    a = read_manifest(path)
    assert a.passed and a.precision == "int8"
    assert a.model["name"] == "shufflenet_v2_x0_5.cifar10" and a.model["weights"]["trained"]
    c = a.passes[-1]["calibration"]
    assert c["kind"] == "packaged" and c["source"] == "packaged cifar10 train"
    assert c["images"] == images and c["classes"] == 10 and c["file"] == "cifar10-train-300.zip"
    assert "latency_only" not in a.extra
    return a


def test_promised_path_fast(tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    out = tmp_path / "out"
    captured = _export(["--target", "onnx", "--int8", "--calib-size", "20", "--threads", "1",
                        "--output", str(out)], capsys)
    err = captured.err.splitlines()
    assert err[0] == FIRST_LINE
    assert any(line.startswith("calibration: no --calib given: 20 packaged cifar10 train "
                               "images, 10 classes balanced") for line in err), err
    assert "int8:" in captured.out and "20 packaged cifar10 train images" in captured.out
    _check_manifest(out / "shufflenet_v2_x0_5.cifar10.int8.onnx", 20)


@pytest.mark.slow
def test_promised_command_keeps_fp32_top1_on_10000_images(tmp_path, capsys, shared_data):
    """The exact command, then `runner eval` with no flags on all 10,000 test images: the
    int8 file within 0.5 point of the fp32 file."""
    from device_runners.cli import main as runner

    out = tmp_path / "out"
    t0 = time.perf_counter()
    captured = _export(["--target", "tflite", "--int8", "--output", str(out)], capsys)
    seconds = time.perf_counter() - t0
    assert captured.err.splitlines()[0] == FIRST_LINE
    _check_manifest(out / "shufflenet_v2_x0_5.cifar10.int8.tflite", 300)
    top1 = {}
    for name in ("shufflenet_v2_x0_5.cifar10.tflite", "shufflenet_v2_x0_5.cifar10.int8.tflite"):
        assert runner(["eval", str(out / name), "--data", str(shared_data / "cifar10.zip"),
                       "--no-progress", "--json", str(tmp_path / f"{name}.json")]) == 0
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert result["images"] == 10000 and result["warnings"] == []
        top1[name] = result["top1"]
    fp32, int8 = top1.values()
    print(f"export {seconds:.1f} s; top-1 fp32 {fp32:.2f} %, int8 {int8:.2f} %")
    assert fp32 - int8 <= 0.5
