"""Manifests written by `deploy export`: recomputed facts, atomicity, failed exports."""
from __future__ import annotations

import dataclasses
import json

import pytest

from deploy.cli import main
from edgebase.errors import ConversionError, ValidationError
from edgebase.files import sha256_file
from edgebase.manifest import read_manifest
from edgebase.capabilities import TARGETS, Tolerance, get_target
from tests.export_helpers import CLASSES, FAST, SMALL, checkpoint, exported


@pytest.mark.parametrize("model_name, target_name, precision", FAST,
                         ids=["-".join(c) for c in FAST])
def test_manifest_facts_recomputed_from_the_files(model_name, target_name, precision):
    import zoo

    artifact, out = exported(model_name, target_name, precision)
    m = read_manifest(out / artifact.file)
    assert m == artifact, "the manifest on disk is the returned Artifact"
    path = out / m.file
    assert m.sha256 == sha256_file(path) and m.size_bytes == path.stat().st_size
    suffixes = {p.suffix for p in out.iterdir() if not p.name.endswith(".json")}
    assert suffixes == {get_target(target_name).suffix, *get_target(target_name).companions}
    for comp in m.companions:
        cp = out / comp["file"]
        assert comp["sha256"] == sha256_file(cp) and comp["size_bytes"] == cp.stat().st_size
    model, entry = zoo.create_model(model_name, num_classes=CLASSES, input_size=SMALL)
    assert m.model["params"] == sum(p.numel() for p in model.parameters())
    assert m.model["num_classes"] == CLASSES and m.model["input_size"] == SMALL
    assert m.model["weights"]["sha256"] == sha256_file(checkpoint(model_name))
    assert m.model["weights"]["trained"] is True
    assert m.preprocess.crop == SMALL and m.preprocess.mean == entry.preprocess.mean
    assert m.passes[0]["name"] == "export" and m.passes[0]["target"] == target_name
    assert "torch" in m.toolchain and all(m.toolchain.values())
    assert m.labels == () or len(m.labels) == CLASSES


def test_onnx_file_carries_the_model_metadata():
    import onnx

    artifact, out = exported("squeezenet1_1", "onnx", "fp32")
    props = {p.key: p.value for p in onnx.load(str(out / artifact.file)).metadata_props}
    assert json.loads(props["edgedeploy.model"])["name"] == "squeezenet1_1"
    assert json.loads(props["edgedeploy.preprocess"])["crop"] == SMALL
    assert artifact.passes[0]["simplify"]["kept"] in (True, False)


def test_random_init_is_recorded(tmp_path, shared_data):
    """No checkpoint: the manifest says the weights are random and why top-1 means little."""
    from deploy.export import ExportConfig, export, load_source

    source = load_source("squeezenet1_1", num_classes=CLASSES, input_size=SMALL)
    a = export(source, ExportConfig(target="openvino", output_dir=tmp_path, threads=1))
    assert a.model["weights"]["trained"] is False and "random-init" in a.validation["note"]
    assert read_manifest(tmp_path / a.file).model["weights"]["source"] == "random init"


def test_failed_validation_ships_nothing_that_looks_finished(tmp_path, monkeypatch):
    """A real OpenVINO export held to an impossible tolerance fails validation: exit 3, the
    earlier good result of the same name stays as it was, the failed files carry `.failed` in
    their name and a manifest that says failed."""
    from deploy.export import ExportConfig, export, load_source

    good = get_target("openvino")
    strict = dataclasses.replace(good, name="openvino-strict", tolerances={
        "fp32": Tolerance(max_abs=1e-12, min_top1=1.0)})
    monkeypatch.setitem(TARGETS, "openvino-strict", strict)
    source = load_source("squeezenet1_1", weights=checkpoint("squeezenet1_1"),
                         num_classes=CLASSES, input_size=SMALL)
    first = export(source, ExportConfig(target="openvino", output_dir=tmp_path, threads=1))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValidationError, match=r"disagrees with its PyTorch parent: max \|dlogit\|"
                                              r".* \(kept as squeezenet1_1\.failed\.xml\)"):
        export(source, ExportConfig(target="openvino-strict", output_dir=tmp_path, threads=1))
    assert ValidationError.exit_code == 3
    after = {p.name: p for p in tmp_path.iterdir()}
    for name, data in before.items():  # the earlier good result is untouched
        assert after[name].read_bytes() == data
    assert sorted(set(after) - set(before)) == [
        "squeezenet1_1.failed.bin", "squeezenet1_1.failed.xml", "squeezenet1_1.failed.xml.json"]
    failed = read_manifest(tmp_path / "squeezenet1_1.failed.xml")
    assert failed.validation["status"] == "failed" and not failed.passed
    assert failed.sha256 == sha256_file(tmp_path / "squeezenet1_1.failed.xml")
    assert failed.companions[0]["file"] == "squeezenet1_1.failed.bin"
    assert read_manifest(tmp_path / first.file).passed
    # a later good export clears the failed leftovers
    export(source, ExportConfig(target="openvino", output_dir=tmp_path, threads=1))
    assert not [p for p in tmp_path.iterdir() if ".failed" in p.name]


def test_conversion_error_leaves_nothing(tmp_path):
    """torch.export cannot trace data-dependent control flow: one-line ConversionError and an
    empty output folder (no temporary folder either)."""
    import torch

    import zoo
    from deploy.export import ExportConfig, ModelSource, export

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, CLASSES)

        def forward(self, x):
            pooled = x.mean((2, 3))
            if pooled.sum() > 0:  # depends on the data
                return self.fc(pooled)
            return -self.fc(pooled)

    entry = zoo.get_entry("squeezenet1_1").with_overrides(num_classes=CLASSES, input_size=SMALL)
    source = ModelSource(entry, Branchy().eval(), {"trained": False})
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as err:
        export(source, ExportConfig(target="onnx", output_dir=out, threads=1))
    assert "\n" not in str(err.value)
    assert not out.exists()  # the folder the run made is removed again: it wrote nothing


def test_cli_end_to_end_with_a_checkpoint(tmp_path, capsys):
    """`deploy export` with --weights: files, manifest and the printed summary."""
    out = tmp_path / "cli"
    code = main(["export", "shufflenet_v1_g3", "--target", "openvino", "--num-classes",
                 str(CLASSES), "--input-size", str(SMALL), "--weights",
                 str(checkpoint("shufflenet_v1_g3")), "--output", str(out), "--threads", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"{out / 'shufflenet_v1_g3.xml'}" in printed and "validation:  passed" in printed
    assert "transposes" in printed and "time:        conversion " in printed
    m = read_manifest(out / "shufflenet_v1_g3.xml")
    assert m.passed and m.companions[0]["file"] == "shufflenet_v1_g3.bin"
    assert m.passes[0]["compress_to_fp16"] is False


def test_batch_is_baked_into_the_file(tmp_path):
    """--batch 2: the file takes two images; validation still runs all 64 (in chunks)."""
    from deploy.export import ExportConfig, export, load_source

    source = load_source("squeezenet1_1", weights=checkpoint("squeezenet1_1"),
                         num_classes=CLASSES, input_size=SMALL)
    a = export(source, ExportConfig(target="openvino", batch=2, output_dir=tmp_path, threads=1))
    assert a.input.shape == (2, 3, SMALL, SMALL) and a.passes[0]["batch"] == 2
    assert a.validation["status"] == "passed" and a.validation["images"] == 64
