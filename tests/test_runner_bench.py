"""``device_runners.bench``: statistics, batch and input handling, MAC rate, profiles."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from deploy.errors import ConfigError, DataError
from device_runners.bench import bench
from device_runners.backends import load
from tests.runner_models import FLOAT_TFLITE, need, small_models, write_artifact  # noqa: F401


def test_bench_tflite_statistics_are_consistent():
    r = bench(need(FLOAT_TFLITE), runs=20, warmup=2, threads=1, isolate=False)
    assert r.runtime == "litert" and r.runtime_version.startswith("ai-edge-litert")
    assert r.runs == 20 and r.batch == 1 and r.threads == 1 and r.input_source == "random"
    assert 0 < r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
    assert r.min_ms <= r.mean_ms <= r.max_ms and r.std_ms >= 0
    assert r.throughput == pytest.approx(1000.0 / r.mean_ms)
    assert r.first_ms > 0 and r.load_ms > 0 and r.peak_rss_mb > 10
    assert r.cpu["cores"] >= 1 and r.cpu["model"]
    assert "GMAC/s" in r.cpu["peak_derivation"]
    assert r.macs is None and r.achieved_gmacs is None  # no manifest beside Google's file
    assert r.op_counts and r.op_counts.get("CONV_2D", 0) + r.op_counts.get("DELEGATE", 0) > 0
    d = json.loads(json.dumps(r.to_dict()))
    assert d["p50_ms"] == r.p50_ms and d["inputs"][0]["shape"] == [1, 224, 224, 3]


def test_bench_batch_resizes_tflite_input():
    r = bench(need(FLOAT_TFLITE), runs=3, warmup=0, batch=2, threads=1, isolate=False)
    assert r.batch == 2 and r.throughput == pytest.approx(2000.0 / r.mean_ms)


def test_bench_min_time_and_option_errors(small_models):
    r = bench(small_models["onnx"], min_time=0.05, warmup=0, isolate=False)
    assert r.runs > 1
    with pytest.raises(ConfigError, match="not both"):
        bench(small_models["onnx"], runs=3, min_time=1.0)
    for bad in ({"runs": 0}, {"warmup": -1}, {"batch": 0}, {"min_time": 0.0}):
        with pytest.raises(ConfigError):
            bench(small_models["onnx"], **bad)


def test_bench_input_file(small_models, tmp_path):
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = bench(small_models["onnx"], runs=2, warmup=0, input=tmp_path / "x.npy", isolate=False)
    assert r.batch == 3 and r.input_source.endswith("x.npy")
    with pytest.raises(ConfigError, match="--batch 2"):
        bench(small_models["onnx"], runs=2, input=tmp_path / "x.npy", batch=2, isolate=False)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="npy"):
        bench(small_models["onnx"], runs=2, input=tmp_path / "bad.npy", isolate=False)


def test_bench_mac_rate_from_manifest(small_models, tmp_path):
    model = tmp_path / "tiny.onnx"
    shutil.copy(small_models["onnx"], model)
    write_artifact(model, load(model), macs=small_models["macs"])
    r = bench(model, runs=10, warmup=1, threads=1, isolate=False)
    assert r.macs == small_models["macs"]
    assert r.achieved_gmacs == pytest.approx(r.macs / (r.p50_ms / 1e3) / 1e9)
    assert r.peak_gmacs == pytest.approx(r.cpu["peak_gmacs"] / r.cpu["cores"])  # one thread
    assert r.peak_share == pytest.approx(r.achieved_gmacs / r.peak_gmacs)


def test_bench_profile(small_models):
    r = bench(small_models["xml"], runs=3, warmup=0, profile=True, isolate=False)
    assert r.profile and r.profile_note is None
    assert {row["type"] for row in r.profile} & {"Convolution", "FullyConnected", "MatMul"}
    t = bench(need(FLOAT_TFLITE), runs=2, warmup=0, profile=True, isolate=False)
    assert t.profile is None and "no per-operator timer" in t.profile_note


def test_bench_dynamic_axes_need_a_shape(small_models, tmp_path):
    import openvino as ov

    from deploy.errors import ShapeError
    from deploy.manifest import Preprocess

    model = tmp_path / "dyn.xml"
    ov.save_model(ov.convert_model(str(small_models["onnx"]), input=[-1, 3, -1, -1]), str(model))
    backend = load(model)
    assert backend.input.shape == (-1, 3, -1, -1)
    with pytest.raises(ShapeError, match="dynamic axes"):
        bench(model, runs=2, isolate=False)
    r = bench(model, runs=2, warmup=0, shape=(2, 3, 40, 40), isolate=False)
    assert r.fed_shapes == [[2, 3, 40, 40]] and r.batch == 2
    # a manifest's preprocessing gives the image size, and its MAC count then applies
    write_artifact(model, backend, macs=small_models["macs"], fmt="openvino",
                   preprocess=Preprocess(resize=32, crop=32))
    r = bench(model, runs=2, warmup=0)  # isolated check also uses the manifest's shape
    assert r.fed_shapes == [[1, 3, 32, 32]] and r.macs == small_models["macs"]
    r = bench(model, runs=2, warmup=0, shape=(1, 3, 64, 64), isolate=False)
    assert r.macs is None and "not the fed" in r.extra["mac_note"]


def test_bench_isolated_with_a_relative_path(small_models, monkeypatch):
    """The isolated load check runs in a worker with its own working directory; a path
    relative to the user's one (and an IR's .bin beside it) must still be found."""
    for key in ("onnx", "xml"):
        monkeypatch.chdir(small_models[key].parent)
        r = bench(small_models[key].name, runs=2, warmup=0, threads=1)
        assert r.runs == 2
