"""Files never overwrite silently, and a checkpoint's own preprocessing travels with the file.

Real exports (the export stage's converters and validation) and the real `runner eval`."""
from __future__ import annotations

import json
import shutil

import pytest

from deploy.cli import main
from edgebase.files import sha256_file
from tests.export_helpers import SMALL, checkpoint, exported

MODEL = "shufflenet_v2_x0_5"


@pytest.fixture()
def finished(tmp_path):
    """A copy of a real, validated fp32 ONNX export of a 10-class checkpoint at 64x64."""
    art, out = exported(MODEL, "onnx", "fp32")
    dst = tmp_path / "out"
    shutil.copytree(out, dst)
    return dst / art.file


def export_argv(out, *flags):
    return ["export", MODEL, "--target", "onnx", "--input-size", str(SMALL),
            "--output", str(out.parent), *flags]


def test_a_different_parent_is_refused_and_the_file_kept(finished, capsys):
    before = sha256_file(finished)
    code = main(export_argv(finished, "--num-classes", "10"))  # random init, not the checkpoint
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith(f"deploy: error: {finished} exists and holds a different parent: ")
    assert "weights sha256" in err and "-> random init" in err and "--force" in err
    assert sha256_file(finished) == before
    assert sorted(p.name for p in finished.parent.iterdir()) == [finished.name,
                                                                 finished.name + ".json"]


def test_preprocessing_or_labels_alone_make_a_different_parent(finished, capsys, tmp_path):
    ckpt = str(checkpoint(MODEL))
    code = main(export_argv(finished, "--weights", ckpt, "--num-classes", "10",
                            "--preset", "cifar10"))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "preprocessing resize 73 crop 64" in err and "--force" in err
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)))
    code = main(export_argv(finished, "--weights", ckpt, "--num-classes", "10",
                            "--labels", str(labels)))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "labels 0 labels -> 10 labels (class 0, ...)" in err


def test_same_parent_may_replace_and_a_file_without_manifest_may_not(finished):
    from deploy.export import load_source
    from deploy.overwrite import OverwriteError, check_overwrite

    same = load_source(MODEL, weights=checkpoint(MODEL), num_classes=10, input_size=SMALL)
    check_overwrite(finished, same.identity("fp32"), force=False)  # an update: allowed
    with pytest.raises(OverwriteError, match="different parent: precision fp32 -> fp16"):
        check_overwrite(finished, same.identity("fp16"), force=False)
    (finished.parent / (finished.name + ".json")).unlink()
    with pytest.raises(OverwriteError, match="has no readable manifest"):
        check_overwrite(finished, same.identity("fp32"), force=False)
    check_overwrite(finished, same.identity("fp32"), force=True)


def test_preprocessing_flags_reach_runner_eval(shared_data, tmp_path, capsys):
    """--mean/--std/--resize/--labels go into the manifest; `runner eval` uses them with no
    flags and refuses a flag that contradicts them. The folder is named by the model."""
    from device_runners.cli import main as runner

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    model = "shufflenet_v2_x0_5.cifar10"
    out = tmp_path / "out" / model
    code = main(["export", model, "--target", "onnx", "--output", str(out), "--mean", "0.5",
                 "--std", "0.25", "--resize", "36", "--labels", str(labels), "--json"])
    manifest = json.loads(capsys.readouterr().out)  # --json alone: stdout is the manifest
    assert code == 0 and manifest["validation"]["status"] == "passed"
    pre = manifest["preprocess"]
    assert (pre["resize"], pre["crop"], pre["mean"], pre["std"]) == (36, 32, [0.5] * 3, [0.25] * 3)
    assert manifest["labels"] == [f"c{i}" for i in range(10)]
    seconds = manifest["extra"]["seconds"]
    assert set(seconds) == {"conversion", "validation"} and seconds["conversion"] > 0
    file = out / manifest["file"]
    result = tmp_path / "eval.json"
    assert runner(["eval", str(file), "--data", str(shared_data / "cifar10.zip"),
                   "--limit", "50", "--no-progress", "--json", str(result)]) == 0
    got = json.loads(result.read_text())["preprocess"]
    assert got["source"] == "manifest" and (got["resize"], got["mean"]) == (36, [0.5] * 3)
    capsys.readouterr()
    assert runner(["eval", str(file), "--data", str(shared_data / "cifar10.zip"),
                   "--mean", "0.4914", "0.4822", "0.4465", "--std", "0.247", "0.2435",
                   "0.2616", "--limit", "5"]) == 2
    assert "contradicts the manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_force_replaces_a_different_parent(shared_data, tmp_path, capsys):
    model = "shufflenet_v2_x0_5.cifar10"
    out = tmp_path / model
    assert main(["export", model, "--target", "onnx", "--output", str(out),
                 "--preset", "imagenet"]) == 0
    assert main(["export", model, "--target", "onnx", "--output", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["export", model, "--target", "onnx", "--output", str(out), "--force",
                 "--json", str(tmp_path / "m.json")]) == 0
    manifest = json.loads((out / f"{model}.onnx.json").read_text())
    assert manifest == json.loads((tmp_path / "m.json").read_text())
    assert manifest["preprocess"]["resize"] == 32  # the model's own again (CIFAR-10: no crop)
