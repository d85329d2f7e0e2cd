"""The fuzzing and soak scripts (benchmarks/) run end to end on small inputs.

Their full runs are benchmarks with results in benchmarks/results/; here a few fuzz cases on a
bundle assembled around Google's float MobileNet V1 and a two-second soak of a tiny ONNX net
check that the scripts count, report and exit as documented.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner_models import FLOAT_TFLITE, make_small_models, need

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A one-model release bundle (the real assemble step) around a real .tflite."""
    from deploy.release import Built, ReleaseConfig, assemble
    from device_runners.loading import load
    from edgebase.manifest import Artifact, Preprocess, file_facts, write_manifest

    build = tmp_path_factory.mktemp("build")
    src = build / "mobilenet_v1_0.25.tflite"
    shutil.copyfile(need(FLOAT_TFLITE), src)
    with load(src) as b:
        inputs, outputs = tuple(b.inputs), tuple(b.outputs)
    facts = file_facts(src)
    art = Artifact(file=src.name, format="tflite", precision="fp32", sha256=facts["sha256"],
                   size_bytes=facts["size_bytes"], model={"name": "mobilenet_v1_0.25.tf"},
                   inputs=inputs, outputs=outputs,
                   preprocess=Preprocess(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3,
                                         layout="NHWC"),
                   labels=tuple(f"class {i}" for i in range(1001)),
                   validation={"status": "passed"})
    write_manifest(art, src)
    cfg = ReleaseConfig(model="mobilenet_v1_0.25.tf", version="0.1.0", bench_runs=1,
                        bench_warmup=0, threads=1, output=tmp_path_factory.mktemp("out"))
    return assemble([Built(src, art, False)], cfg, log=lambda *_: None).folder


@pytest.mark.slow  # a release bundle to assemble, then runner processes: ~25 s on 2 busy cores
def test_fuzz_script_counts_and_reports(bundle, tmp_path):
    out = tmp_path / "fuzz"
    p = _run("fuzz_runner.py", "--bundle", str(bundle), "--formats", "tflite,manifest",
             "--count", "3", "--cli-sample", "1", "--work", str(tmp_path / "work"),
             "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.with_suffix(".json").read_text())
    assert r["cpu"]["tag"] and r["wall_s"] > 0 and "--count 3" in r["command"]
    for fmt in ("tflite", "manifest"):
        commands = r["formats"][fmt]["commands"]
        assert set(commands) == {"bench", "verify"}
        for c in commands.values():
            assert sum(c["in_process"].values()) == 3 and sum(c["cli"].values()) == 1
        assert r["formats"][fmt]["cli_agree"] == 2  # one sampled case, two commands
    assert r["failures"] == []
    assert "| tflite | bench | in-process |" in out.with_suffix(".md").read_text()


def test_fuzz_script_refuses_a_format_its_seeds_lack(tmp_path):
    empty = tmp_path / "empty-1.0"  # a bundle that releases no model
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"schema": "edgedeploy.bundle/1",
                                                     "files": [], "models": []}))
    p = _run("fuzz_runner.py", "--bundle", str(empty), "--formats", "onnx", "--count", "1",
             "--work", str(tmp_path / "work"), "--out", str(tmp_path / "fuzz"))
    assert p.returncode == 2 and "no seed for onnx: the bundle holds no models" in p.stderr
    assert not (tmp_path / "fuzz.json").exists()


def test_soak_script_reports_growth_and_drift(tmp_path):
    onnx = make_small_models(tmp_path)["onnx"]
    out = tmp_path / "soak"
    p = _run("soak_runner.py", "--model", str(onnx), "--runtimes", "onnxruntime", "--minutes",
             "2", "--window-s", "1", "--sample-s", "0.25", "--out", str(out))
    r = json.loads(out.with_suffix(".json").read_text())
    x = r["runtimes"][0]
    assert [m["minute"] for m in x["minutes"]] == [1, 2]
    assert all(m["runs"] > 0 and m["p50_ms"] > 0 and m["rss_median_mb"] > 0 for m in x["minutes"])
    assert x["rss_growth_pct"] == pytest.approx(
        100 * (x["minutes"][1]["rss_median_mb"] / x["minutes"][0]["rss_median_mb"] - 1), abs=0.01)
    # exit status and verdicts follow the measured figures, whichever way they fall
    missed = not (x["rss_ok"] and x["p50_ok"])
    assert p.returncode == (1 if missed else 0), p.stderr[-2000:]
    assert "a check of the script, not a soak" in out.with_suffix(".md").read_text()
    # a later soak of another runtime with the same settings keeps this row, which says when
    # it was measured; other settings start a fresh report
    again = ("--model", str(onnx), "--runtimes", "openvino", "--window-s", "1", "--sample-s",
             "0.25", "--out", str(out))
    _run("soak_runner.py", "--minutes", "2", *again)
    both = json.loads(out.with_suffix(".json").read_text())["runtimes"]
    assert [x["runtime"] for x in both] == ["onnxruntime", "openvino"]
    assert both[0]["minutes"] == x["minutes"] and both[0]["date"] == r["date"]
    assert "onnxruntime: `benchmarks/soak_runner.py --model" in out.with_suffix(".md").read_text()
    _run("soak_runner.py", "--minutes", "1", *again)
    assert [x["runtime"] for x in json.loads(out.with_suffix(".json").read_text())["runtimes"]] \
        == ["openvino"]
