"""The ExecuTorch target's own modules: exporter (``exporters.executorch``), runner backend
(``device_runners.backends.executorch``) and int8 PTQ (``quant.executorch_ptq``).

Default run: one small random-init CNN (32x32, 10 classes) exported once in fp32, run
through the backend on real CIFAR-10 test images and compared with PyTorch; backend specs,
chunked batches, thread handling, one-line errors, the modules' conventions. Slow: the small
CNN in int8, and the trained CIFAR-10 checkpoints: fp32 exactness and int8 top-1 agreement /
cosine against fp32 on real test images.

ExecuTorch is an optional extra (``edgedeploy[executorch]``): without it the module skips.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("executorch", reason="the executorch extra is not installed")

# fp32 .pte vs PyTorch, max |logit difference|: measured 2.4e-6 .. 4.8e-6 on the CIFAR-10
# checkpoints (XNNPACK's f32 kernels; only the accumulation order differs)
FP32_MAX_ABS = 1e-4
INPUT = (1, 3, 32, 32)
REPO = Path(__file__).resolve().parents[1]


def real_images(n: int, seed: int = 0):
    """(NCHW float32 CIFAR-10 test images preprocessed for 32x32 models, labels)."""
    from deploy.validate import default_data
    from edgebase.images import ImageSet, preprocess
    from zoo import get_entry

    spec = dataclasses.replace(get_entry("shufflenet_v2_x0_5.cifar10").preprocess, layout="NCHW")
    path, split = default_data(32)
    images = ImageSet(path, split)
    idx = images.subset(n, seed=seed)
    x = np.stack([preprocess(images.load(i), spec) for i in idx]).astype(np.float32)
    return x, np.array([images.samples[i].label for i in idx])


def torch_logits(model, x):
    from deploy.validate import torch_logits as logits

    return logits(model, x)


def cosines(a, b):
    return np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def tiny_cnn():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, fp32 Conversion, images) for the small CNN."""
    import torch

    from exporters.executorch import torch_to_executorch

    out = tmp_path_factory.mktemp("et")
    model = tiny_cnn()
    x, _ = real_images(48)
    conversion = torch_to_executorch(model, torch.from_numpy(x[:1]), out / "tiny.pte")
    return model, conversion, x


@pytest.fixture(scope="module")
def tiny_int8(tiny):
    """(int8 facts, int8 path) of the small CNN, calibrated on 32 real images."""
    from quant import executorch_ptq

    model, conversion, x = tiny
    int8 = conversion.file.with_name("tiny.int8.pte")
    facts = executorch_ptq.quantize(conversion.file, int8, x[:32],
                                    executorch_ptq.make_options(), parent=model)
    return facts, int8


def test_fp32_matches_pytorch_on_real_images(tiny):
    from device_runners.backends.executorch import ExecuTorchBackend

    model, conversion, x = tiny
    x = x[32:]
    assert conversion.file.suffix == ".pte" and conversion.file.read_bytes()[4:6] == b"ET"
    assert not [p for p in conversion.file.parent.iterdir() if p.name.startswith(".")]
    with ExecuTorchBackend(conversion.file, threads=1) as backend:
        y = backend.run(x)[0]
    ref = torch_logits(model, x)
    assert np.abs(y - ref).max() <= FP32_MAX_ABS
    g = conversion.graph
    assert g["delegate"] == "XnnpackBackend" and g["delegated_subgraphs"] == 1
    assert g["non_delegated_ops"] == {} and g["op_count"] == g["delegated_op_count"]
    assert g["op_histogram"]["aten.convolution"] == 3
    assert conversion.details["lower_seconds"] > 0


@pytest.mark.slow  # a second XNNPACK lowering: about 10 s more
def test_int8_program_is_delegated_and_follows_fp32(tiny, tiny_int8):
    from device_runners.backends.executorch import ExecuTorchBackend

    model, _, x = tiny
    facts, int8 = tiny_int8
    x = x[32:]
    assert facts["calibration_images"] == 32 and facts["method"] == "image-percentile"
    assert facts["input_range"] is None  # none asked for
    assert facts["fully_integer"] and facts["float_ops"] == {}
    hist = facts["op_histogram"]
    assert hist.get("quantized_decomposed.dequantize_per_channel", 0) == 4  # 3 convs + linear
    with ExecuTorchBackend(int8, threads=1) as backend:
        assert backend.input.dtype == "float32" and backend.outputs[0].dtype == "float32"
        q = backend.run(x)[0]
    # a random-init net's top-1 flips with sub-pixel noise: check the logits' direction only
    assert cosines(q, torch_logits(model, x)).min() > 0.98


def test_backend_specs_batches_and_bind(tiny):
    from device_runners.backends.executorch import ExecuTorchBackend

    _, conversion, x = tiny
    with ExecuTorchBackend(conversion.file, threads=1) as backend:
        assert backend.name == "executorch" and backend.version
        (inp,), (out,) = backend.inputs, backend.outputs
        assert (inp.name, inp.shape, inp.dtype, inp.layout) == ("input", INPUT, "float32", "NCHW")
        assert (out.shape, out.dtype) == ((1, 10), "float32")
        assert backend.declared_batch() == 1
        assert "threadpool of 1 threads" in backend.provider
        assert backend.describe()["inference_precision"] == "f32"
        whole = backend.run(x[:5])[0]  # the static memory plan runs batch 5 as 5 x 1
        assert whole.shape == (5, 10)
        assert np.array_equal(whole[3:4], backend.run(x[3:4])[0])
        call = backend.bind(x[:1])
        first = call()[0].numpy().copy()
        assert np.array_equal(first, whole[:1])
        from edgebase.errors import ShapeError
        with pytest.raises(ShapeError):
            backend.bind(x[:2])
        with pytest.raises(ShapeError):
            backend.run(x[:, :, :16])


def test_threadpool_is_process_wide(tiny):
    from edgebase.errors import ConfigError
    from device_runners.backends.executorch import ExecuTorchBackend

    _, conversion, x = tiny
    first = ExecuTorchBackend(conversion.file, threads=1)
    same = ExecuTorchBackend(conversion.file, threads=1)  # same size: no resize, both usable
    with pytest.raises(ConfigError, match="process-wide"):
        ExecuTorchBackend(conversion.file, threads=2)
    same.close()
    first.run(x[:1])
    first.close()
    with ExecuTorchBackend(conversion.file, threads=2) as two:  # nothing loaded: the pool is resized
        assert "threadpool of 2 threads" in two.provider
        two.run(x[:2])


def test_one_line_errors(tiny, tmp_path):
    import torch

    from edgebase.errors import ConfigError, ModelFileError
    from device_runners.backends.executorch import ExecuTorchBackend
    from exporters.executorch import torch_to_executorch
    from quant import executorch_ptq

    model, conversion, _ = tiny
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not an ExecuTorch program"):
        ExecuTorchBackend(bad)
    truncated = tmp_path / "cut.pte"
    truncated.write_bytes(conversion.file.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="not a loadable ExecuTorch program"):
        ExecuTorchBackend(truncated)
    with pytest.raises(ConfigError, match="precision hint"):
        ExecuTorchBackend(conversion.file, precision_hint="bf16")
    example = torch.zeros(INPUT)
    with pytest.raises(ConfigError, match="fp16"):
        torch_to_executorch(model, example, tmp_path / "m.pte", precision="fp16")
    with pytest.raises(ConfigError, match=r"\.pte"):
        torch_to_executorch(model, example, tmp_path / "m.onnx")
    with pytest.raises(ConfigError, match="parent"):
        executorch_ptq.quantize(conversion.file, tmp_path / "q.pte", np.zeros((1, *INPUT[1:])))
    with pytest.raises(ConfigError, match="--io"):
        executorch_ptq.make_options(io="uint8")
    with pytest.raises(ConfigError, match="valid: image-percentile, minmax, histogram"):
        executorch_ptq.make_options("entropy")
    assert not list(tmp_path.glob(".*"))  # nothing half-written left behind


def test_modules_follow_the_other_targets_conventions():
    """Same shapes as the other three targets, so one capability-table entry can wire them."""
    import inspect

    from device_runners.backends.executorch import SUFFIXES, ExecuTorchBackend
    from device_runners.backends.onnxruntime import OnnxRuntimeBackend
    from exporters.executorch import torch_to_executorch
    from exporters.onnx import torch_to_onnx
    from quant import executorch_ptq, onnx_ptq

    def params(fn):
        return list(inspect.signature(fn).parameters)

    assert params(ExecuTorchBackend.__init__) == params(OnnxRuntimeBackend.__init__)
    assert ExecuTorchBackend.hints == ("f32", "auto") and SUFFIXES == (".pte",)
    assert params(torch_to_executorch)[:4] == params(torch_to_onnx)[:4]  # model example path precision
    assert executorch_ptq.TARGET == "executorch"
    for name in ("make_options", "quantize", "layer_names", "target_layers"):
        assert params(getattr(executorch_ptq, name))[:4] == params(getattr(onnx_ptq, name))[:4]
    assert "parent" in params(executorch_ptq.quantize)


def test_modules_import_no_framework_until_used():
    """Importing the three modules pulls in neither torch nor executorch (the runner's other
    backends stay torch-free; this one imports its runtime only when a .pte is loaded)."""
    import subprocess
    import sys

    code = ("import sys, device_runners.backends.executorch, exporters.executorch, "
            "quant.executorch_ptq; heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'executorch', 'torchao')); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_release_bundle_of_a_pte_verifies(tiny, tmp_path):
    """A .pte through the release's assembly (copied, measured with runner eval/bench, card,
    checksums, zip) and runner verify on it: loads, specs, accuracy re-measured exactly; the
    card names the [executorch] extra and says it loads PyTorch; no phone-app sections (those
    are the .tflite format's own)."""
    import json

    from deploy.release import Built, ReleaseConfig, assemble
    from device_runners.verify import verify
    from edgebase.manifest import Artifact, file_facts, read_manifest, write_manifest
    from zoo import get_entry
    from zoo.labels import labels

    _, conversion, _ = tiny
    src = tmp_path / "build" / "tiny.pte"
    src.parent.mkdir()
    src.write_bytes(conversion.file.read_bytes())
    entry = get_entry("shufflenet_v2_x0_5.cifar10")
    from device_runners.backends.executorch import ExecuTorchBackend

    with ExecuTorchBackend(src, threads=1) as backend:
        inputs, outputs = tuple(backend.inputs), tuple(backend.outputs)
    facts = file_facts(src)
    art = Artifact(file=src.name, format="executorch", precision="fp32",
                   sha256=facts["sha256"], size_bytes=facts["size_bytes"],
                   model={"name": "tiny", "arch": "tiny_cnn",
                          "weights": {"trained": False, "sha256": "0" * 64}},
                   inputs=inputs, outputs=outputs, preprocess=entry.preprocess,
                   labels=labels(entry.labels), validation={"status": "passed"})
    write_manifest(art, src)
    data = default_data_zip()
    cfg = ReleaseConfig(model="tiny", targets=("executorch",), version="0.1.0", eval_data=data,
                        eval_limit=40, output=tmp_path / "out", threads=1, bench_runs=3,
                        bench_warmup=1)
    b = assemble([Built(src, art, False)], cfg, log=lambda *_: None)
    folder, zipped = b.folder, b.zip
    report = verify(zipped, data=data, tolerance=0.0, threads=1)
    assert report.ok, [str(p) for p in report.problems]
    (model,) = json.loads((folder / "manifest.json").read_text())["models"]
    assert (model["format"], model["runtime"], model["path"]) == ("executorch", "executorch",
                                                                  "tiny.pte")
    assert report.models[0]["top1"] == pytest.approx(model["accuracy"]["top1"])
    assert "tflite_metadata" not in model and [p.get("name") for p in model["passes"]] == []
    own = read_manifest(folder / model["path"])
    assert [b["p50_ms"] for b in own.benchmarks] == [model["latency"]["p50_ms"]]
    card = (folder / "README.md").read_text()
    assert "`pip install 'edgedeploy[executorch]'`; executorch loads PyTorch" in card
    assert "## Android" not in card and "## iOS" not in card
    flipped = tmp_path / "flipped" / folder.name
    import shutil

    shutil.copytree(folder, flipped)
    raw = bytearray((flipped / "tiny.pte").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (flipped / "tiny.pte").write_bytes(bytes(raw))
    assert verify(flipped, load=False).bad_files() == ["tiny.pte"]


@pytest.mark.slow  # two XNNPACK lowerings of a real checkpoint: minutes
def test_deploy_release_of_executorch_fp32_and_int8_verifies(tmp_path, capsys):
    """`deploy release --target executorch --int8` of the trained ShuffleNetV2 x0.5, then
    `runner verify` of its zip with the recorded images: both .pte files load, match their
    specs and re-measure the recorded top-1 exactly."""
    import json

    from deploy.cli import main
    from device_runners.verify import verify

    data = default_data_zip()
    out = tmp_path / "release"
    assert main(["release", "shufflenet_v2_x0_5.cifar10", "--target", "executorch", "--int8",
                 "--calib", str(data), "--data", str(data), "--limit", "200", "--threads", "1",
                 "--bench-runs", "5", "--output", str(out), "--json", "-"]) == 0
    bundle = json.loads(capsys.readouterr().out)
    assert [(m["format"], m["precision"]) for m in bundle["models"]] == [
        ("executorch", "fp32"), ("executorch", "int8")]
    assert all(m["validation"]["status"] == "passed" for m in bundle["models"])
    report = verify(bundle["zip"], data=data, tolerance=0.0, threads=1)
    assert report.ok, [str(p) for p in report.problems]
    assert [m["top1"] for m in report.models] == pytest.approx(
        [m["accuracy"]["top1"] for m in bundle["models"]])


# ---- trained CIFAR-10 checkpoints, real test images --------------------------------------
CHECKPOINTS = ("shufflenet_v2_x0_5.cifar10", "mobilenet_v2_x0_5.cifar10")


@pytest.mark.slow
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_checkpoint_fp32_and_int8(name, tmp_path):
    import torch

    from deploy.export import load_source
    from device_runners.backends.executorch import ExecuTorchBackend
    from exporters.executorch import torch_to_executorch
    from quant import executorch_ptq
    from quant.calibration import load_calibration
    from deploy.int8_stage import input_range

    source = load_source(name)
    pre = source.entry.preprocess
    x, labels = real_images(200, seed=1)
    ref = torch_logits(source.model, x)
    fp32 = torch_to_executorch(source.model, torch.from_numpy(x[:1]), tmp_path / f"{name}.pte")
    calib = load_calibration(default_data_zip(), pre, size=300, seed=0)  # train split
    options = executorch_ptq.make_options(input_range=input_range(pre))
    facts = executorch_ptq.quantize(fp32.file, tmp_path / f"{name}.int8.pte", calib, options,
                                    parent=source.model)
    with ExecuTorchBackend(fp32.file, threads=1) as backend:
        y = backend.run(x)[0]
    with ExecuTorchBackend(tmp_path / f"{name}.int8.pte", threads=1) as backend:
        q = backend.run(x)[0]
    assert np.abs(y - ref).max() <= FP32_MAX_ABS
    assert (y.argmax(1) == ref.argmax(1)).all()
    assert facts["calibration_images"] == 300 and facts["input_range"] is not None
    agreement = (q.argmax(1) == y.argmax(1)).mean()
    assert agreement >= 0.95, agreement
    assert cosines(q, y).min() >= 0.9
    # int8 keeps the parent's accuracy on these images within a few points
    assert (q.argmax(1) == labels).mean() >= (ref.argmax(1) == labels).mean() - 0.03
    if name.startswith("shufflenet"):  # channel split + global mean stay outside XNNPACK
        assert set(facts["float_ops"]) == {"aten.split_with_sizes_copy", "aten.mean.dim"}


def default_data_zip():
    from deploy.validate import default_data

    return default_data(32)[0]


# what importing torchao logs in a CPU-only install (edgebase.executorch_logs drops these)
TORCHAO_NOISE = ("torchao/_C_mxfp8", "torchao/_C_cutlass_90a", "KernelPreference")


def fresh_process(args: list[str], cwd) -> subprocess.CompletedProcess:
    """``python args`` in a new interpreter (torchao logs at its first import only)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)


def test_export_stderr_has_no_torchao_import_noise(tmp_path):
    """A fresh process converts the small CNN to .pte (the exporter imports executorch and,
    with it, torchao) and runs it: it works, and stderr has none of torchao's lines about its
    CUDA kernels or torch's notice about torchao's enum."""
    code = ("import numpy as np, torch\n"
            "from tests.test_executorch import tiny_cnn\n"
            "from exporters.executorch import torch_to_executorch\n"
            "from device_runners.backends.executorch import ExecuTorchBackend\n"
            f"c = torch_to_executorch(tiny_cnn(), torch.zeros({INPUT}), {str(tmp_path / 't.pte')!r})\n"
            "with ExecuTorchBackend(c.file, threads=1) as b:\n"
            f"    assert b.run(np.zeros({INPUT}, np.float32))[0].shape == (1, 10)\n")
    run = fresh_process(["-c", code], REPO)
    assert run.returncode == 0, run.stderr
    assert not [n for n in TORCHAO_NOISE if n in run.stderr], run.stderr


@pytest.mark.slow  # three fresh processes, one a zoo model's XNNPACK lowering: minutes here
def test_cli_export_runner_and_quantizer_stderr_have_no_torchao_import_noise(tmp_path):
    """`deploy export squeezenet1_1.cifar10 --target executorch`, `runner bench` on its file
    and the PT2E quantizer's import, each in its own process (each imports torchao first)."""
    out = tmp_path / "out"
    export = fresh_process(["-m", "deploy.cli", "export", "squeezenet1_1.cifar10", "--target",
                            "executorch", "--threads", "1", "--output", str(out)], tmp_path)
    assert export.returncode == 0, export.stderr
    assert "converting squeezenet1_1.cifar10 to executorch fp32" in export.stderr  # progress stays
    bench = fresh_process(["-m", "device_runners.cli", "bench", "--runs", "3", "--warmup", "1",
                           "--threads", "1", str(out / "squeezenet1_1.cifar10.pte")], tmp_path)
    assert bench.returncode == 0, bench.stderr
    quantizer = fresh_process(["-c", "from quant.executorch_ptq import _pt2e; _pt2e()"], REPO)
    assert quantizer.returncode == 0, quantizer.stderr
    for run in (export, bench, quantizer):
        assert not [n for n in TORCHAO_NOISE if n in run.stderr], run.stderr
