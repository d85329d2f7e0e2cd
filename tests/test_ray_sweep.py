"""`deploy benchmark --cluster` on a real Ray cluster of two nodes on 127.0.0.1 (a head and a
worker node, each its own raylet with one CPU and one timing slot): the report has the content
of the local run (same accuracy, latency present, every timing row naming its node and CPU),
a worker node lost mid-sweep costs nothing but a retry, an interrupted head resumes, and
without Ray the flag says how to install it.

The sweeps run the real CLI in a subprocess (the head); the local reference runs in this
process. Trained CIFAR-10 checkpoints, a few test images, a few timed runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.cli import main

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(limit=16, runs=4, rounds=2)


def argv(models, targets, precisions, out: Path, **kw) -> list[str]:
    kw = SMALL | kw
    return ["benchmark", *models, "--target", ",".join(targets), "--precisions",
            ",".join(precisions), "--limit", str(kw["limit"]), "--threads", "1", "--runs",
            str(kw["runs"]), "--rounds", str(kw["rounds"]), "--warmup", "1", "--output",
            str(out), "--json", str(out / "report.json")]


def head(args: list[str], cluster, address: str | None = None) -> subprocess.Popen:
    """The CLI as a user runs it, on this machine, driving the cluster."""
    env = dict(os.environ, **cluster.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "deploy.cli", *args, "--cluster",
                             address or cluster.address], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def local_report(args: list[str]) -> dict:
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    return json.loads((Path(args[args.index("--json") + 1])).read_text())


def row_key(c: dict) -> tuple:
    return c["model"], c["target"], c["precision"], c.get("precision_hint")


def assert_same_content(local: dict, remote: dict) -> None:
    """Accuracy identical, the same rows and files' sizes, latency present on both."""
    assert [m["name"] for m in remote["models"]] == [m["name"] for m in local["models"]]
    for lm, rm in zip(local["models"], remote["models"]):
        for k in ("torch_top1", "images", "data", "macs", "params", "weights"):
            assert rm.get(k) == lm.get(k), (lm["name"], k)
        assert set(rm["eager"]) == set(lm["eager"]) and all(
            e["p50_ms"] > 0 for e in rm["eager"].values())
        assert rm["timed_on"]["cpu"] and rm["timed_on"]["node"]
    assert [row_key(c) for c in remote["cells"]] == [row_key(c) for c in local["cells"]]
    for lc, rc in zip(local["cells"], remote["cells"]):
        assert rc["status"] == lc["status"] == "ok", (row_key(lc), rc.get("error"))
        for k in ("top1", "delta_top1", "agreement"):
            assert rc[k] == lc[k], (row_key(lc), k)
        # the same graph and weights; a converter that numbers its nodes per process (OpenVINO
        # IR names) may write a few more digits in a process that converted more before
        assert rc["size_bytes"] == pytest.approx(lc["size_bytes"], rel=1e-3), row_key(lc)
        assert rc["validation"]["status"] == lc["validation"]["status"] == "passed"
        assert set(rc["latency"]) == set(lc["latency"])
        assert all(lat["p50_ms"] > 0 and lat["speedup"] > 0 for lat in rc["latency"].values())
        # each timing row names the node and CPU it was timed on (eager: the same node)
        assert rc["timed_on"] == next(m for m in remote["models"]
                                      if m["name"] == rc["model"])["timed_on"]
        assert Path(rc["file"]).is_file()  # written into the head's output folder
    for report in (local, remote):
        assert_manifests_hold_latency(report)


def assert_manifests_hold_latency(report: dict) -> None:
    """Every timed file's manifest in the report's output folder holds the report's latency:
    one record per thread count, the row's numbers, the machine (or device) that measured
    them."""
    from edgebase.manifest import read_manifest

    timed = [c for c in report["cells"] if c["status"] == "ok" and c.get("latency")]
    assert timed
    for c in timed:
        records = [b for b in read_manifest(c["file"]).benchmarks
                   if b["precision_hint"] == (c.get("precision_hint") or "f32")]
        assert sorted(str(b["threads"]) for b in records) == sorted(c["latency"]), row_key(c)
        cpu = (c["timed_on"]["cpu_model"] if c.get("timed_on")
               else report["machine"]["cpu"]["model"])
        for b in records:
            lat = c["latency"][str(b["threads"])]
            assert b["tool"] == "deploy benchmark", row_key(c)
            assert [b[k] for k in ("p50_ms", "p90_ms", "rounds", "load", "loaded")] == [
                lat.get(k) for k in ("p50_ms", "p90_ms", "rounds", "load", "loaded")], row_key(c)
            assert b["inference_precision"] == c.get("inference_precision"), row_key(c)
            assert b["device"] == c.get("device"), row_key(c)
            assert (b["machine"] or {}).get("cpu") == (None if c.get("device") else cpu)


def journal(out: Path) -> list[dict]:
    recs = []
    for f in (out / ".sweep" / "cells").glob("*.json"):
        try:
            recs.append(json.loads(f.read_text()))
        except ValueError:
            pass  # being replaced
    return recs


def running_cell(node, title: bytes = b"ray::run_cell") -> bool:
    """A worker process of ``node`` is executing a sweep cell (Ray titles it by the task's
    function: ray::run_cell for ``deploy benchmark``, ray::run_remote for ``deploy compress``)."""
    raylet = node.all_processes["raylet"][0].process.pid
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except (OSError, IndexError, ValueError):
            continue
        if ppid == raylet and cmd.startswith(title):
            return True
    return False


def kill_worker_mid_cell(cluster, proc, title: bytes = b"ray::run_cell") -> None:
    """Kill the worker node as soon as it runs a cell of the sweep ``proc`` drives."""
    worker = cluster.workers[0]
    deadline = time.monotonic() + 600
    while not running_cell(worker, title):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker node never ran a cell"
        time.sleep(0.05)
    cluster.kill(worker)


@pytest.fixture
def cluster(tmp_path_factory):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from deploy.sweep.loopback import LoopbackCluster

    with LoopbackCluster(nodes=2, cpus=1) as c:
        yield c


def test_worker_node_lost_mid_sweep_report_complete_and_equal_to_local(cluster, tmp_path):
    """One model, one target, fp32 (int8: the slow tests): the worker node is killed while it
    runs a cell; that cell runs again on the head node, and the report equals the local
    run's."""
    models, targets, precisions = ["squeezenet1_1.cifar10"], ["onnx"], ["fp32"]
    proc = head(argv(models, targets, precisions, tmp_path / "ray"), cluster)
    kill_worker_mid_cell(cluster, proc)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    remote = json.loads((tmp_path / "ray" / "report.json").read_text())
    retried = remote["cluster"]["retried"]
    assert retried and all(r["error"] in ("NodeDiedError", "WorkerCrashedError")
                           for r in retried)
    assert any("ran again after losing their node" in w for w in remote["warnings"])
    assert retried[0]["cell"] in err.split("retried after a lost node: ")[1]
    node = remote["models"][0]["timed_on"]
    assert f"timed on {node['node']} ({node['cpu']})" in out  # the table says where
    # Ray's own messages (the dead raylet's log) stay out of the user's output
    assert "raylet" not in (out + err).lower() and "Traceback" not in err
    assert "raylet" in (tmp_path / "ray" / ".sweep" / "ray.log").read_text().lower()
    local = local_report(argv(models, targets, precisions, tmp_path / "local"))
    assert_same_content(local, remote)


@pytest.mark.slow
def test_two_models_two_targets_fp32_int8_equal_to_local(cluster, tmp_path):
    models = ["squeezenet1_1.cifar10", "shufflenet_v2_x0_5.cifar10"]
    targets, precisions = ["onnx", "openvino"], ["fp32", "int8"]
    proc = head(argv(models, targets, precisions, tmp_path / "ray"), cluster)
    out, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err
    remote = json.loads((tmp_path / "ray" / "report.json").read_text())
    # both nodes did work; each time cell held a whole node
    assert len({p["node"] for p in remote["cluster"]["placements"]}) == 2
    assert not remote["cluster"]["retried"] and not remote["cluster"]["resumed"]
    local = local_report(argv(models, targets, precisions, tmp_path / "local"))
    assert_same_content(local, remote)


@pytest.mark.slow
def test_interrupted_head_resumes_from_finished_cells(cluster, tmp_path):
    args = argv(["squeezenet1_1.cifar10"], ["onnx"], ["fp32", "int8"], tmp_path / "ray")
    proc = head(args, cluster)
    deadline = time.monotonic() + 600
    while len(journal(tmp_path / "ray")) < 3:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # Ctrl-C on the head
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (tmp_path / "ray" / "report.json").exists(), (out, err)
    assert "Traceback" not in err
    finished = {r["cell"] for r in journal(tmp_path / "ray")}
    proc = head(args, cluster)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert set(report["cluster"]["resumed"]) == finished
    ran = {p["cell"] for p in report["cluster"]["placements"]}
    assert not ran & finished and len(ran) + len(finished) == report["cluster"]["cells"]
    assert all(c["status"] == "ok" and c["latency"] for c in report["cells"])
    assert f"resuming: {len(finished)} of" in err
    assert_manifests_hold_latency(report)  # written on the head as the time cell finished
    # once more: every cell resumes, the exports too, though their manifests gained records
    proc = head(args, cluster)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    again = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert len(again["cluster"]["resumed"]) == again["cluster"]["cells"]
    assert not again["cluster"]["placements"]
    assert again["cells"] == report["cells"]
    assert_manifests_hold_latency(again)


@pytest.mark.slow
def test_ray_client_address(tmp_path):
    """ray://HOST:PORT: the head drives the cluster through Ray Client."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    from deploy.sweep.loopback import LoopbackCluster, free_port

    with LoopbackCluster(nodes=2, cpus=1, client_port=free_port()) as cluster:
        args = argv(["squeezenet1_1.cifar10"], ["onnx"], ["fp32"], tmp_path / "ray")
        proc = head(args, cluster, address=cluster.client_address)
        out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert report["cluster"]["address"].startswith("ray://127.0.0.1:")
    assert [c["status"] for c in report["cells"]] == ["ok"]
    assert report["cells"][0]["latency"]["1"]["p50_ms"] > 0
    assert Path(report["cells"][0]["file"]).is_file()


def test_latency_records_are_no_part_of_a_files_identity(tmp_path):
    """The head writes latency records into its output folder's manifests: the file is still
    the one the journal names (resume), a later unpack of it keeps the records, a copy packed
    for another node carries none; a changed file is no longer the same."""
    from deploy.sweep.artifacts import pack, unpack
    from deploy.sweep.artifacts import files_if_unchanged
    from edgebase.manifest import Artifact, TensorSpec, file_facts, read_manifest, write_manifest

    model = tmp_path / "made" / "m" / "m.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"model bytes")
    spec = TensorSpec(name="x", shape=(1, 3, 32, 32), dtype="float32")
    write_manifest(Artifact(**file_facts(model), format="onnx", precision="fp32",
                            model={"name": "m"}, inputs=(spec,), outputs=(spec,)), model)
    made = pack(model)
    head_file = unpack(made, tmp_path / "head")
    record = {"tool": "deploy benchmark", "runtime": "onnxruntime", "threads": 1, "p50_ms": 1.0}
    write_manifest(read_manifest(head_file).with_benchmarks(record), head_file)

    on_head = files_if_unchanged(head_file, made.hashes())
    assert on_head is not None and on_head.hashes() == made.hashes()
    assert json.loads(on_head.blobs["m.onnx.json"])["benchmarks"] == []
    unpack(made, tmp_path / "head")  # the same export arriving again
    assert read_manifest(head_file).benchmarks == (record,)

    model.write_bytes(b"other bytes")  # another export of m: a new file and manifest
    art = read_manifest(model).replace(**file_facts(model))
    write_manifest(art, model)
    unpack(pack(model), tmp_path / "head")
    assert read_manifest(head_file).benchmarks == () and head_file.read_bytes() == b"other bytes"
    assert files_if_unchanged(head_file, made.hashes()) is None


def test_a_loopback_cluster_caches_nothing_beyond_its_life(monkeypatch):
    """Its nodes keep finished cells in a cache of their own (a test's sweep never finds the
    exports of an earlier run), and the cluster's folder goes with it."""
    from deploy.sweep.artifacts import NODE_CACHE_ENV, node_cache
    from deploy.sweep.loopback import LoopbackCluster

    cluster = LoopbackCluster(nodes=1, cpus=1)
    monkeypatch.setenv(NODE_CACHE_ENV, cluster.env[NODE_CACHE_ENV])
    assert node_cache("k") == cluster.tmpdir / "node-cache" / "k"
    monkeypatch.delenv(NODE_CACHE_ENV)
    assert cluster.tmpdir not in node_cache("k").parents  # a real node: the system's temp
    cluster.shutdown()
    assert not cluster.tmpdir.exists()


HELD = """
import os, signal, sys, time
from deploy.sweep.held_signals import held, raise_if_signalled
from edgebase.cli import Terminated
signum = int(sys.argv[1])
mine = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
signal.signal(signum, mine)  # as in a terminal (a background job starts with SIGINT ignored)
with held():
    raise_if_signalled()  # nothing came yet
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # delivered here, and nothing was raised
    try:
        raise_if_signalled()
    except Terminated:
        print("Terminated")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
    raise_if_signalled()  # taken once
print("restored" if signal.getsignal(signum) is mine else "NOT restored")
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_are_held_while_ray_runs_and_raised_between_waits(signum):
    """Inside a session a Ctrl-C or SIGTERM raises nothing where it lands (inside Ray's own
    code it could be lost); the sweep raises it at its next wait, as the CLI's interruption.
    Afterwards the handlers are the ones before. In a process of its own: the signals are
    real."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    r = subprocess.run([sys.executable, "-c", HELD, str(int(signum))], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    raised = "Terminated" if signum == signal.SIGTERM else "KeyboardInterrupt"
    assert r.stdout.split() == [raised, "restored"], r.stdout + r.stderr


@pytest.mark.parametrize("command", ["benchmark", "compress"])
def test_cluster_without_ray_says_how_to_install(tmp_path, command):
    """The [ray] extra missing: one line naming the fix, exit non-zero, nothing written (a
    `deploy compress` sweep says the same)."""
    code = ("import sys; sys.modules['ray'] = None; from deploy.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    args = (argv(["squeezenet1_1.cifar10"], ["onnx"], ["fp32"], tmp_path / "o")
            if command == "benchmark" else
            ["compress", "squeezenet1_1.cifar10", "--target", "onnx", "--prune", "0.5,0.6",
             "--output", str(tmp_path / "o")])
    r = subprocess.run([sys.executable, "-c", code, *args, "--cluster", "auto"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'edgedeploy[ray]'" in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address", ["ray:/nowhere", "host", "ray://host:port"])
def test_cluster_address_is_checked(address, capsys):
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    code = main(["benchmark", "squeezenet1_1.cifar10", "--target", "onnx", "--cluster", address])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert "auto, ray://HOST:PORT or HOST:PORT" in err[0]
