"""deploy device bench|eval|verify against a real OpenSSH server on 127.0.0.1 (tests/ssh_board.py;
the fixtures ``board``, ``python`` and ``remote_dir`` are in tests/conftest.py).

The board is a Python on this machine without the runner: the first run pushes the runner as
wheels into a venv on the "device". The default run keeps that venv in a cache dir that
outlives the session (so later runs are fast); the slow test installs into a fresh one.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from deploy.cli import main
from deploy.device.address import DeviceAddress, parse_address
from edgebase.errors import ConfigError
from tests.runner_models import CIFAR10, need
from tests.ssh_board import free_port

EVAL_FLAGS = ["--resize", "32", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
              "--limit", "100", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tests.runner_models import make_small_models

    return make_small_models(tmp_path_factory.mktemp("device_models"))["onnx"]


def device(board, python, remote_dir, address="board"):
    return ["--device", address, "--ssh-config", str(board.client_config), "--python", python,
            "--remote-dir", remote_dir, "--connect-timeout", "5"]


def deploy(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(err: str) -> str:
    """The error: one line, the last on stderr (progress lines such as 'device: copying'
    may precede it), no traceback."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("deploy: error: "), err
    assert sum("error" in l for l in lines) == 1 and "Traceback" not in err, err
    return lines[-1]


# --- no server needed ----------------------------------------------------------------------
def test_addresses():
    assert parse_address("ssh://pi@board:2222") == DeviceAddress("board", "pi", 2222)
    assert parse_address("ssh://pi@10.0.0.7") == DeviceAddress("10.0.0.7", "pi", None)
    assert parse_address("myboard") == DeviceAddress("myboard")
    assert str(parse_address("pi@board")) == "ssh://pi@board"
    for bad in ("ssh://pi:secret@board", "http://board", "-oProxyCommand=x", "ssh://pi@b:99999",
                "bo ard", "ssh://pi@board/path", "ssh://a;b@board", ""):
        with pytest.raises(ConfigError) as e:
            parse_address(bad)
        assert "secret" not in str(e.value)


def test_runner_flags_pass_through():
    import argparse

    from deploy.commands.device import add_arguments, runner_argv

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["eval", "m.onnx", "--device", "b", "--data", "d.zip", "--mean", "0.5",
                         "0.4", "0.3", "--limit", "7", "--no-progress", "--json", "x.json"])
    argv = runner_argv(args, args._runner_parser, {"model": "/r/m.onnx", "data": "/r/d.zip"})
    assert argv == ["/r/m.onnx", "--data", "/r/d.zip", "--limit", "7", "--mean", "0.5", "0.4",
                    "0.3", "--no-progress"]
    args = p.parse_args(["bench", "m.onnx", "--device", "b", "--shape", "1,3,8,8", "--runs", "3"])
    assert runner_argv(args, args._runner_parser, {"model": "m"}) == [
        "m", "--runs", "3", "--shape", "1,3,8,8"]


def test_unsupported_platforms():
    from deploy.device.ssh import DeviceError
    from deploy.device.wheels import platform_tags

    tags = platform_tags({"platform": "linux-aarch64", "machine": "aarch64",
                          "glibc": "glibc-2.36"})
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags
    assert "manylinux2014_aarch64" in tags
    with pytest.raises(DeviceError, match="unsupported platform.*glibc"):
        platform_tags({"platform": "linux-aarch64", "machine": "aarch64", "glibc": "-"})
    with pytest.raises(DeviceError, match="unsupported platform"):
        platform_tags({"platform": "freebsd-14-arm64", "machine": "arm64", "glibc": "-"})


# --- against the loopback sshd --------------------------------------------------------------
def test_bench_and_eval_on_the_board(board, python, model, remote_dir, tmp_path, capsys):
    """Runner pushed when missing, model and images copied once, JSON back with the device's
    fingerprint, and the device's top-1 equals the host's on the same images."""
    from device_runners.evaluate import evaluate

    bench_json = tmp_path / "bench.json"
    rc, out, err = deploy(["device", "bench", str(model), *device(board, python, remote_dir),
                           "--runs", "10", "--threads", "1", "--json", str(bench_json)], capsys)
    assert rc == 0, err
    doc = json.loads(bench_json.read_text())
    fp = doc["device"]["fingerprint"]
    assert doc["device"]["address"] == "ssh://board"
    assert fp["machine"] and fp["cores"] >= 1 and fp["python"] and fp["cpu_flags"]
    assert "numpy" in fp["versions"] and "edgedeploy" in fp["versions"]
    assert doc["runs"] == 10 and doc["threads"] == 1
    assert "device ssh://board:" in out

    data = need(CIFAR10)
    eval_json = tmp_path / "eval.json"
    rc, out, err = deploy(["device", "eval", str(model), "--data", str(data), *EVAL_FLAGS,
                           *device(board, python, remote_dir, board.url),
                           "--json", str(eval_json)], capsys)
    assert rc == 0, err
    remote = json.loads(eval_json.read_text())
    host = evaluate(model, data, limit=100, resize=32, mean=[0.5] * 3, std=[0.25] * 3,
                    threads=1, progress=False)
    assert remote["images"] == host.images == 100
    assert remote["correct1"] == host.correct1 and remote["correct5"] == host.correct5
    assert remote["device"]["address"] == board.url

    # everything is cached on the device now: nothing goes over again
    rc, out, err = deploy(["device", "eval", str(model), "--data", str(data), *EVAL_FLAGS,
                           *device(board, python, remote_dir)], capsys)
    assert rc == 0 and "copying" not in err and "pushing" not in err, err


def test_no_install_says_what_is_missing(board, python, model, tmp_path, capsys):
    rc, out, err = deploy(["device", "bench", str(model), "--no-install",
                           *device(board, python, str(tmp_path / "fresh"))], capsys)
    assert rc == 5
    assert "missing on the device" in one_error(err) and "--no-install" in err


def test_unreachable_port(board, python, model, tmp_path, capsys):
    json_path = tmp_path / "r.json"
    rc, out, err = deploy(["device", "bench", str(model), "--json", str(json_path),
                           *device(board, python, str(tmp_path / "r"),
                                   f"ssh://root@127.0.0.1:{free_port()}")], capsys)
    assert rc == 5 and "unreachable" in one_error(err), err
    assert not json_path.exists()


def test_refused_key(board, python, model, tmp_path, capsys):
    config = tmp_path / "ssh_config"
    config.write_text(board.client_config.read_text().replace(str(board.key),
                                                              str(board.other_key)))
    rc, out, err = deploy(["device", "bench", str(model), "--device", "board", "--ssh-config",
                           str(config), "--python", python], capsys)
    assert rc == 5 and "authentication refused" in one_error(err), err
    assert "ssh-copy-id" in err


def test_no_python_on_the_device(board, model, tmp_path, capsys):
    rc, out, err = deploy(["device", "bench", str(model), *device(
        board, "/nonexistent/python3", str(tmp_path / "r"))], capsys)
    assert rc == 5 and "no Python 3" in one_error(err), err


def test_no_space_on_the_device(board, python, model, tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a 1 MB tmpfs here (needs root) to simulate a full disk")
    try:
        rc, out, err = deploy(["device", "bench", str(model),
                               *device(board, python, str(small))], capsys)
        assert rc == 5 and "no space left" in one_error(err), err
        leftovers = [p for p in small.rglob("*") if p.is_file()]
        assert leftovers == [], leftovers
    finally:
        subprocess.run(["umount", str(small)])


def test_corrupt_model(board, python, remote_dir, tmp_path, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07" + os.urandom(300))
    rc, out, err = deploy(["device", "bench", str(bad), *device(board, python, remote_dir)],
                          capsys)
    assert rc != 0 and "on ssh://board:" in one_error(err), err


def test_receive_never_leaves_a_partial_file(tmp_path):
    """The device-side copy script on a full disk: the files that fit arrive whole, the next
    one is refused before a byte is written, and a short stream leaves nothing behind."""
    import hashlib
    import sys

    from deploy.device import scripts

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root) to simulate a full disk")

    def receive(files: list[bytes], sizes: list[int] | None = None):
        sizes = sizes or [len(f) for f in files]
        listing = [[f"blobs/{i}/m.bin", hashlib.sha256(f).hexdigest(), n]
                   for i, (f, n) in enumerate(zip(files, sizes))]
        p = subprocess.run([sys.executable, "-c", scripts.RECEIVE, str(small),
                            json.dumps(listing)], input=b"".join(files), capture_output=True)
        return p.returncode, json.loads(p.stdout)

    def on_disk():
        return sorted(str(q.relative_to(small)) for q in small.rglob("*") if q.is_file())

    try:
        first, second = os.urandom(40_000), os.urandom(40_000)
        rc, out = receive([first, second])
        assert rc == 3 and out["error"] == "nospace", out
        assert on_disk() == ["blobs/0/m.bin"]  # whole and checked; no .part file
        assert (small / "blobs/0/m.bin").read_bytes() == first
        (small / "blobs/0/m.bin").unlink()
        good = b"model bytes"
        rc, out = receive([good], [len(good) + 1])
        assert rc == 3 and out["error"] == "corrupt", out
        assert on_disk() == []
    finally:
        subprocess.run(["umount", str(small)])


@pytest.mark.slow
def test_fresh_board_gets_the_runner_from_pushed_wheels(board, python, model, tmp_path, capsys):
    """A fresh cache dir on the device: the host builds and pushes edgedeploy and the runtime
    wheels (from its wheel cache) and the device installs them with --no-index."""
    out_json = tmp_path / "b.json"
    rc, out, err = deploy(["device", "bench", str(model), "--runs", "5", "--json", str(out_json),
                           *device(board, python, str(tmp_path / "fresh"))], capsys)
    assert rc == 0, err
    assert "pushing wheels" in err and "installed into" in err
    installed = json.loads(out_json.read_text())["device"]["installed"]
    names = {i.split()[0].lower() for i in installed}
    assert {"edgedeploy", "numpy", "onnxruntime"} <= names


@pytest.mark.slow
def test_verify_a_release_bundle_on_the_board(board, python, remote_dir, tmp_path_factory,
                                              tmp_path, capsys):
    """runner verify on the device: the bundle's folder goes over, the LiteRT runner is
    installed, the report comes back as JSON; a flipped byte is a one-line error."""
    import shutil

    from tests.test_verify import FLOAT, bundle as make_bundle

    if not FLOAT.exists():
        pytest.skip(f"{FLOAT} is missing")
    folder, _zip = make_bundle.__wrapped__(tmp_path_factory)
    out_json = tmp_path / "v.json"
    rc, out, err = deploy(["device", "verify", str(folder), "--json", str(out_json),
                           *device(board, python, remote_dir)], capsys)
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    assert doc["ok"] and doc["models"] and doc["device"]["fingerprint"]["machine"]
    bad = tmp_path / "bad" / folder.name
    shutil.copytree(folder, bad)
    model = next(bad.glob("*.tflite"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    rc, out, err = deploy(["device", "verify", str(bad), "--no-load",
                           *device(board, python, remote_dir)], capsys)
    line = one_error(err)  # names the file and what is wrong with it
    assert rc == 3 and "NOT verified" in line and model.name in line, err
    assert "differs from the manifest" in line, err


@pytest.mark.slow
def test_benchmark_with_a_device(board, python, remote_dir, tmp_path, capsys):
    """deploy benchmark --device: files timed on the board, labelled so in JSON and Markdown;
    no speed-up against the host's PyTorch eager."""
    out = tmp_path / "bench"
    rc, _, err = deploy(["benchmark", "shufflenet_v2_x0_5.cifar10", "--targets", "onnx",
                         "--no-eval", "--threads", "1", "--runs", "5", "--warmup", "1",
                         "--output", str(out), *device(board, python, remote_dir)], capsys)
    assert rc == 0, err
    report = json.loads((out / "benchmark.json").read_text())
    assert report["device"]["address"] == "ssh://board"
    assert report["device"]["fingerprint"]["machine"]
    (cell,) = report["cells"]
    assert cell["device"] == "ssh://board" and cell["latency"]["1"]["speedup"] is None
    assert cell["latency"]["1"]["p50_ms"] > 0
    md = (out / "benchmark.md").read_text()
    assert "DEVICE: file latencies" in md and "pytorch eager (host)" in md


def test_names_with_shell_characters_stay_names(board, python, model, remote_dir, tmp_path,
                                                capsys):
    """Every remote word is quoted: a file name full of shell syntax is just a name there."""
    import shutil

    odd = tmp_path / "my model;$(touch PWNED)`id`'x.onnx"
    shutil.copy(model, odd)
    rc, out, err = deploy(["device", "bench", str(odd), "--runs", "2", "--warmup", "0",
                           *device(board, python, remote_dir)], capsys)
    assert rc == 0, err
    assert "my model;$(touch PWNED)`id`'x.onnx" in out
    assert not list(Path(remote_dir).rglob("PWNED")) and not Path("PWNED").exists()
    assert not (Path.home() / "PWNED").exists()



GUIDELINES_TINY = ["guidelines", "--target", "onnx", "--guidelines", "G4", "--scales", "1",
                   "--precisions", "fp32", "--threads", "1", "--runs", "4", "--rounds", "2",
                   "--warmup", "1", "--layers", "none", "--no-progress"]


def test_guidelines_timed_on_the_board(board, python, remote_dir, tmp_path, capsys):
    """deploy guidelines --device: the files are made and checked here and timed by the runner
    under the board's Python, in interleaved rounds; every timing, column and verdict names the
    board, and the verdicts are computed from the board's timings."""
    out = tmp_path / "g"
    rc, stdout, err = deploy([*GUIDELINES_TINY, "--output", str(out),
                              *device(board, python, remote_dir)], capsys)
    assert rc == 0, err
    board_python = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True).stdout.strip()
    (path,) = out.glob("guidelines_*.json")
    report = json.loads(path.read_text())
    dev = report["device"]
    assert dev["address"] == "ssh://board" and dev["fingerprint"]["python"] == board_python
    assert dev["cpu_tag"] and path.name == f"guidelines_{dev['cpu_tag']}.json"
    assert dev["fingerprint"]["load_average"][0] >= 0
    cells = report["cells"]
    assert len(cells) == 4 and {c["status"] for c in cells} == {"ok"}
    for c in cells:
        lat = c["latency"]["1"]
        assert c["device"] == lat["device"] == "ssh://board"
        assert len(lat["rounds"]) == 2 and lat["p50_ms"] > 0 and lat["load"] is not None
        # the file the board timed is this one, byte for byte, in its cache
        local = Path(c["file"]).read_bytes()
        assert any(p.read_bytes() == local
                   for p in Path(remote_dir).glob(f"blobs/*/{c['file_name']}"))
    p50 = {c["variant"]: c["latency"]["1"]["p50_ms"] for c in cells}
    (verdict,) = report["verdicts"]
    (m,) = verdict["measured"]
    assert m["device"] == "ssh://board"
    assert m["p50_ms"] == [p50["g4_reluyes_shortcutyes_x1"], p50["g4_reluno_shortcutno_x1"]]
    assert m["cost"] == pytest.approx(m["p50_ms"][0] / m["p50_ms"][1] - 1)
    md = path.with_suffix(".md").read_text()
    assert "DEVICE: device ssh://board" in md and "| onnx fp32 1t on ssh://board |" in md
    assert "onnx fp32 1t on ssh://board img/s" in md and "on ssh://board -" in stdout


def test_guidelines_with_an_unreachable_board_fail_before_making_files(board, python, tmp_path,
                                                                       capsys):
    out = tmp_path / "g"
    rc, _, err = deploy([*GUIDELINES_TINY, "--output", str(out),
                         *device(board, python, str(tmp_path / "r"),
                                 f"ssh://root@127.0.0.1:{free_port()}")], capsys)
    assert rc == 5 and "unreachable" in one_error(err), err
    assert not out.exists()
