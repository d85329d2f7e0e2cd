"""A release bundle's manifest.json is untrusted input: every field ``runner verify`` reads is
checked for its kind before use, so a damaged or hostile manifest is one line naming the field
(found by benchmarks/fuzz_runner.py: each of these was a traceback)."""
from __future__ import annotations

import copy
import json

import pytest

from edgebase.bundle import SCHEMA, read_bundle
from edgebase.errors import ModelFileError

SPEC = {"name": "x", "shape": [1, 3, 32, 32], "dtype": "float32", "layout": "NCHW",
        "scale": None, "zero_point": None}
GOOD = {"schema": SCHEMA, "name": "m", "version": "1.0.0", "labels": "labels.txt",
        "preprocess": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "files": [{"path": "m.onnx", "size_bytes": 3, "sha256": "ab"}],
        "models": [{"path": "m.onnx", "manifest": "m.onnx.json", "runtime": "onnxruntime",
                    "input": SPEC, "outputs": [dict(SPEC, shape=[1, 10], layout=None)],
                    "companions": [], "accuracy": {"top1": 80.0, "images": 100}}]}


def _write(tmp_path, data):
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    return tmp_path


def test_a_well_formed_manifest_reads(tmp_path):
    assert read_bundle(_write(tmp_path, GOOD)) == GOOD


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["files"].__setitem__(0, "m.onnx"), "files[0] must be an object, not a string"),
    (lambda d: d["files"][0].update(path=3.5), "files[0]['path'] must be a string, not a number"),
    (lambda d: d["models"].__setitem__(0, 7), "models[0] must be an object, not an integer"),
    (lambda d: d["models"][0].pop("input"), "models[0] has no 'input'"),
    (lambda d: d["models"][0].update(input=1), "models[0]['input'] must be an object"),
    (lambda d: d["models"][0]["outputs"].__setitem__(0, None), "output 0 must be an object"),
    (lambda d: d["models"][0]["input"].update(shape=7), "['shape'] must be a list, not an int"),
    (lambda d: d["models"][0]["input"].update(shape=[1, "a"]), "input shape must be a list of integers"),
    (lambda d: d["models"][0]["input"].update(scale="big"), "['scale'] must be a number or null, not a string"),
    (lambda d: d["models"][0].update(runtime=5), "['runtime'] must be a string or null"),
    (lambda d: d["models"][0].update(companions=[[1]]), "companion 0 must be an object"),
    (lambda d: d["models"][0]["accuracy"].pop("top1"), "accuracy has no 'top1'"),
    (lambda d: d.update(preprocess=3), "'preprocess' must be an object or null, not an int"),
    (lambda d: d["preprocess"].update(mean=0.5), "preprocess['mean'] must be a list of numbers"),
    (lambda d: d.update(labels=["a"]), "'labels' must be a string, not a list"),
])
def test_fields_of_the_wrong_kind_are_named(tmp_path, edit, message):
    data = copy.deepcopy(GOOD)
    edit(data)
    with pytest.raises(ModelFileError) as err:
        read_bundle(_write(tmp_path, data))
    assert message in str(err.value) and "\n" not in str(err.value)
