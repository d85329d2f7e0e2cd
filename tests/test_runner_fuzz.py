"""Mutated model files never crash or traceback the runner: one DeployError line, or a run.

Hundreds of deterministic mutations (truncation, bit flips, overwritten and zeroed blocks,
swapped formats) of real .tflite, .onnx and OpenVINO .xml/.bin files go through the Python
API with isolation on: a runtime that crashes does so in the check's child process, and only
files that survived it are loaded in-process. A sample also goes through the real CLI.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.mutations import KINDS, mutate
from edgebase.errors import DeployError
from device_runners.loading import load
from tests.runner_models import FLOAT_TFLITE, QUANT_TFLITE, need, small_models  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 40.0  # the default suite stays fast; the count below normally fits well inside


def cases(small: dict, tmp: Path, scale: float, seed: int = 0):
    """(path, description) of mutated files; .xml cases mutate the xml or its .bin.

    OpenVINO compiles even a tiny model in ~0.2 s and .bin mutations mostly just change
    weights, so those get fewer cases than the formats whose parsers see every byte.
    """
    rng = random.Random(seed)
    sources = [(need(FLOAT_TFLITE), None, 45), (need(QUANT_TFLITE), None, 45),
               (small["onnx"], None, 60), (small["xml"], "xml", 60), (small["xml"], "bin", 20)]
    out = []
    for src, part, count in sources:
        xml, bin_ = src.read_bytes(), src.with_suffix(".bin")
        for n in range(max(1, round(count * scale))):
            kind = KINDS[n % len(KINDS)]
            stem = f"{src.stem.replace('.', '_')}-{part or 'm'}-{n}"
            if part is None:
                path = tmp / (stem + src.suffix)
                path.write_bytes(mutate(src.read_bytes(), rng, kind))
            else:
                path = tmp / (stem + ".xml")
                path.write_bytes(mutate(xml, rng, kind) if part == "xml" else xml)
                (tmp / (stem + ".bin")).write_bytes(
                    mutate(bin_.read_bytes(), rng, kind) if part == "bin" else bin_.read_bytes())
            out.append((path, f"{src.name} {part or ''} {kind} #{n}"))
    # whole-file swaps: right bytes, wrong suffix; and empty files
    for src in (FLOAT_TFLITE, small["onnx"], small["xml"]):
        for suffix in (".tflite", ".onnx", ".xml"):
            if suffix != src.suffix:
                path = tmp / f"swap-{src.stem.replace('.', '_')}{suffix}"
                path.write_bytes(src.read_bytes())
                out.append((path, f"{src.name} as {suffix}"))
        empty = tmp / f"empty-{src.stem.replace('.', '_')}{src.suffix}"
        empty.write_bytes(b"")
        out.append((empty, f"empty {src.suffix}"))
    return out


def test_mutated_files_through_the_api(small_models, tmp_path):
    all_cases = cases(small_models, tmp_path, scale=1.0)
    assert len(all_cases) >= 230
    start, outcomes = time.monotonic(), {"loaded": 0, "rejected": 0}
    for path, what in all_cases:
        if time.monotonic() - start > BUDGET_S:
            break
        try:
            backend = load(path, isolate=True)
        except DeployError as e:
            assert "\n" not in str(e) and str(e), what
            outcomes["rejected"] += 1
            continue
        try:  # survived the child: the same run in-process must not crash either
            x = backend.example(seed=0)
            backend.run(x if len(x) > 1 else next(iter(x.values())))
        except DeployError as e:
            assert "\n" not in str(e), what
        outcomes["loaded"] += 1
    done = outcomes["loaded"] + outcomes["rejected"]
    # the budget guards the suite's time; falling far short of the cases would hide coverage
    assert done >= 200, f"only {done} of {len(all_cases)} cases in {BUDGET_S}s: {outcomes}"
    assert outcomes["rejected"] >= 50 and outcomes["loaded"] >= 20, outcomes


def test_mutated_files_through_the_cli(small_models, tmp_path):
    sample = random.Random(1).sample(cases(small_models, tmp_path, scale=0.1, seed=1), 5)
    for path, what in sample:
        p = subprocess.run([sys.executable, "-m", "device_runners.cli", "bench", str(path),
                            "--runs", "1", "--warmup", "0", "--threads", "1"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
        assert p.returncode in (0, 2), f"{what}: exit {p.returncode}: {p.stderr[-500:]}"
        assert "Traceback" not in p.stderr, what
        if p.returncode == 2:
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("runner: error: "), (what, lines)
