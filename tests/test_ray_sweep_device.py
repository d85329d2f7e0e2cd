"""`deploy benchmark --cluster ... --device ...`: a real Ray cluster of two nodes on 127.0.0.1
and a real OpenSSH server on 127.0.0.1 as the board (tests/ssh_board.py). Export and evaluation
run anywhere; every time cell runs on the node of the machine that runs the command, holding
its timing slot, and times the files on the board; the report has the content of the local
`--device` run (same accuracy and rows, device latencies without a speed-up, the device named).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy.cli import main
from tests.test_ray_sweep import (argv, assert_manifests_hold_latency, head, local_report,
                                  row_key)


@pytest.fixture(scope="module")
def device_flags(board, python, remote_dir):  # the board's fixtures: tests/conftest.py
    return ["--device", "board", "--ssh-config", str(board.client_config), "--python", python,
            "--remote-dir", remote_dir, "--connect-timeout", "5"]


def cluster_of(nodes: int = 2, **kw):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from deploy.sweep.loopback import LoopbackCluster

    return LoopbackCluster(nodes=nodes, cpus=1, **kw)


@pytest.mark.slow
def test_device_timed_from_the_head_node_equals_local(device_flags, tmp_path):
    models, targets, precisions = ["squeezenet1_1.cifar10"], ["onnx"], ["fp32"]
    with cluster_of() as cluster:
        head_node = cluster.cluster.head_node.node_id[:12]
        proc = head(argv(models, targets, precisions, tmp_path / "ray") + device_flags, cluster)
        out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    remote = json.loads((tmp_path / "ray" / "report.json").read_text())
    local = local_report(argv(models, targets, precisions, tmp_path / "local") + device_flags)

    for report in (local, remote):
        assert report["device"]["address"] == "ssh://board"
        assert report["device"]["fingerprint"]["machine"] and not report["device"]["emulated"]
    assert (remote["device"]["fingerprint"]["machine"], remote["device"]["fingerprint"]["cores"]
            ) == (local["device"]["fingerprint"]["machine"],
                  local["device"]["fingerprint"]["cores"])
    (lm,), (rm,) = local["models"], remote["models"]
    for k in ("torch_top1", "images", "data", "macs", "params", "weights"):
        assert rm.get(k) == lm.get(k), k
    assert set(rm["eager"]) == set(lm["eager"]) == {"1"} and rm["eager"]["1"]["p50_ms"] > 0
    assert rm["timed_on"]["node"] == head_node  # PyTorch eager on this machine's node

    assert [row_key(c) for c in remote["cells"]] == [row_key(c) for c in local["cells"]]
    for lc, rc in zip(local["cells"], remote["cells"]):
        assert rc["status"] == lc["status"] == "ok", (row_key(lc), rc.get("error"))
        for k in ("top1", "delta_top1", "agreement"):
            assert rc[k] == lc[k], (row_key(lc), k)
        assert rc["size_bytes"] == pytest.approx(lc["size_bytes"], rel=1e-3)
        assert rc["device"] == lc["device"] == "ssh://board" and "timed_on" not in rc
        assert rc["device_fingerprint"]["machine"] and rc["emulated"] is None
        assert set(rc["latency"]) == set(lc["latency"]) == {"1"}
        for lat in (rc["latency"]["1"], lc["latency"]["1"]):  # measured on the board, no
            assert lat["p50_ms"] > 0 and lat["device"] == "ssh://board"  # speed-up against
            assert lat["speedup"] is None  # the host's PyTorch eager
        assert Path(rc["file"]).is_file()
    for report in (local, remote):  # the board's latency in the manifests of the head's files
        assert_manifests_hold_latency(report)

    # every time cell ran on the head's node (this machine's); the cluster says where it timed
    cluster_rec = remote["cluster"]
    times = [p for p in cluster_rec["placements"] if p["cell"].endswith(" time")]
    assert times and all(p["node"] == head_node for p in times)
    assert cluster_rec["device"] == "ssh://board"
    assert "timed the files on ssh://board" in err
    assert "pytorch eager (host)" in out and "Traceback" not in err
    md = (tmp_path / "ray" / "report.md").read_text()
    assert "DEVICE: file latencies" in md


def test_device_needs_a_timing_slot_on_this_node(tmp_path):
    """The node of the machine running the command offers no timing slot: one line naming the
    fix, before any cell runs or the device is contacted (so no board is needed)."""
    args = argv(["squeezenet1_1.cifar10"], ["onnx"], ["fp32"], tmp_path / "o") + [
        "--device", "ssh://nobody@127.0.0.1:1"]
    with cluster_of(nodes=1, head_slot=False) as cluster:
        proc = head(args, cluster)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deploy: error: --device"), err
    assert "offers no timing_slot" in lines[0] and "--resources=" in lines[0]
    assert not (tmp_path / "o" / "report.json").exists()
    assert not list((tmp_path / "o").glob("*/*.onnx"))  # no cell ran


def test_device_through_ray_client_is_refused(capsys, tmp_path):
    """Through Ray Client this machine is no node of the cluster: refused in one line, without
    connecting (no cluster or board needed)."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    code = main(argv(["squeezenet1_1.cifar10"], ["onnx"], ["fp32"], tmp_path / "o")
                + ["--device", "board", "--cluster", "ray://127.0.0.1:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1, err
    assert "Ray Client" in err[0] and "--cluster auto or HOST:PORT" in err[0]
    assert not (tmp_path / "o" / "report.json").exists()
