"""`deploy models` and `deploy inspect`: tables, JSON, random-weight notice, one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from edgebase import __version__
from deploy.cli import COMMANDS, run_cli
from zoo import get_entry, list_models

torch.set_num_threads(1)
NOTE = "random initialisation — latency only, no accuracy claims"


def deploy(*argv: str) -> int:
    # only the commands under test are loaded, so this file does not depend on the others
    return run_cli("deploy", {k: COMMANDS[k] for k in ("models", "inspect")}, __version__,
                   list(argv))


def test_commands_are_registered():
    assert COMMANDS["models"] == "deploy.commands.models"
    assert COMMANDS["inspect"] == "deploy.commands.inspect"


def test_models_json_lists_the_whole_zoo(capsys):
    assert deploy("models", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["models"]}
    assert list(rows) == list_models()
    assert rows["shufflenet_v2_x1_0"]["params"] == 2_278_604
    assert rows["mobilenet_v2"]["macs"] == pytest.approx(0.301e9, rel=0.01)
    for name, row in rows.items():
        assert row["trained"] == get_entry(name).trained
        assert (row["weights"] == "random") == (not row["trained"])
    assert out["aliases"]["shufflenet_v2"] == "shufflenet_v2_x0_5.cifar10"
    assert out["architecture_defaults"]["shufflenet_v2"] == "shufflenet_v2_x1_0"


def test_models_table_with_pattern(capsys):
    assert deploy("models", "shufflenet_v2") == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["name", "params", "MACs", "MAC", "cost", "input", "classes", "weights"]
    expected = list_models("*shufflenet_v2*")  # a plain word matches as a substring
    names = [line.split()[0] for line in out.splitlines()[2:2 + len(expected)]]
    assert names == expected
    assert {"shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
            "shufflenet_v2_x2_0"} <= set(names)
    assert "2,278,604" in out and "224x224" in out and NOTE in out
    assert "mobilenet" not in out and "squeezenet" not in out  # filtered


def test_models_unknown_pattern(capsys):
    assert deploy("models", "resnet*") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy: error: unknown model pattern 'resnet*'; valid: ")
    assert "squeezenet1_1" in err and "\n" not in err


def test_inspect_table_shares_and_random_notice(capsys):
    assert deploy("inspect", "shufflenet_v2_x1_0", "--input-size", "64",
                  "--num-classes", "10") == 0
    out = capsys.readouterr().out
    assert out.startswith("shufflenet_v2_x1_0: ")
    assert "stage2.0.branch1.0" in out and "stage4.3.shuffle" in out
    assert "MACs %" in out and "MAC cost %" in out
    assert f"weights: {NOTE}" in out and f"note: {NOTE}" in out
    kinds = [line.split()[0] for line in out.split("MAC cost %")[1].splitlines()[2:]
             if line.strip() and not line.startswith("total")]
    assert {"pointwise", "depthwise", "shuffle", "split", "concat"} <= set(kinds)


def test_inspect_bare_name_says_which_model(capsys):
    """A bare family name is the trained default; with a class count its weights do not fit,
    the architecture default. Either way the first line on stderr says which."""
    assert deploy("inspect", "shufflenet_v2") == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0].startswith(
        "shufflenet_v2 -> shufflenet_v2_x0_5.cifar10: the family's default trained entry")
    assert captured.out.startswith("shufflenet_v2_x0_5.cifar10: ")
    assert deploy("inspect", "shufflenet_v2", "--num-classes", "7") == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0].startswith(
        "shufflenet_v2 -> shufflenet_v2_x1_0: the architecture default, since --num-classes")
    assert captured.out.startswith("shufflenet_v2_x1_0: ")


def test_inspect_json_with_weights(tmp_path, capsys):
    entry = get_entry("mobilenet_v3_small")
    model = entry.builder(**{**entry.kwargs, "num_classes": 10, "width_mult": 0.5})
    path = tmp_path / "mnv3.pth"
    torch.save({"model": model.state_dict()}, path)
    assert deploy("inspect", "mobilenet_v3", "--width", "0.5", "--num-classes", "10",
                  "--input-size", "96", "--weights", str(path), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "mobilenet_v3_small" and out["kwargs"]["width_mult"] == 0.5
    assert out["random_init"] is False and out["note"] is None
    assert out["weights"]["source_key"] == "model" and len(out["weights"]["sha256"]) == 64
    assert out["facts"]["params"] == sum(p.numel() for p in model.parameters())
    assert out["facts"]["input_shape"] == [1, 3, 96, 96]


def test_inspect_unknown_model_lists_names(capsys):
    assert deploy("inspect", "resnet50") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("deploy: error: unknown model 'resnet50'; valid: ")
    assert all(name in err for name in list_models())


@pytest.mark.parametrize("argv,match", [
    (["--num-classes", "1000"], "does not fit shufflenet_v2_x0_5: 2 mis-shaped"),
    ([], "does not fit"),
])
def test_inspect_bad_weights_is_one_clear_line(tmp_path, capsys, argv, match):
    entry = get_entry("shufflenet_v2_x0_5")
    path = tmp_path / "ten.pth"
    torch.save(entry.builder(**{**entry.kwargs, "num_classes": 10}).state_dict(), path)
    assert deploy("inspect", "shufflenet_v2_x0_5", "--weights", str(path), *argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and "Traceback" not in err


@pytest.mark.parametrize("argv,match", [
    (["squeezenet1_1", "--width", "0.5"], "has no width option"),
    (["shufflenet_v2_x1_0", "--width", "0.75"], "width=0.75 is not supported; valid: 0.5"),
    (["squeezenet1_1", "--input-size", "8"], "--input-size must be >= 16"),
    (["squeezenet1_0", "--input-size", "20"], "20x20 input does not fit"),
    (["mobilenet_v2", "--num-classes", "0"], "--num-classes: must be at least 1, got 0"),
    (["mobilenet_v2", "--weights", "/nonexistent/w.pth"], "does not exist"),
])
def test_inspect_option_errors(capsys, argv, match):
    assert deploy("inspect", *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("deploy: error: ") and match in err and err.count("\n") == 1


def test_debug_shows_the_traceback():
    from edgebase.errors import UnknownNameError

    with pytest.raises(UnknownNameError):
        deploy("inspect", "--debug", "resnet50")
