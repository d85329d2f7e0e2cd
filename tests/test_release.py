"""``deploy release`` end to end on a small model, then ``runner verify`` on what it wrote.

The default-suite test exports one target (TFLite, the mobile format) of a 32x32 ShuffleNet V2
x0.5; the slow test releases every target with int8 where available and rebuilds in fresh
processes to compare model-file hashes.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgebase.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CIFAR = DATA / "cifar10.zip"
pytestmark = pytest.mark.skipif(not CIFAR.exists(), reason=f"{DATA} is not there")


def small_model(tmp_dir: Path) -> dict:
    """A trained ``*.cifar10`` zoo model when one is packaged; else ShuffleNet V2 x0.5 .cifar10
    with seeded random weights saved as a checkpoint (so that two builds see the same parent)."""
    import torch

    from zoo import create_model, get_entry, list_models

    trained = [n for n in list_models("*.cifar10") if get_entry(n).trained]
    if trained:
        return {"model": min(trained, key=lambda n: ("shufflenet_v2_x0_5" not in n, n))}
    name = "shufflenet_v2_x0_5.cifar10"
    torch.manual_seed(0)
    model, _ = create_model(name)
    torch.save(model.state_dict(), tmp_dir / "seeded.pt")
    return {"model": name, "weights": tmp_dir / "seeded.pt"}


@pytest.fixture(scope="module")
def release_result(tmp_path_factory):
    import torch

    from deploy.release import ReleaseConfig, release

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("release")
    cfg = ReleaseConfig(**small_model(tmp_path_factory.mktemp("weights")), targets=("tflite",), version="2.1.0", eval_data=CIFAR,
                        eval_limit=100, output=out, threads=1, bench_runs=5, bench_warmup=1)
    return cfg, release(cfg, log=lambda *_: None)


@pytest.fixture(scope="module")
def released(release_result):
    cfg, bundle = release_result
    return cfg, bundle.folder, bundle.zip


def test_release_returns_the_bundle_it_wrote(release_result):
    """The stage's result is what is on disk: manifest.json, the zip, and each model file's
    Artifact as its manifest in the bundle says (with the latency measured there)."""
    _, bundle = release_result
    assert bundle.manifest == json.loads((bundle.folder / "manifest.json").read_text())
    assert bundle.zip.is_file() and bundle.zip.name == bundle.folder.name + ".zip"
    assert sorted(bundle.files) == sorted(p.name for p in bundle.folder.iterdir()
                                          if p.name != "manifest.json")
    assert [a.file for a in bundle.artifacts] == [m["path"] for m in bundle.manifest["models"]]
    for art in bundle.artifacts:
        on_disk = json.loads((bundle.folder / (art.file + ".json")).read_text())
        assert json.loads(json.dumps(art.to_dict())) == on_disk
        assert art.passed and art.benchmarks[-1]["tool"] == "deploy release"
    assert bundle.to_dict()["zip"] == str(bundle.zip)


def test_release_verifies_with_accuracy(released):
    from device_runners.verify import verify

    _, folder, zipped = released
    assert verify(folder).ok
    report = verify(zipped, data=CIFAR, tolerance=0.0, threads=1)  # same images, same runtime: exact
    assert report.ok, [str(p) for p in report.problems]
    m = json.loads((folder / "manifest.json").read_text())
    assert report.models[0]["top1"] == pytest.approx(m["models"][0]["accuracy"]["top1"])


def test_bundle_contents(released):
    from edgebase.tflite_metadata import read_metadata

    cfg, folder, _ = released
    m = json.loads((folder / "manifest.json").read_text())
    assert m["schema"] == "edgedeploy.bundle/1" and m["version"] == "2.1.0"
    assert folder.name == f"{m['name']}-2.1.0"
    listed = sorted(f["path"] for f in m["files"])
    on_disk = sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")
    assert listed == on_disk
    model = m["models"][0]
    assert model["format"] == "tflite" and model["tflite_metadata"]
    assert model["input"]["layout"] == "NHWC" and model["input"]["shape"] == [1, 32, 32, 3]
    assert model["validation"]["status"] == "passed"
    labels = (folder / "labels.txt").read_text().splitlines()
    meta = read_metadata(folder / model["path"])
    assert meta["labels"] == labels and len(labels) == 10
    assert meta["mean"] == pytest.approx([255 * x for x in m["preprocess"]["mean"]], rel=1e-6)
    assert meta["std"] == pytest.approx([255 * x for x in m["preprocess"]["std"]], rel=1e-6)


def test_every_flipped_byte_is_named(released, tmp_path):
    from device_runners.verify import verify

    _, folder, _ = released
    files = [f["path"] for f in json.loads((folder / "manifest.json").read_text())["files"]]
    assert len(files) == 4  # model, its manifest, labels.txt, README.md
    for rel in files:
        root = tmp_path / rel / folder.name
        shutil.copytree(folder, root)
        data = bytearray((root / rel).read_bytes())
        data[len(data) // 3] ^= 0x80
        (root / rel).write_bytes(bytes(data))
        report = verify(root, load=False)
        assert report.bad_files() == [rel]
    # through the CLI: non-zero exit, the file named on stderr
    proc = subprocess.run([sys.executable, "-m", "device_runners.cli", "verify", str(root),
                           "--no-load"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 3 and rel in proc.stderr and f"FAILED {rel}" in proc.stdout


def test_zip_entries_are_relative(released):
    _, folder, zipped = released
    with zipfile.ZipFile(zipped) as zf:
        names = zf.namelist()
        for name in names:
            parts = name.split("/")
            assert not name.startswith("/") and ".." not in parts and "\\" not in name
            assert parts[0] == folder.name and len(parts) == 2
        assert sorted(n.split("/")[1] for n in names) == sorted(p.name for p in folder.iterdir())
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_model_card_numbers_are_the_measured_ones(released):
    _, folder, _ = released
    m = json.loads((folder / "manifest.json").read_text())
    card = (folder / "README.md").read_text()
    model = m["models"][0]
    acc, lat = model["accuracy"], model["latency"]
    assert acc["images"] == 100 and acc["data"] == "cifar10.zip" and lat["runs"] == 5
    assert f"| {acc['top1']:.2f}% | {acc['top5']:.2f}% | {lat['mean_ms']:.3f} / {lat['p50_ms']:.3f} ms |" in card
    assert acc["command"] in card and lat["command"] in card
    assert m["measured_on"]["cpu"] in card
    assert "not measured" not in card
    for needle in ("import TensorFlowLite", "org.tensorflow.lite.Interpreter", "runner verify",
                   "## Preprocessing", "`pip install 'edgedeploy[litert]'`; no PyTorch needed."):
        assert needle in card
    # the bundle's latency is also the file's own benchmark record
    from edgebase.manifest import read_manifest

    (bench,) = read_manifest(folder / model["path"]).benchmarks
    assert bench["tool"] == "deploy release" and bench["p50_ms"] == lat["p50_ms"]
    assert (bench["threads"], bench["machine"]) == (lat["threads"], m["measured_on"])


def test_second_release_reuses_and_is_identical(released, tmp_path):
    from deploy.release import release

    cfg, folder, _ = released
    shutil.copytree(cfg.output / "build", tmp_path / "build")
    again = release(cfg.__class__(**{**cfg.__dict__, "output": tmp_path, "eval_data": None}),
                    log=lambda *_: None).folder
    m1 = json.loads((folder / "manifest.json").read_text())["models"][0]
    m2 = json.loads((again / "manifest.json").read_text())["models"][0]
    assert m2["reused"] and not m1["reused"]
    # same inputs, same bytes: the packed metadata and labels are deterministic too
    assert (m2["sha256"], m2["source_sha256"]) == (m1["sha256"], m1["source_sha256"])
    assert (again / "labels.txt").read_bytes() == (folder / "labels.txt").read_bytes()
    assert m2["accuracy"] is None and "not measured" in (again / "README.md").read_text()


def test_one_reuse_rule(released, tmp_path):
    """deploy.reuse: the build folder's file is reused for the same parent and export settings
    only while its bytes match; other options, int8 or a changed byte rebuild."""
    import dataclasses

    from deploy.export import ExportConfig, load_source
    from deploy.reuse import find_reusable

    cfg, _, _ = released
    build = tmp_path / "build"
    shutil.copytree(cfg.output / "build", build)
    source = load_source(cfg.model, weights=cfg.weights)
    config = ExportConfig(target="tflite", output_dir=build, force=True)
    art = find_reusable(source, config)
    assert art is not None and art.passed and (build / art.file).is_file()
    assert find_reusable(source, dataclasses.replace(config, options={"rewrite": False})) is None
    assert find_reusable(source, dataclasses.replace(config, batch=2)) is None
    assert find_reusable(source, dataclasses.replace(config, precision="int8")) is None
    pre = dataclasses.replace(source.entry.preprocess, mean=(0.5, 0.5, 0.5))
    other = dataclasses.replace(source, entry=dataclasses.replace(source.entry, preprocess=pre))
    assert find_reusable(other, config) is None  # another parent (its preprocessing)
    data = bytearray((build / art.file).read_bytes())
    data[len(data) // 2] ^= 0x01
    (build / art.file).write_bytes(bytes(data))
    assert find_reusable(source, config) is None


def test_release_option_errors():
    from deploy.cli import main
    from deploy.release import ReleaseConfig

    with pytest.raises(ConfigError, match="--int8 needs --calib"):
        ReleaseConfig(model="x", int8=True)
    with pytest.raises(ConfigError, match="--version"):
        ReleaseConfig(model="x", version="1.0/../x")
    with pytest.raises(ConfigError, match="--int8-io uint8 applies to int8 files of tflite"):
        ReleaseConfig(model="x", targets=("onnx",), int8=True, int8_io="uint8", calib=Path("."))
    with pytest.raises(ConfigError, match="valid: float, int8, uint8"):
        ReleaseConfig(model="x", int8=True, int8_io="uint16", calib=Path("."))
    assert main(["release", "shufflenet_v2_x0_5", "--eval", "/nonexistent.zip"]) == 2


def test_labels_file_for_models_the_zoo_cannot_name(tmp_path):
    from edgebase.manifest import Artifact, TensorSpec
    from deploy.release import release_labels

    art = Artifact(file="m.onnx", format="onnx", precision="fp32", sha256="", size_bytes=0,
                   model={"name": "m"}, inputs=(), labels=(),
                   outputs=(TensorSpec(name="logits", shape=(1, 3), dtype="float32"),))
    with pytest.raises(ConfigError, match="pass --labels FILE"):
        release_labels(art, None)
    (tmp_path / "l.txt").write_text("cat\ndog\n")
    with pytest.raises(ConfigError, match="2 names for 3 classes"):
        release_labels(art, tmp_path / "l.txt")
    (tmp_path / "l.txt").write_text("cat\ndog\nbird\n")
    assert release_labels(art, tmp_path / "l.txt") == ["cat", "dog", "bird"]
    named = art.replace(labels=("a", "b", "c"))
    with pytest.raises(ConfigError, match="contradicts"):
        release_labels(named, tmp_path / "l.txt")


def test_plan_names_what_a_target_does_not_offer():
    from edgebase.errors import UnknownNameError
    from deploy.release import ReleaseConfig, plan
    from edgebase.capabilities import get_target

    pairs, skipped = plan(ReleaseConfig(model="x", targets=("tflite", "onnx"), fp16=True))
    assert ("tflite", "fp32") in pairs and ("onnx", "fp32") in pairs
    for target in ("tflite", "onnx"):
        offered = "fp16" in get_target(target).precisions
        assert ((target, "fp16") in pairs) == offered
        assert any(s["target"] == target and s["reason"] for s in skipped) != offered
    with pytest.raises(UnknownNameError, match="valid: .*tflite"):
        plan(ReleaseConfig(model="x", targets=("tfl",)))


def test_phone_snippets_follow_the_quantized_input_dtype():
    """A uint8 int8-TFLite input is clamped to 0..255 (UInt8 in Swift), an int8 one to
    -128..127; uint8 scores are read unsigned."""
    from deploy.tflite_app_guide import render

    def card(dtype):
        q = {"dtype": dtype, "scale": 0.0187, "zero_point": 114 if dtype == "uint8" else -14,
             "layout": "NHWC", "shape": [1, 32, 32, 3]}
        out = {"dtype": dtype, "scale": 0.1, "zero_point": 3, "shape": [1, 10]}
        m = {"models": [{"format": "tflite", "precision": "int8", "path": "m.int8.tflite",
                         "input": q, "outputs": [out]}],
             "preprocess": {"crop": 32, "resize": 32, "mean": [0.5] * 3, "std": [0.25] * 3},
             "labels": "labels.txt", "num_classes": 10}
        kotlin, swift = render(m, m["models"]).split("## iOS")
        return kotlin, swift

    kotlin, swift = card("uint8")
    assert "maxOf(0, minOf(255," in kotlin and "(out[0][it].toInt() and 0xFF)" in kotlin
    assert "UInt8(max(0, min(255," in swift and "bindMemory(to: UInt8.self)" in swift
    kotlin, swift = card("int8")
    assert "maxOf(-128, minOf(127," in kotlin and "toInt() and 0xFF" not in kotlin
    assert "Int8(max(-128, min(127," in swift and "UInt8" not in swift


def test_release_cli_json_rebuilds_the_same_parent(released, capsys):
    """`deploy release --json`: stdout is the bundle manifest (progress on stderr). The same
    parent, version and output rebuild the bundle without --force, reusing the build."""
    from deploy.cli import main

    cfg, folder, _ = released
    argv = ["release", cfg.model, "--target", "tflite", "--version", cfg.version,
            "--data", str(CIFAR), "--limit", "100", "--output", str(cfg.output),
            "--threads", "1", "--bench-runs", "5", "--json"]
    if cfg.weights:
        argv += ["--weights", str(cfg.weights)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bundle"] == str(folder) and out["version"] == cfg.version
    (model,) = out["models"]
    assert model["reused"] is True and model["accuracy"]["images"] == 100
    # the export stage's name, not the 0.1.0 <model>-<precision> one
    assert model["path"] == f"{out['name']}.tflite"
