"""Slow: a release of every target (and int8 where the quantizers are installed), verified,
and rebuilt by the CLI in two fresh processes to compare the model files byte for byte."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_release import CIFAR, ROOT, small_model

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CIFAR.exists(), reason=f"{CIFAR} is not there")]
TARGETS = ("tflite", "onnx", "openvino")


def int8_offered() -> bool:
    from edgebase.capabilities import get_target

    return all("int8" in get_target(t).precisions for t in TARGETS)


def cli_args(spec: dict, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "deploy.cli", "release", spec["model"], "--targets",
            ",".join(TARGETS), "--output", str(out), "--threads", "2", "--bench-runs", "20",
            *extra]
    for key, flag in (("weights", "--weights"),):
        if key in spec:
            args += [flag, str(spec[key])]
    return args


def model_hashes(folder: Path) -> dict[str, str]:
    m = json.loads((folder / "manifest.json").read_text())
    out = {x["path"]: x["sha256"] for x in m["models"]}
    out.update({c["path"]: c["sha256"] for x in m["models"] for c in x["companions"]})
    return out


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """The same release built twice, each by its own `deploy release` process."""
    spec = small_model(tmp_path_factory.mktemp("weights"))
    folders = []
    int8 = ("--int8", "--int8-io", "uint8", "--calib", str(CIFAR)) if int8_offered() else ()
    for run in ("a", "b"):
        out = tmp_path_factory.mktemp(f"build_{run}")
        extra = int8 + (("--eval", str(CIFAR), "--eval-limit", "500") if run == "a" else ())
        proc = subprocess.run(cli_args(spec, out, *extra), cwd=ROOT, capture_output=True,
                              text=True, timeout=3600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        folders.append(next(p for p in out.iterdir() if p.is_dir() and p.name != "build"))
    return folders


def test_full_release_verifies_with_accuracy(two_builds):
    proc = subprocess.run([sys.executable, "-m", "device_runners.cli", "verify",
                           str(two_builds[0]) + ".zip", "--data", str(CIFAR), "--threads", "2"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    precisions = 2 if int8_offered() else 1
    assert proc.stdout.count("(loaded), top-1") == precisions * len(TARGETS)


def test_flipped_byte_in_each_file_is_named(two_builds, tmp_path):
    from device_runners.verify import verify

    folder = two_builds[0]
    files = [f["path"] for f in json.loads((folder / "manifest.json").read_text())["files"]]
    for rel in files:
        root = tmp_path / rel / folder.name
        shutil.copytree(folder, root)
        data = bytearray((root / rel).read_bytes())
        data[len(data) // 2] ^= 0x04
        (root / rel).write_bytes(bytes(data))
        assert verify(root, load=False).bad_files() == [rel]


def test_rebuild_gives_identical_model_files(two_builds):
    """Identical bytes, OpenVINO int8 .xml included (its generated node names are renumbered
    in graph order before saving)."""
    a, b = (model_hashes(f) for f in two_builds)
    assert a.keys() == b.keys()
    assert sorted(k for k in a if a[k] != b[k]) == []
