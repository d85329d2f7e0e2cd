"""`deploy benchmark` end to end on a tiny model (ShuffleNetV2 x0.5 at 32x32, 10 classes) and a
small CIFAR-10 subset, in one precision that one target refuses (a real failed cell) and
another offers (one real export): the files it writes, and that its numbers agree with each other and with
`runner eval` / the capability table."""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from deploy.cli import main
from edgebase.errors import ConfigError, UnknownNameError
from edgebase.capabilities import TARGETS, get_target

MODEL = "shufflenet_v2_x0_5"
LIMIT = 24


def _refused():
    """A (target, precision) the capability table refuses, and one target that offers it."""
    for t in TARGETS.values():
        for precision in t.refused:
            others = [o.name for o in TARGETS.values() if precision in o.precisions]
            if others:
                return t.name, precision, others[0]
    pytest.skip("the capability table refuses no precision that another target offers")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    refused_target, precision, other = _refused()
    out = tmp_path_factory.mktemp("bench")
    argv = ["benchmark", MODEL, "--input-size", "32", "--num-classes", "10",
            "--target", f"{refused_target},{other}", "--precisions", precision,
            "--limit", str(LIMIT), "--threads", "1", "--runs", "6", "--rounds", "2",
            "--warmup", "1",
            "--output", str(out / "work"), "--json", str(out / "report" / "bench.json")]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    report = json.loads((out / "report" / "bench.json").read_text())
    return {"code": code, "out": out, "report": report, "refused": (refused_target, precision),
            "other": other, "stderr": err.getvalue()}


def test_writes_json_markdown_and_plot(run):
    folder = run["out"] / "report"
    md = (folder / "bench.md").read_text()
    png = folder / "accuracy_vs_latency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "| model | target | precision | status |" in md
    from deploy.benchmark_report import precision_label

    for c in run["report"]["cells"]:
        assert f"| {c['model']} | {c['target']} | {precision_label(c)} |" in md
    assert "load average" in md and run["report"]["machine"]["cpu"]["cores"] >= 1


def test_failed_cell_carries_error_and_others_run(run):
    target, precision = run["refused"]
    cells = {(c["target"], c["precision"]): c for c in run["report"]["cells"]
             if "precision_hint" not in c}  # a bf16 CPU adds runtime-default rows
    bad = cells[(target, precision)]
    assert bad["status"] == "failed"
    assert get_target(target).refused[precision].split(";")[0] in bad["error"]
    assert "\n" not in bad["error"]
    good = [c for c in run["report"]["cells"] if (c["target"], c["precision"]) != (target, precision)
            and "precision_hint" not in c]  # not the runtime-default row of a bf16 CPU
    assert len(good) == 1 and all(c["status"] == "ok" for c in good)
    assert run["code"] == 1  # a failed cell makes the exit status non-zero


def test_numbers_are_consistent(run):
    report = run["report"]
    (model,) = report["models"]
    assert model["images"] == LIMIT and model["macs"] > 0
    cpu = report["machine"]["cpu"]
    for c in (c for c in report["cells"] if c["status"] == "ok"):
        assert c["delta_top1"] == pytest.approx(c["top1"] - model["torch_top1"])
        assert 0 <= c["agreement"] <= 100
        lat, eager = c["latency"]["1"], model["eager"]["1"]
        assert lat["p90_ms"] >= lat["p50_ms"] > 0
        # medians of interleaved rounds: the speed-up pairs eager and file round by round
        assert len(lat["rounds"]) == len(eager["rounds"]) == 2
        assert lat["p50_ms"] == pytest.approx(float(np.median(lat["rounds"])), rel=1e-3)
        assert lat["speedup"] == pytest.approx(
            float(np.median([e / f for e, f in zip(eager["rounds"], lat["rounds"])])), rel=1e-3)
        assert lat["loaded"] == (lat["load"] > cpu["cores"])
        assert lat["gmacs"] == pytest.approx(model["macs"] / (lat["p50_ms"] / 1e3) / 1e9)
        # the share is of the peak of the arithmetic the file ran in (f32 here unless the
        # runtime's default row on a bf16 CPU)
        assert lat["arithmetic"] == ("int8" if c["precision"] == "int8"
                                     else c["inference_precision"])
        peak = cpu["peaks"][lat["arithmetic"]]["gmacs"]
        if peak:
            assert lat["peak_share"] == pytest.approx(lat["gmacs"] / (peak / cpu["cores"]))
        assert c["size_bytes"] > 0 and c["validation"]["status"] == "passed"
        # the export passed validation (>= 99 % top-1 agreement on 64 images for fp16,
        # 100 % for fp32), so the files agree with PyTorch on these images too
        assert c["agreement"] >= 90.0


def test_latency_lands_in_each_files_manifest(run):
    """Artifact.benchmarks of every timed file holds the report's latency, one record per
    thread count and precision hint."""
    from edgebase.manifest import read_manifest

    timed = [c for c in run["report"]["cells"] if c["status"] == "ok" and c.get("latency")]
    assert timed
    for c in timed:
        records = [b for b in read_manifest(c["file"]).benchmarks
                   if b["precision_hint"] == c.get("precision_hint", "f32")]
        assert {str(b["threads"]): b["p50_ms"] for b in records} == {
            t: lat["p50_ms"] for t, lat in c["latency"].items()}
        assert all(b["tool"] == "deploy benchmark" and b["machine"]["cpu"] for b in records)


def test_top1_matches_runner_eval(run):
    """The benchmark's accuracy path and `runner eval` see the same pixels and labels."""
    from deploy.validate import default_data
    from device_runners.evaluate import evaluate

    cell = next(c for c in run["report"]["cells"]
                if c["status"] == "ok" and c["target"] == run["other"])
    data, split = default_data(32)
    r = evaluate(cell["file"], data, limit=LIMIT, split=split, threads=1)
    assert r.images == LIMIT
    assert r.top1 == pytest.approx(cell["top1"])


def test_config_rejects_bad_values():
    from deploy.benchmark import BenchmarkConfig

    with pytest.raises(UnknownNameError, match="valid: "):
        BenchmarkConfig(models=(MODEL,), targets=("nonsense",))
    with pytest.raises(ConfigError, match="precision"):
        BenchmarkConfig(models=(MODEL,), precisions=("fp8",))
    with pytest.raises(ConfigError, match="threads"):
        BenchmarkConfig(models=(MODEL,), threads=(0,))
    with pytest.raises(ConfigError, match="limit"):
        BenchmarkConfig(models=(MODEL,), limit=0)
    with pytest.raises(ConfigError, match="exactly one MODEL"):
        BenchmarkConfig(models=(MODEL, MODEL), weights=Path("w.pt"))


def test_int8_status_follows_the_capability_table():
    from deploy.benchmark import int8_unavailable

    for t in TARGETS.values():
        why = int8_unavailable(t)
        assert (why is None) == ("int8" in t.precisions)
        if why:
            assert why.startswith("int8 unavailable: ")


def test_rank_correlation():
    from deploy.benchmark_plots import rank_correlation

    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2], [1, 2]) is None
    assert not math.isnan(rank_correlation([1, 2, 3], [1, 1, 2]))


def test_summary_names_the_best_file_and_slower_int8_per_thread_count():
    from deploy.benchmark_report import summary_lines

    def cell(target, precision, top1, p50):
        return {"model": "m", "target": target, "precision": precision, "status": "ok",
                "top1": top1, "latency": {t: {"p50_ms": ms, "speedup": 10 / ms}
                                          for t, ms in zip(("1", "2"), p50)}}

    report = {"models": [{"name": "m"}], "cells": [
        cell("onnx", "fp32", 80.0, (1.0, 0.5)), cell("onnx", "int8", 79.75, (1.2, 0.4)),
        cell("tflite", "fp32", 80.0, (0.9, 0.6))]}
    (line,) = summary_lines(report)
    assert "fastest at 1 thread(s): tflite fp32 0.9" in line
    assert "fastest at 2 thread(s): onnx int8 0.4" in line
    assert "onnx int8 top-1 -0.25 points" in line
    assert "onnx int8 slower than fp32 (1.20 vs 1.00 ms at 1 thread(s))" in line


def test_random_init_weights_are_flagged(run):
    """The model is random-init: a warning line on stderr under the table, and in the JSON."""
    report = run["report"]
    assert report["models"][0]["weights"]["trained"] is False
    assert len(report["warnings"]) == 1 and "random-init weights" in report["warnings"][0]
    assert report["models"][0]["warnings"] == report["warnings"]
    last = [line for line in run["stderr"].splitlines() if line.startswith("warning: ")]
    assert last and last[-1] == f"warning: {report['warnings'][0]}"


def test_latency_under_load_is_flagged_in_table_and_markdown():
    from deploy.benchmark_report import LOADED, load_warning, rows
    from device_runners.sysinfo import cpu_info

    cpu = cpu_info().to_dict()
    busy = cpu["cores"] + 1.4
    lat = {"p50_ms": 2.0, "p90_ms": 3.0, "speedup": 5.0, "gmacs": None, "peak_share": None}
    report = {"config": {"threads": [1]}, "machine": {"cpu": cpu},
              "models": [{"name": "m", "eager": {"1": {"p50_ms": 10.0, "p90_ms": 11.0,
                                                       "load": 0.5, "loaded": False}}}],
              "cells": [{"model": "m", "target": "onnx", "precision": "fp32", "status": "ok",
                         "latency": {"1": {**lat, "load": busy, "loaded": True}}}]}
    warning = load_warning(report)
    assert warning.startswith(f"{LOADED} measured while the 1-min load average (up to "
                              f"{busy:.1f}) exceeded the {cpu['cores']} usable cores")
    head, body = rows(report)
    onnx = next(r for r in body if r[1] == "onnx")
    assert onnx[head.index("speed-up @1t")] == f"5.00×{LOADED}"
    report["cells"][0]["latency"]["1"]["loaded"] = False
    assert load_warning(report) is None


@pytest.mark.parametrize("lo, hi", [(0.6, 1.6), (0.3, 40.0), (1.21, 1.39)])
def test_log_axes_carry_several_plain_number_labels(lo, hi):
    """A range narrower than a decade must not be labelled at one power of ten only."""
    from deploy.benchmark_plots import _plt, readable_log_axis

    plt = _plt()
    fig, ax = plt.subplots()
    ax.scatter([lo, hi], [1, 2])
    ax.set_xscale("log")
    readable_log_axis(ax, "x")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels()
              if t.get_text() and lo <= t.get_position()[0] <= hi]
    plt.close(fig)
    assert len(labels) >= 3, labels
    assert all("^" not in x and "$" not in x for x in labels)  # plain numbers, not 10^k


def test_accuracy_plot_shows_every_thread_count(tmp_path):
    from deploy.benchmark_plots import plot_accuracy

    def lat(ms):
        return {"p50_ms": ms, "p90_ms": ms * 1.1}

    report = {"config": {"threads": [1, 2], "targets": ["onnx"], "precisions": ["fp32"]},
              "models": [{"name": "m", "torch_top1": 80.0, "images": 10,
                          "eager": {"1": lat(10.0), "2": lat(6.0)}}],
              "cells": [{"model": "m", "target": "onnx", "precision": "fp32", "status": "ok",
                         "top1": 79.5, "latency": {"1": lat(1.0), "2": lat(0.7)}}]}
    import matplotlib.pyplot as plt

    captured = {}
    orig = plt.Figure.savefig

    def keep(fig, *a, **k):  # read the figure's own artists before it is closed
        captured["legend"] = [t.get_text() for t in fig.legends[0].get_texts()]
        captured["points"] = sum(len(c.get_offsets()) for ax in fig.axes
                                 for c in ax.collections)
        return orig(fig, *a, **k)

    plt.Figure.savefig = keep
    try:
        assert plot_accuracy(report, tmp_path / "a.png") is not None
    finally:
        plt.Figure.savefig = orig
    assert {"1 thread(s)", "2 thread(s)", "PyTorch eager fp32", "fp32", "m"} <= set(
        captured["legend"])
    assert captured["points"] == 4  # eager and the file, at 1 and at 2 threads
