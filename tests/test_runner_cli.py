"""The ``runner`` command in real subprocesses: JSON output, one-line errors, no torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner_models import CIFAR10, FLOAT_TFLITE, need, small_models  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# Runs the console script's entry point, then reports which heavy frameworks got imported.
WRAPPER = """
import json, sys
from device_runners.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "tensorflow", "openvino", "onnxruntime", "ai_edge_litert")
               if m in sys.modules)
print("MODULES " + json.dumps(heavy))
sys.exit(rc)
"""


def runner(*args, timeout=180):
    return subprocess.run([sys.executable, "-c", WRAPPER, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def modules(proc) -> list[str]:
    line = [l for l in proc.stdout.splitlines() if l.startswith("MODULES ")][-1]
    return json.loads(line[len("MODULES "):])


def test_bench_tflite_imports_no_torch_tensorflow_or_openvino(tmp_path):
    out = tmp_path / "bench.json"
    p = runner("bench", need(FLOAT_TFLITE), "--runs", "5", "--warmup", "1", "--json", out)
    assert p.returncode == 0, p.stderr
    assert modules(p) == ["ai_edge_litert"]
    d = json.loads(out.read_text())
    for key in ("load_ms", "first_ms", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms",
                "p99_ms", "max_ms", "throughput", "runs", "threads", "runtime",
                "runtime_version", "provider", "peak_rss_mb", "cpu"):
        assert key in d, key
    assert d["runs"] == 5 and d["runtime"] == "litert"
    assert "latency ms" in p.stdout and "peak RSS" in p.stdout


def test_bench_onnx_and_openvino_import_only_their_runtime(small_models):
    p = runner("bench", small_models["onnx"], "--runs", "3", "--profile")
    assert p.returncode == 0, p.stderr
    assert modules(p) == ["onnxruntime"]
    assert "profile      top" in p.stdout
    p = runner("bench", small_models["xml"], "--runs", "3", "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert modules(p) == ["openvino"]


def test_eval_cli_json(small_models, tmp_path):
    out = tmp_path / "eval.json"
    p = runner("eval", small_models["onnx"], "--data", need(CIFAR10), "--limit", "20",
               "--resize", "32", "--scale", str(1 / 255), "--json", out, "--no-progress")
    assert p.returncode == 0, p.stderr
    d = json.loads(out.read_text())
    assert d["images"] == 20 and 0 <= d["top1"] <= d["top5"] <= 100
    assert "torch" not in modules(p)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "wrong-suffix", "bad-runtime",
                                  "bad-option"])
def test_errors_are_one_line(case, tmp_path, small_models):
    args = {
        "missing": ["bench", tmp_path / "none.tflite"],
        "empty": ["bench", _write(tmp_path / "e.onnx", b"")],
        "text": ["bench", _write(tmp_path / "t.tflite", b"hello, not a model" * 10)],
        "wrong-suffix": ["bench", _write(tmp_path / "m.xml", need(FLOAT_TFLITE).read_bytes())],
        "bad-runtime": ["bench", small_models["onnx"], "--runtime", "tensorrt"],
        "bad-option": ["bench", small_models["onnx"], "--runs", "0"],
    }[case]
    p = runner(*args)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner: error: ")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("blocked,model_key,extra", [
    (("onnxruntime",), "onnx", "onnxruntime"),
    (("openvino",), "xml", "openvino"),
    (("ai_edge_litert", "tflite_runtime", "tensorflow"), "tflite", "litert"),
])
def test_missing_runtime_names_the_extra(blocked, model_key, extra, small_models):
    model = need(FLOAT_TFLITE) if model_key == "tflite" else small_models[model_key]
    code = ("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
            + "from device_runners.cli import main\n"
            + f"sys.exit(main(['bench', {str(model)!r}, '--runs', '1']))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"pip install 'edgedeploy[{extra}]'" in p.stderr
