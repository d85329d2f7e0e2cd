"""Errors, atomic files and the Artifact record: the pieces every stage relies on."""
from __future__ import annotations

import json

import pytest

from edgebase.errors import DeployError, MissingDependencyError, ModelFileError, UnknownNameError
from edgebase.files import _umask, atomic_path, sha256_file, write_text_atomic
from edgebase.manifest import (Artifact, Preprocess, TensorSpec, file_facts, manifest_path,
                             read_manifest, write_manifest)


def test_unknown_name_lists_valid_names_in_one_line():
    err = UnknownNameError("model", "mobilenet_v9", ["b", "a"])
    assert str(err) == "unknown model 'mobilenet_v9'; valid: a, b"
    assert isinstance(err, DeployError) and "\n" not in str(err)


def test_missing_dependency_names_the_extra():
    assert "edgedeploy[litert]" in str(MissingDependencyError("ai-edge-litert", "litert"))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            assert tmp.suffix == ".onnx" and tmp.name.startswith(".")
            raise RuntimeError("converter crashed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_on_success(tmp_path):
    final = tmp_path / "sub" / "m.bin"
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"abc")
    assert final.read_bytes() == b"abc"
    assert [p.name for p in final.parent.iterdir()] == ["m.bin"]
    assert final.stat().st_mode & 0o777 == 0o666 & ~_umask()
    # sha256 of "abc"
    assert sha256_file(final) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _artifact(model_file):
    facts = file_facts(model_file)
    return Artifact(
        file=facts["file"], format="onnx", precision="fp32", sha256=facts["sha256"],
        size_bytes=facts["size_bytes"], model={"name": "m", "arch": "m", "params": 3},
        inputs=(TensorSpec("x", (1, 3, 32, 32), "float32", "NCHW"),),
        outputs=(TensorSpec("y", (1, 10), "int8", scale=0.5, zero_point=-3),),
        preprocess=Preprocess(resize=32, crop=32), labels=("a", "b"),
        passes=({"name": "export", "target": "onnx"},), validation={"status": "passed"},
    )


def test_manifest_round_trips_and_sits_beside_the_model(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x01")
    art = _artifact(model)
    path = write_manifest(art, model)
    assert path == manifest_path(model) == tmp_path / "m.onnx.json"
    back = read_manifest(model)
    assert back == art and back.passed and back.input.shape == (1, 3, 32, 32)
    assert back.outputs[0].zero_point == -3
    assert json.loads(path.read_text())["schema"] == "edgedeploy.artifact/1"


def test_replace_returns_a_new_record(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    art = _artifact(model)
    failed = art.replace(validation={"status": "failed"})
    assert art.passed and not failed.passed


def test_benchmark_records_replace_the_same_measurement_only(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    machine = {"cpu": "c", "cores": 2}
    one = {"tool": "t", "runtime": "r", "threads": 1, "batch": 1, "precision_hint": "f32",
           "machine": machine, "device": None, "p50_ms": 2.0}
    art = _artifact(model).with_benchmarks(one, {**one, "threads": 2, "p50_ms": 1.5})
    again = art.with_benchmarks({**one, "p50_ms": 1.8})  # 1 thread measured again
    assert [(b["threads"], b["p50_ms"]) for b in again.benchmarks] == [(2, 1.5), (1, 1.8)]
    elsewhere = again.with_benchmarks({**one, "machine": {**machine, "cpu": "other"}})
    assert len(elsewhere.benchmarks) == 3
    write_manifest(elsewhere, model)
    assert read_manifest(model).benchmarks == elsewhere.benchmarks
    from edgebase.manifest import files_match

    assert files_match(art, model)
    model.write_bytes(b"y")
    assert not files_match(art, model)


def test_absent_manifest_is_none_and_bad_manifests_are_clear(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    assert read_manifest(model) is None
    write_text_atomic(manifest_path(model), "{not json")
    with pytest.raises(ModelFileError, match="unreadable manifest"):
        read_manifest(model)
    write_text_atomic(manifest_path(model), json.dumps({"schema": "other/9"}))
    with pytest.raises(ModelFileError, match="schema"):
        read_manifest(model)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["outputs"][0].pop("shape"), "malformed manifest (KeyError: 'shape')"),
    (lambda d: d.update(inputs=["x"]), "inputs[0] must be an object, not a string"),
    (lambda d: d["inputs"][0].update(shape=[1, 3.5]), "inputs[0] shape must be a list of int"),
    (lambda d: d["preprocess"].update(mean=3), "preprocess['mean'] must be a list, not an int"),
    (lambda d: d["preprocess"].update(std=["a"]), "preprocess std must be a list of numbers"),
    (lambda d: d.update(preprocess=[1, 2]), "'preprocess' must be an object or null, not a list"),
    (lambda d: d.update(model=2.5), "'model' must be an object, not a number"),
    (lambda d: d["model"].update(macs="many"), "model['macs'] must be a number or null"),
    (lambda d: d["model"].update(weights=3), "model['weights'] must be an object or null"),
    (lambda d: d.update(extra=[]), "'extra' must be an object, not a list"),
    (lambda d: d.update(labels="a b"), "'labels' must be a list, not a string"),
    (lambda d: d.update(labels=["a", 2]), "labels must be a list of strings"),
])
def test_manifests_with_fields_of_the_wrong_kind_are_one_line_errors(tmp_path, edit, message):
    """Each was a traceback in runner bench when found by benchmarks/fuzz_runner.py."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x01")
    d = _artifact(model).to_dict()
    edit(d)
    write_text_atomic(manifest_path(model), json.dumps(d))
    with pytest.raises(ModelFileError) as err:
        read_manifest(model)
    assert message in str(err.value) and str(manifest_path(model)) in str(err.value)
    assert "\n" not in str(err.value)
