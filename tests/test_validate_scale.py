"""Validation against a parent whose logits are tiny (random-init MobileNets: 1e-10..1e-18):
the |dlogit| limit scales with the parent's logits, so a wrong output cannot pass just because
every number is small; a parent with no logit scale at all is an explicit "degenerate parent"
failure. And the numbers of a random-init file are flagged wherever they are printed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgebase.capabilities import Tolerance

FP32 = Tolerance(max_abs=1e-4, min_top1=1.0, min_cosine=0.99999)


def _tiny_parent(scale=5e-10):
    return np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32) * scale


def test_a_tiny_parent_is_checked_relative_to_its_logits():
    from deploy.validate import compare

    ref = _tiny_parent()
    exact = compare(ref, ref + np.float32(3.9e-16), FP32)  # the conversion really is exact
    assert exact["status"] == "passed" and "max|logit|" in exact["note_scale"]
    assert exact["effective_max_abs"] == pytest.approx(1e-3 * np.abs(ref).max())
    # each of these "passed" against the absolute 1e-4 limit, proving nothing
    for wrong in (np.zeros_like(ref), ref * 1.05, ref[::-1].copy()):
        v = compare(ref, wrong, FP32)
        assert v["status"] == "failed", v
    assert "cosine" in " ".join(compare(ref, np.zeros_like(ref), FP32)["failures"])


def test_a_parent_with_no_logits_left_is_a_degenerate_failure():
    from deploy.validate import compare, summary_line

    v = compare(np.zeros((64, 10), np.float32), np.zeros((64, 10), np.float32), FP32)
    assert v["status"] == "failed" and v["degenerate_parent"]
    assert "degenerate parent" in summary_line(v)


def test_trained_size_logits_keep_the_targets_limit():
    from deploy.validate import compare

    ref = _tiny_parent(scale=5.0)
    v = compare(ref, ref + np.float32(5e-5), FP32)
    assert v["status"] == "passed" and v["effective_max_abs"] == 1e-4 and "note_scale" not in v


def test_a_zeroed_classifier_checkpoint_fails_export(tmp_path, capsys):
    """A real checkpoint whose classifier is zeroed: every logit is 0, nothing can be compared;
    one line, exit 3 (validation), no finished-looking file."""
    import torch

    from deploy.cli import main
    from zoo import create_model

    model, _ = create_model("squeezenet1_1", num_classes=10, input_size=32)
    with torch.no_grad():
        model.classifier[1].weight.zero_()
        model.classifier[1].bias.zero_()
    torch.save(model.state_dict(), tmp_path / "zeroed.pt")
    code = main(["export", "squeezenet1_1", "--num-classes", "10", "--input-size", "32",
                 "--weights", str(tmp_path / "zeroed.pt"), "--target", "onnx", "--threads", "1",
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and "degenerate parent" in err[-1], err
    assert not (tmp_path / "out" / "squeezenet1_1.onnx").exists()


@pytest.fixture(scope="module")
def random_init_file(tmp_path_factory):
    """A real export of a random-init MobileNet V3 (logits ~1e-10) with its manifest."""
    import torch

    from deploy.export import ExportConfig, export, load_source

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("random-init")
    source = load_source("mobilenet_v3_small", num_classes=10, input_size=32)
    art = export(source, ExportConfig(target="onnx", output_dir=out, threads=1))
    return out / art.file, art


def test_random_init_export_validates_relative_to_its_tiny_logits(random_init_file):
    _, art = random_init_file
    v = art.validation
    assert v["status"] == "passed" and max(abs(x) for x in v["logit_range"]) < 1e-6
    assert v["effective_max_abs"] < 1e-9 and "note_scale" in v
    assert art.model["weights"]["trained"] is False


@pytest.mark.parametrize("command", ["eval", "bench"])
def test_runner_warns_about_random_init_weights(command, random_init_file, shared_data,
                                                tmp_path, capsys):
    from device_runners.cli import main

    path, _ = random_init_file
    args = {"eval": ["--data", str(shared_data / "cifar10.zip"), "--limit", "20",
                     "--no-progress"],
            "bench": ["--runs", "3", "--warmup", "1"]}[command]
    code = main([command, str(path), "--threads", "1", "--no-isolate",
                 "--json", str(tmp_path / "r.json")] + args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "random-init weights" in warnings[0]
    assert "latency only" in warnings[0] and "warning" not in captured.out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["weights_trained"] is False and result["warnings"] == [warnings[0][9:]]


def test_runner_is_quiet_about_trained_weights(random_init_file, tmp_path, capsys):
    """Same file, manifest saying trained: no warning, flag true (the manifest decides)."""
    import dataclasses
    import shutil

    from edgebase.manifest import write_manifest
    from device_runners.cli import main

    path, art = random_init_file
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    model = {**art.model, "weights": {"trained": True, "source": "checkpoint"}}
    write_manifest(dataclasses.replace(art, model=model), copy)
    assert main(["bench", str(copy), "--runs", "2", "--warmup", "0", "--threads", "1",
                 "--no-isolate", "--json", str(tmp_path / "b.json")]) == 0
    assert "warning" not in capsys.readouterr().err
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["weights_trained"] is True and result["warnings"] == []
