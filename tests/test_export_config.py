"""The capability table, export options, validation metrics and data lookup (no conversions)."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from deploy.cli import main
from edgebase.errors import ConfigError, DataError, UnknownNameError
from edgebase.capabilities import FP16, TARGETS, Tolerance, all_precisions, get_target


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_is_complete(name):
    from edgebase.capabilities import RUNTIMES

    t = get_target(name)
    assert t.suffix.startswith(".") and t.runtime in RUNTIMES
    assert t.suffix in RUNTIMES[t.runtime].suffixes, "the target's runtime must read its files"
    assert "fp32" in t.precisions and t.input_layout in ("NCHW", "NHWC")
    module, _, fn = t.converter.partition(":")
    assert callable(getattr(importlib.import_module(module), fn))
    assert t.tolerance("fp32").max_abs is not None and t.tolerance("fp32").min_top1 == 1.0
    assert not set(t.refused) & set(t.precisions)


def test_issue_tolerances_are_the_table_values():
    assert get_target("onnx").tolerance("fp32").max_abs == 1e-4
    assert get_target("openvino").tolerance("fp32").max_abs == 1e-4
    assert get_target("tflite").tolerance("fp32").max_abs == 1e-3
    for name in ("tflite", "openvino"):
        assert get_target(name).tolerance("fp16").min_top1 >= 0.99
    assert set(all_precisions()) == {"fp16", "fp32", "int8"}


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="valid: " + ", ".join(sorted(TARGETS))):
        get_target("coreml")


def test_refused_precision_says_why():
    with pytest.raises(ConfigError, match="onnx does not offer fp16: .*openvino --fp16"):
        get_target("onnx").check_precision("fp16")
    with pytest.raises(ConfigError, match="valid: fp32, fp16, int8"):
        get_target("tflite").check_precision("fp64")


def test_export_config_rejects_what_the_target_cannot_do(tmp_path):
    from deploy.export import ExportConfig

    with pytest.raises(ConfigError, match="tflite has no option simplify; valid: nhwc_input"):
        ExportConfig(target="tflite", options={"simplify": False}, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="--batch must be >= 1"):
        ExportConfig(target="onnx", batch=0, output_dir=tmp_path)
    with pytest.raises(ConfigError, match="at least 64 images"):
        ExportConfig(target="onnx", validate_images=10, output_dir=tmp_path)


@pytest.mark.parametrize("argv, exit_code, message", [
    (["export", "mobilenet_v2", "--target", "onnx", "--fp16"], 2, "onnx does not offer fp16"),
    (["export", "mobilenet_v9", "--target", "onnx"], 2, "unknown model 'mobilenet_v9'; valid:"),
    (["export", "mobilenet_v2", "--target", "tflite", "--no-simplify"], 2,
     "tflite has no option simplify"),
    (["export", "mobilenet_v2", "--target", "onnx", "--width", "0"], 2, "width"),
    (["export", "mobilenet_v2", "--target", "onnx", "--no-rewrite"], 2,
     "onnx has no option rewrite; valid: opset (--opset), simplify (--no-simplify); "
     "rewrite (--no-rewrite) is tflite's"),
    (["export", "mobilenet_v2", "--target", "onnx", "--opset", "17"], 2,
     "--opset 17: onnx needs at least 18"),
    (["export", "mobilenet_v2", "--target", "onnx", "--opset", "x"], 2,
     "argument --opset: invalid int value"),
])
def test_cli_errors_are_one_line(argv, exit_code, message, capsys, tmp_path):
    assert main(argv + ["--output", str(tmp_path / "out")]) == exit_code
    err = capsys.readouterr().err.strip()
    assert err.startswith("deploy: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_data_folder_is_a_data_error_before_converting(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("EDGEDEPLOY_DATA", str(tmp_path / "nowhere"))
    from deploy.validate import data_dir

    with pytest.raises(DataError, match="nowhere does not exist"):
        data_dir()
    out = tmp_path / "out"
    code = main(["export", "squeezenet1_1", "--target", "openvino", "--input-size", "64",
                 "--output", str(out)])
    assert code == DataError.exit_code
    assert "validation data folder" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []


def test_validate_data_option_reads_the_given_images(shared_data):
    from edgebase.manifest import Preprocess
    from deploy.validate import validation_batch

    pre = Preprocess(resize=36, crop=32)
    x, info = validation_batch(pre, 64, shared_data / "cifar10.zip")
    assert x.shape == (64, 3, 32, 32) and x.dtype == np.float32
    assert info["data"] == "cifar10.zip" and info["images"] == 64
    x2, _ = validation_batch(pre, 64, shared_data / "cifar10.zip")
    assert np.array_equal(x, x2), "the validation subset must be deterministic"
    with pytest.raises(DataError, match="no such file"):
        validation_batch(pre, 64, shared_data / "missing.zip")


@pytest.mark.parametrize("size, data", [(32, "cifar10.zip"), (64, "imagenet-sample-1k.zip"),
                                        (224, "imagenet-sample-1k.zip")])
def test_default_validation_images_follow_the_input_size(size, data, shared_data):
    from deploy.validate import default_data

    path, split = default_data(size)
    assert path.name == data and path.exists() and split == "test"


# ---- compare(): the metrics and the decision ------------------------------------------
REF = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.5]], dtype=np.float32)
STRICT = Tolerance(max_abs=1e-4, min_top1=1.0, min_cosine=0.9999)


def test_compare_passes_within_tolerance():
    v = compare_(REF + 5e-5)
    assert v["status"] == "passed" and v["top1_agreement"] == 1.0
    assert v["max_abs_diff"] == pytest.approx(5e-5, rel=1e-2) and "failures" not in v


def test_compare_fails_on_logit_difference():
    v = compare_(REF + np.array([[0, 0, 2e-3], [0, 0, 0]], dtype=np.float32))
    assert v["status"] == "failed" and v["top1_agreement"] == 1.0
    assert any("max |dlogit|" in f for f in v["failures"])


def test_compare_fails_on_top1_flip_even_when_fp16_allows_large_differences():
    flipped = REF.copy()
    flipped[1] = [0.5, 1.0, 3.0]
    v = compare_(flipped, FP16)
    assert v["status"] == "failed" and v["top1_agreement"] == 0.5
    assert any("top-1 agreement 50.0% < 99%" in f for f in v["failures"])


def test_compare_fails_on_shape_and_nan():
    v = compare_(REF[:, :2])
    assert v["status"] == "failed" and "output shape [2, 2]" in v["failures"][0]
    bad = REF.copy()
    bad[0, 0] = np.nan
    assert compare_(bad)["status"] == "failed"


def compare_(candidate, tol=STRICT):
    from deploy.validate import compare

    return compare(REF, np.asarray(candidate, dtype=np.float32), tol)


def test_compare_forgives_only_flips_between_near_tied_logits():
    ref = np.array([[1.0, 1.00005, 0.0], [2.0, 0.0, 0.0]], dtype=np.float32)
    swapped = ref.copy()
    swapped[0] = [1.00005, 1.0, 0.0]  # within 1e-4 of the parent: a legitimate reorder
    from deploy.validate import compare

    v = compare(ref, swapped, STRICT)
    assert v["top1_agreement"] == 0.5 and v["near_ties"] == 1 and v["status"] == "passed"
    far = ref.copy()
    far[1] = [0.0, 2.0, 0.0]
    assert compare(ref, far, Tolerance(max_abs=None, min_top1=1.0))["status"] == "failed"


@pytest.mark.parametrize("name, width, stem", [
    ("mobilenet_v1", None, "mobilenet_v1_x0_5.cifar10"),  # the bare name: trained default
    ("mobilenet_v1", 0.25, "mobilenet_v1_x0_25"),
    ("mobilenet_v1_x0_5", 1.0, "mobilenet_v1_x1_0"),
    ("mobilenet_v2", 1.0, "mobilenet_v2"),
    ("mobilenet_v2", 0.75, "mobilenet_v2_x0_75"),
    ("shufflenet_v1_g3", 0.5, "shufflenet_v1_g3_x0_5"),
])
def test_file_stem_names_the_width_that_was_built(name, width, stem):
    from deploy.export import load_source
    from deploy.placement import file_stem

    assert file_stem(load_source(name, width=width)) == stem


def test_quiet_captures_python_prints_and_file_descriptor_writes(capsys):
    """Converters print from Python and from C++: neither may reach stdout, where `--json`
    puts the manifest; both stay readable for the error message."""
    import os
    import sys

    from exporters.common import quiet

    with quiet() as log:
        print("python progress")
        print("python warning", file=sys.stderr)
        os.write(1, b"native progress\n")
        text = log.text()  # read inside: the buffer is gone after the block
    assert "python progress" in text and "python warning" in text and "native progress" in text
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    print("after")
    assert capsys.readouterr().out == "after\n"


def _export_parser():
    import argparse

    from deploy.commands import export as command

    p = argparse.ArgumentParser()
    command.add_arguments(p)
    return p


@pytest.mark.parametrize("target", list(TARGETS))
def test_every_target_option_is_a_flag_of_export(target):
    """Each option of the table is a `deploy export` flag whose help names the target, and
    giving the flag sets exactly that option (to the opposite of a bool's default)."""
    from deploy import target_flags

    p = _export_parser()
    for name, option in TARGETS[target].options.items():
        flag = option.flag_name(name)
        action = next(a for a in p._actions if flag in a.option_strings)
        assert action.help.startswith(target) or f", {target}" in action.help.split(":")[0]
        extra = [] if option.kind is bool else [str(option.default + 1)]
        args = p.parse_args(["m", "--target", target, flag, *extra])
        want = (not option.default) if option.kind is bool else option.default + 1
        assert target_flags.given(args) == {name: want}
    assert target_flags.given(p.parse_args(["m", "--target", target])) == {}


@pytest.mark.parametrize("target", list(TARGETS))
def test_option_defaults_are_the_converters(target):
    """The defaults the table (and --help) states are the ones the converter applies."""
    import inspect

    t = TARGETS[target]
    params = inspect.signature(t.convert_fn()).parameters
    for name, option in t.options.items():
        assert params[name].default == option.default, (target, name)
        assert isinstance(option.default, option.kind)


def test_int8_choices_come_from_the_table():
    from edgebase.capabilities import all_int8_io

    p = _export_parser()
    io = next(a for a in p._actions if "--int8-io" in a.option_strings)
    assert list(io.choices) == all_int8_io() and io.default == all_int8_io()[0]
    method = next(a for a in p._actions if "--calib-method" in a.option_strings)
    for name, t in TARGETS.items():
        if t.ptq:
            assert f"{name} {'|'.join(t.calib_methods)}" in method.help


def test_onnx_opset_below_the_minimum_is_refused_by_the_converter_too(tmp_path):
    """The table's minimum is the exporter's: opset 17 fails in both, before any export."""
    from exporters.onnx import torch_to_onnx

    minimum = TARGETS["onnx"].options["opset"].minimum
    with pytest.raises(ConfigError, match=f"opset {minimum - 1} is not available"):
        torch_to_onnx(None, None, tmp_path / "m.onnx", opset=minimum - 1)
    with pytest.raises(ConfigError, match=f"--opset {minimum - 1}: onnx needs at least"):
        TARGETS["onnx"].check_options({"opset": minimum - 1})
    with pytest.raises(ConfigError, match="opset .* takes a int"):
        TARGETS["onnx"].check_options({"opset": "19"})


def test_options_from_the_command_line_reach_the_file_and_manifest(tmp_path, capsys):
    """--no-simplify --opset 19 on a real export: the file has opset 19 and no simplify
    record, and the manifest records exactly the two options given."""
    import json

    import onnx

    from tests.export_helpers import checkpoint

    out = tmp_path / "out"
    code = main(["export", "squeezenet1_1", "--target", "onnx", "--weights",
                 str(checkpoint("squeezenet1_1")), "--num-classes", "10", "--input-size", "64",
                 "--no-simplify", "--opset", "19", "--threads", "1", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "squeezenet1_1.onnx.json").read_text())
    step = manifest["passes"][0]
    assert step["options"] == {"simplify": False, "opset": 19}
    assert step["opset"] == 19 and "simplify" not in step
    proto = onnx.load(str(out / "squeezenet1_1.onnx"))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 19


@pytest.mark.parametrize("target", list(TARGETS))
def test_an_option_given_at_its_default_is_not_an_option(target, tmp_path):
    """Every typed option (int, str, bool) set to the converter's default asks for the same
    file as leaving it out: the export config keeps (and so passes on and records) only values
    that differ from the default."""
    from deploy.export import ExportConfig

    t = TARGETS[target]
    defaults = {name: option.default for name, option in t.options.items()}
    assert ExportConfig(target=target, output_dir=tmp_path, options=defaults).options == {}
    for name, option in t.options.items():
        other = (not option.default if option.kind is bool
                 else next((c for c in option.choices or () if c != option.default),
                           option.default + 1 if option.kind is int else None))
        if other is None:
            continue
        config = ExportConfig(target=target, output_dir=tmp_path, options={**defaults, name: other})
        assert config.options == {name: other}


def test_default_opset_spelled_out_or_not_is_one_reusable_file(tmp_path, capsys):
    """`deploy export M --target onnx --opset 18` (18: the default) writes the file a later
    `deploy benchmark`/`deploy release` into that folder reuses without --opset, and the other
    way round; a manifest that recorded the default value is read the same way."""
    import json

    from deploy.export import ExportConfig, load_source
    from deploy.reuse import find_reusable
    from edgebase.manifest import manifest_path, read_manifest

    name, default = "squeezenet1_1.cifar10", TARGETS["onnx"].options["opset"].default
    out = tmp_path / "out"
    code = main(["export", name, "--target", "onnx", "--opset", str(default),
                 "--threads", "1", "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    path = out / f"{name}.onnx"
    art = read_manifest(path)
    assert art.passed and art.passes[0]["options"] == {} and art.passes[0]["opset"] == default

    source = load_source(name)

    def reused(**options):
        found = find_reusable(source, ExportConfig(target="onnx", output_dir=out,
                                                   options=options, force=True))
        return found is not None and found.sha256 == art.sha256

    assert reused() and reused(opset=default) and reused(opset=default, simplify=True)
    assert not reused(opset=default + 1) and not reused(simplify=False)
    # a manifest that spelled the default out (as files exported before did)
    data = json.loads(manifest_path(path).read_text())
    data["passes"][0]["options"] = {"opset": default}
    manifest_path(path).write_text(json.dumps(data))
    assert reused() and reused(opset=default) and not reused(opset=default + 1)
