"""One vocabulary of flags across `deploy` and `runner`: the new names are in --help, the old
ones still parse into the same settings (hidden, with a note), and every --json parses."""
from __future__ import annotations

import json

import pytest

from deploy.cli import COMMANDS, main
from edgebase.cli import build_parser
from device_runners.cli import COMMANDS as RUNNER_COMMANDS
from device_runners.cli import main as runner_main

MODEL = "shufflenet_v2_x0_5.cifar10"


def parse(argv, commands=COMMANDS):
    return build_parser("deploy", commands, "test").parse_args(argv)


def help_text(command: str, commands=COMMANDS) -> str:
    parser = build_parser("deploy", commands, "test")
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command].format_help()


# (argv with the old name, argv with the new name, attribute both must set)
ALIASES = [
    (["release", MODEL, "--targets", "onnx,tflite"], ["release", MODEL, "--target", "onnx,tflite"],
     "target"),
    (["release", MODEL, "--eval", "d.zip"], ["release", MODEL, "--data", "d.zip"], "eval_data"),
    (["release", MODEL, "--eval-limit", "7"], ["release", MODEL, "--limit", "7"], "limit"),
    (["release", MODEL, "--eval-split", "val"], ["release", MODEL, "--split", "val"],
     "eval_split"),
    (["benchmark", MODEL, "--targets", "onnx"], ["benchmark", MODEL, "--target", "onnx"],
     "target"),
    (["export", MODEL, "--target", "tflite", "--io", "uint8"],
     ["export", MODEL, "--target", "tflite", "--int8-io", "uint8"], "int8_io"),
    (["export", MODEL, "--target", "onnx", "--eval-limit", "9"],
     ["export", MODEL, "--target", "onnx", "--limit", "9"], "limit"),
]


@pytest.mark.parametrize("old, new, attr", ALIASES)
def test_old_flag_names_set_what_the_new_ones_set(old, new, attr, capsys):
    assert getattr(parse(old), attr) == getattr(parse(new), attr) is not None
    old_flag = next(a for a in old if a.startswith("--") and a not in new)
    assert f"note: {old_flag} is now --" in capsys.readouterr().err


def test_old_export_data_flags_keep_their_narrower_meaning():
    """--validate-data set only the validation images and --eval only the int8 accuracy
    images; the new --data sets both, so the old names keep their own settings."""
    args = parse(["export", MODEL, "--target", "onnx", "--validate-data", "v.zip"])
    assert args.validate_data == "v.zip" and args.data is None
    args = parse(["export", MODEL, "--target", "onnx", "--eval", "e.zip"])
    assert args.eval == "e.zip" and args.data is None


@pytest.mark.parametrize("command, new, old", [
    ("export", ["--target", "--data", "--limit", "--int8-io", "--json", "--force", "--preset",
                "--mean", "--std", "--resize", "--labels"],
     ["--validate-data", "--eval ", "--eval-limit", "--io "]),
    ("release", ["--target", "--data", "--limit", "--split", "--int8-io", "--json"],
     ["--targets", "--eval ", "--eval-limit", "--eval-split"]),
    ("benchmark", ["--target", "--data", "--limit", "--threads", "--json"], ["--targets"]),
    ("models", ["--json"], []),
])
def test_help_documents_new_names_only(command, new, old):
    text = help_text(command)
    for flag in new:
        assert flag in text, flag
    for flag in old:
        assert flag not in text, flag


@pytest.mark.parametrize("command", ["bench", "eval", "verify"])
def test_runner_commands_report_json(command):
    assert "--json [FILE]" in help_text(command, RUNNER_COMMANDS)


def test_old_name_still_runs_with_a_note(capsys, tmp_path):
    code = main(["export", MODEL, "--target", "onnx", "--output", str(tmp_path),
                 "--eval-limit", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert "note: --eval-limit is now --limit" in err
    assert err.strip().splitlines()[-1] == "deploy: error: --limit needs --int8"
    assert not list(tmp_path.iterdir())


def test_json_file_must_say_json(capsys):
    """`--json PATTERN` would take the positional for a file name and overwrite it."""
    assert main(["models", "--json", "mobilenet"]) == 2
    err = capsys.readouterr().err
    assert "does not end in .json" in err and err.count("\n") == 1


def test_models_json_top1_is_a_number(capsys, tmp_path):
    assert main(["models", "shufflenet_v2_x0_5", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["models"]}
    trained, random = rows[MODEL], rows["shufflenet_v2_x0_5"]
    assert isinstance(trained["top1"], float) and 50 < trained["top1"] <= 100
    assert trained["dataset"] and random["top1"] is None and random["trained"] is False
    out = tmp_path / "zoo.json"
    assert main(["models", "shufflenet_v2_x0_5", "--json", str(out)]) == 0
    assert "MACs" in capsys.readouterr().out  # the table still prints
    assert json.loads(out.read_text())["models"][0]["name"].startswith("shufflenet_v2_x0_5")


@pytest.mark.parametrize("flags, message", [
    (["--mean", "124", "--std", "58"], "(0..255 units? divide by 255)"),
    (["--mean", "0.5"], "--std is missing"),
    (["--mean", "0.1", "0.2", "--std", "0.3"], "--mean takes 1 or 3 values"),
    (["--mean", "0.5", "--std", "0"], "--std 0 is outside (0, 1]"),
    (["--resize", "16"], "--resize 16 is smaller than the input size 32"),
    (["--labels", "/nonexistent/labels.txt"], "--labels /nonexistent/labels.txt: no such file"),
])
def test_preprocessing_flag_errors_are_one_line(flags, message, capsys, tmp_path):
    code = main(["export", MODEL, "--target", "onnx", "--output", str(tmp_path)] + flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1], err
    assert err[-1].startswith("deploy: error:") and not list(tmp_path.iterdir())


def test_labels_file_must_name_every_class(capsys, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(9)) + "\n")
    code = main(["export", MODEL, "--target", "onnx", "--labels", str(labels),
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "9 names for 10 classes" in err


def test_presets_and_explicit_values():
    from edgebase.manifest import Preprocess
    from deploy.preprocess_flags import PRESETS, resolve

    base = Preprocess(resize=256, crop=224)
    assert resolve(base) is None  # no flag: the model's own, untouched
    cifar = resolve(base, preset="cifar10")
    assert (cifar.resize, cifar.crop, cifar.mean) == (224, 224, PRESETS["cifar10"][0])
    img = resolve(Preprocess(resize=32, crop=32), preset="imagenet")
    assert (img.resize, img.crop, img.std) == (37, 32, PRESETS["imagenet"][1])
    own = resolve(base, preset="imagenet", mean=[0.5], resize=240)
    assert own.mean == (0.5, 0.5, 0.5) and own.std == PRESETS["imagenet"][1] and own.resize == 240
