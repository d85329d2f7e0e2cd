"""`deploy compress` with comma lists: one cell per setting, each container in its own
sub-folder, sweep.json and a table; a failed setting leaves the others running and the exit
non-zero; a re-run skips finished settings; on a real Ray cluster on 127.0.0.1 the containers
are the local run's (the same decoded target file, sizes and accuracy).

Trained SqueezeNet 1.1 (CIFAR-10), no fine-tuning, uniform per-layer settings (no sensitivity
scan), 16 test images."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cli import main

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [("0.5", "5"), ("0.6", "5")]
FOLDERS = ["prune0.5-bits5", "prune0.6-bits5"]


def argv(out: Path, shared_data: Path) -> list[str]:
    return ["compress", "squeezenet1_1.cifar10", "--target", "onnx", "--prune", "0.5,0.6",
            "--share-bits", "5", "--prune-layers", "uniform", "--share-layers", "uniform",
            "--epochs", "0", "--data", str(shared_data / "cifar10.zip"), "--limit", "16",
            "--no-progress", "--output", str(out)]


def run_local(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def summary(out: Path) -> dict:
    return json.loads((out / "sweep.json").read_text())


def assert_container_row(row: dict, out: Path, folder: str) -> None:
    from edgebase.files import sha256_file
    from edgebase.manifest import read_manifest

    assert row["status"] == "ok", row.get("error")
    path = out / folder / "squeezenet1_1.cifar10.onnx.edc"
    assert Path(row["file"]) == path.resolve() and row["folder"] == folder
    art = read_manifest(path)  # the manifest beside it says what the row says
    assert row["sha256"] == sha256_file(path) == art.sha256
    assert row["container_bytes"] == path.stat().st_size
    c = art.extra["container"]
    assert row["target_bytes"] == c["target_bytes"] and row["ratio"] == pytest.approx(
        row["target_bytes"] / row["container_bytes"], abs=0.01)
    assert row["ratio"] > 8  # half the weights gone, 5-bit codes, Huffman
    assert row["images"] == 16 and row["top1"] == c["accuracy"]["top1"]
    assert row["top1_drop"] == pytest.approx(row["ref_top1"] - row["top1"], abs=0.01)


def test_local_sweep_a_failed_setting_and_resume(tmp_path, shared_data):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / FOLDERS[1]).write_text("in the way")  # the second setting cannot write its folder
    code, stdout, stderr = run_local(argv(out, shared_data))
    assert code == 1  # a failed setting: the exit says so, the other setting still ran
    s = summary(out)
    assert [r["folder"] for r in s["cells"]] == FOLDERS and s["failed"] == 1
    assert_container_row(s["cells"][0], out, FOLDERS[0])
    assert s["cells"][1]["status"] == "failed" and s["cells"][1]["error"]
    assert "FAILED" in stdout.splitlines()[3] and "Traceback" not in stderr

    (out / FOLDERS[1]).unlink()
    code, stdout, stderr = run_local(argv(out, shared_data))
    assert code == 0, stderr
    s = summary(out)
    assert s["executor"]["resumed"] == ["prune 0.5, bits 5"]  # only the failed one ran again
    for row, folder in zip(s["cells"], FOLDERS):
        assert_container_row(row, out, folder)
    assert s["cells"][1]["container_bytes"] < s["cells"][0]["container_bytes"]  # more pruned
    lines = stdout.splitlines()  # the table: header, rule, one line per setting
    assert lines[0].split()[:2] == ["setting", "folder"]
    assert all(f"{f}/" in line and line.rstrip().endswith("ok")
               for f, line in zip(FOLDERS, lines[2:4]))

    first = s["cells"]
    code, stdout, stderr = run_local(argv(out, shared_data))
    assert code == 0
    s = summary(out)
    assert s["executor"]["resumed"] == ["prune 0.5, bits 5", "prune 0.6, bits 5"]
    assert "resuming: 2 of 2 cells" in stderr and "not run again" in stdout
    assert s["cells"] == first


def test_bad_settings_are_one_line_errors(tmp_path, capsys):
    """Checked before any work: nothing is written."""
    bad = main(["compress", "squeezenet1_1.cifar10", "--target", "onnx", "--prune", "0.5,0.5",
                "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert bad != 0 and len(err) == 1 and "names a setting twice" in err[0]
    bad = main(["compress", "squeezenet1_1.cifar10", "--target", "onnx", "--prune", "0.5,1.5",
                "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert bad != 0 and len(err) == 1 and "--prune 1.5" in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_ray_sweep_equals_the_local_sweep(tmp_path, shared_data, monkeypatch):
    """Two settings as Ray tasks on a head and a worker node: the containers come back to the
    head's --output and hold the local run's target file (same sha256), sizes and top-1."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from deploy.sweep.loopback import LoopbackCluster

    # the nodes' caches of finished cells (deploy.sweep.artifacts.node_cache) start empty
    (tmp_path / "nodes").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "nodes"))
    with LoopbackCluster(nodes=2, cpus=1) as cluster:
        env = dict(os.environ, **cluster.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        r = subprocess.run([sys.executable, "-m", "deploy.cli",
                            *argv(tmp_path / "ray", shared_data), "--cluster", cluster.address],
                           env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "raylet" not in r.stderr.lower()
    remote = summary(tmp_path / "ray")
    assert remote["executor"]["executor"] == "ray" and not remote["executor"]["retried"]
    assert not any(r.get("reused") for r in remote["cells"])  # compressed on the nodes
    code, _, err = run_local(argv(tmp_path / "local", shared_data))
    assert code == 0, err
    local = summary(tmp_path / "local")
    for lr, rr, folder in zip(local["cells"], remote["cells"], FOLDERS):
        assert_container_row(rr, tmp_path / "ray", folder)
        assert rr["key"] == lr["key"]  # the same work by its content address
        assert rr["target_sha256"] == lr["target_sha256"]  # the same decoded ONNX file
        for k in ("target_bytes", "images", "ref_top1", "top1", "top1_drop"):
            assert rr[k] == lr[k], (folder, k)
        # the container also carries the export's manifest, whose timings differ by run
        assert rr["container_bytes"] == pytest.approx(lr["container_bytes"], abs=16)
        assert rr["ratio"] == pytest.approx(lr["ratio"], abs=0.01)


@pytest.mark.slow
def test_ray_sweep_survives_a_lost_node(tmp_path, shared_data):
    """The worker node killed while it compresses a setting: the setting runs again on the
    head node, both containers come back whole, the table and sweep.json say which was
    retried, and Ray's own messages stay in its log."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from deploy.sweep.loopback import LoopbackCluster
    from tests.test_ray_sweep import kill_worker_mid_cell

    with LoopbackCluster(nodes=2, cpus=1) as cluster:
        env = dict(os.environ, **cluster.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        proc = subprocess.Popen([sys.executable, "-m", "deploy.cli",
                                 *argv(tmp_path / "ray", shared_data), "--cluster",
                                 cluster.address], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        kill_worker_mid_cell(cluster, proc, b"ray::run_remote")
        out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    remote = summary(tmp_path / "ray")
    retried = remote["executor"]["retried"]
    assert retried and all(r["error"] in ("NodeDiedError", "WorkerCrashedError")
                           for r in retried)
    assert f"ran again after losing their node or worker: {retried[0]['cell']}" in out
    for row, folder in zip(remote["cells"], FOLDERS):
        assert_container_row(row, tmp_path / "ray", folder)
    assert "raylet" not in (out + err).lower() and "Traceback" not in err
