"""The emulated aarch64 board (`deploy device emulate aarch64`): real aarch64 Python, numpy and
runtime binaries under QEMU user mode behind a real sshd on 127.0.0.1, driven with the same
`deploy device` commands as a board on the desk.

Parity tolerances (aarch64 outputs against this host's, the same file and images):
- top-1 on the same images: equal within 0.1 point (on 100 images: the same count);
- float files: max |Δ score| <= 1e-4 (the fp32 export tolerance against PyTorch; differences
  come from kernel summation order only);
- int8 files: max |Δ score| <= 2 output quantization steps (XNNPACK and onnxruntime requantize
  with CPU-specific rounding).

The default run keeps to a small subset from a warm cache (the root in
~/.cache/edgedeploy/aarch64, the runner there in ~/.cache/edgedeploy/device/emulated-aarch64):
the line and clean stop, a third-party TFLite file benched there, and eval parity of a small
ONNX net. The full parity set on shufflenet_v2_x0_5.cifar10 and the offline install are slow.
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deploy.cli import main
from deploy.device.address import parse_address
from deploy.device.loopback import descendants
from tests.runner_models import CIFAR10, QUANT_TFLITE, need, output_step
from tests.ssh_board import EmulatedBoard, emulation_missing

FLOAT_MAX_ABS = 1e-4
INT8_STEPS = 2


@pytest.fixture(scope="module")
def board():
    why = emulation_missing()
    if why:
        pytest.skip(why)
    b = EmulatedBoard()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def remote_dir():
    """Outlives the session: the runtime's venv and the runner are installed once."""
    from deploy.device.wheels import host_cache

    path = host_cache() / "emulated-aarch64"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory) -> Path:
    """The first 10 test images of each CIFAR-10 class as a small zip of the same layout,
    byte-identical on every run (fixed dates), so that it goes to the board once: listing the
    60,000-entry zip alone takes seconds of emulated Python."""
    import zipfile

    path = tmp_path_factory.mktemp("data") / "cifar10-test-100.zip"
    with zipfile.ZipFile(need(CIFAR10)) as src, zipfile.ZipFile(path, "w") as dst:
        names = sorted(n for n in src.namelist() if n.startswith("cifar10/test/")
                       and n.endswith(".jpg"))
        per_class: dict[str, list[str]] = {}
        for n in names:
            per_class.setdefault(n.split("/")[2], []).append(n)
        for cls in sorted(per_class):
            for n in per_class[cls][:10]:
                dst.writestr(zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0)), src.read(n))
    return path


def deploy(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_emulate_prints_one_line_and_stops_cleanly(tmp_path):
    """One line on stdout (address with the board's Python, the ssh config naming the key);
    ssh reaches an aarch64 Python there; SIGTERM ends sshd and its sessions, removes the keys
    and the --json file, and exits 0."""
    why = emulation_missing()
    if why:
        pytest.skip(why)
    info = tmp_path / "board.json"
    b = EmulatedBoard("--json", str(info))
    try:
        address = parse_address(b.address)
        assert address.host == "127.0.0.1" and address.port and address.user
        assert address.python.endswith("/aarch64/bin/python3-neoverse-n1")
        doc = json.loads(info.read_text())
        assert doc["address"] == b.address and doc["cpu"] == "neoverse-n1"
        assert Path(doc["identity"]).is_file() and doc["ssh_config"] == str(b.ssh_config)
        remote = shlex.join([address.python, "-c", "import os, platform; print(platform."
                             "machine(), os.environ.get('EDGEDEPLOY_EMULATOR'))"])
        probe = subprocess.run(["ssh", "-F", str(b.ssh_config), "-o", "BatchMode=yes", "board",
                                remote], capture_output=True, text=True, timeout=300)
        assert probe.stdout.split()[:2] == ["aarch64", "qemu-aarch64"], probe
        sshd = descendants(b.proc.pid)
        assert sshd
    finally:
        rc = b.stop()
    assert rc == 0, b.errors()
    assert "stopping the aarch64 board" in b.errors()
    assert not b.ssh_config.parent.exists() and not info.exists()
    assert not [p for p in sshd if os.path.exists(f"/proc/{p}")]


def test_emulate_bad_input(capsys):
    """One line each, non-zero exit, nothing left running: a CPU QEMU does not have, `max`,
    a port out of range, a port already taken."""
    import socket
    import tempfile

    why = emulation_missing()
    if why:
        pytest.skip(why)
    before = set(Path(tempfile.gettempdir()).glob("edgedeploy-sshd-*"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {("--cpu", "max"): "SME", ("--cpu", "cortex-z9"): "measured: cortex-a53",
                 ("--port", "70000"): "expected 1-65535",
                 ("--port", str(port)): f"sshd did not start on 127.0.0.1:{port}"}
        for flags, said in cases.items():
            rc = main(["device", "emulate", "aarch64", *flags])
            err = capsys.readouterr().err.strip().splitlines()
            assert rc != 0 and err[-1].startswith("deploy: error: ") and said in err[-1], err
            assert "Traceback" not in "\n".join(err)
    assert set(Path(tempfile.gettempdir()).glob("edgedeploy-sshd-*")) <= before  # keys removed


def test_address_names_the_boards_python():
    from edgebase.errors import ConfigError

    a = parse_address("ssh://pi@board:2222?python=/home/pi/venv/bin/python")
    assert (a.host, a.user, a.port, a.python) == ("board", "pi", 2222, "/home/pi/venv/bin/python")
    assert parse_address(str(a)) == a
    for bad in ("ssh://pi@board?py=/x", "ssh://pi@board?python=-c", "ssh://pi@board?python=",
                "ssh://pi@board?python=/a&python=/b"):
        with pytest.raises(ConfigError, match="python"):
            parse_address(bad)
    from deploy.device.session import Device

    assert Device(a).python == Device(a, python=a.python).python == a.python
    assert Device(parse_address("ssh://pi@board")).python == "python3"
    with pytest.raises(ConfigError, match="contradicts"):
        Device(a, python="/usr/bin/python3")


def test_third_party_tflite_benches_on_the_board(board, remote_dir, tmp_path, capsys):
    """Google's uint8 MobileNet V1 (no manifest of ours) runs on aarch64 XNNPACK; the result
    and its fingerprint say the timings are emulated."""
    out_json = tmp_path / "bench.json"
    rc, out, err = deploy(["device", "bench", str(need(QUANT_TFLITE)), *board.flags(remote_dir),
                           "--runs", "3", "--warmup", "1", "--threads", "1", "--no-isolate",
                           "--json", str(out_json)], capsys)
    assert rc == 0, err
    doc = json.loads(out_json.read_text())
    fp = doc["device"]["fingerprint"]
    assert fp["machine"] == "aarch64" and "asimd" in fp["cpu_flags"]
    assert fp["cpu_parts"] == ["0xd0c"]  # Neoverse N1, as QEMU's -cpu says
    assert doc["emulated"] == fp["emulated"] == "qemu-aarch64 10.0.2 neoverse-n1"
    assert doc["runs"] == 3 and doc["p50_ms"] > 0 and doc["runtime"] == "litert"
    assert "EMULATED by qemu-aarch64" in out and "timings are not a board's" in out


def test_eval_parity_with_the_host(board, remote_dir, cifar100, tmp_path, capsys):
    """runner eval on the board and on this host over the same 100 CIFAR-10 images: the same
    top-1 count, and every score within the float tolerance (--outputs brings them back)."""
    from device_runners.evaluate import evaluate
    from tests.runner_models import make_small_models

    model = make_small_models(tmp_path)["onnx"]
    flags = ["--resize", "32", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
             "--threads", "1", "--no-progress", "--no-isolate"]
    data = cifar100
    rc, out, err = deploy(["device", "eval", str(model), "--data", str(data), *flags,
                           *board.flags(remote_dir), "--outputs", str(tmp_path / "arm.npz"),
                           "--json", str(tmp_path / "arm.json")], capsys)
    assert rc == 0, err
    arm = json.loads((tmp_path / "arm.json").read_text())
    host = evaluate(model, data, resize=32, mean=[0.5] * 3, std=[0.25] * 3,
                    threads=1, isolate=False, outputs=tmp_path / "x86.npz")
    assert arm["device"]["fingerprint"]["machine"] == "aarch64"
    assert arm["outputs"] == str(tmp_path / "arm.npz")
    assert arm["images"] == host.images == 100 and arm["correct1"] == host.correct1
    a, h = np.load(tmp_path / "arm.npz"), np.load(tmp_path / "x86.npz")
    assert list(a["names"]) == list(h["names"]) and (a["labels"] == h["labels"]).all()
    assert a["scores"].shape == (100, 10)
    assert np.abs(a["scores"] - h["scores"]).max() <= FLOAT_MAX_ABS


# --- slow: the full parity set on the trained CIFAR-10 ShuffleNet ------------------------------
PARITY_FILES = ("shufflenet_v2_x0_5.cifar10.tflite", "shufflenet_v2_x0_5.cifar10.int8.tflite",
                "shufflenet_v2_x0_5.cifar10.onnx")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """`deploy release` of shufflenet_v2_x0_5.cifar10 to TFLite and ONNX, fp32 and int8,
    every file measured on 1,000 CIFAR-10 test images on this host."""
    out = tmp_path_factory.mktemp("release")
    data = str(need(CIFAR10))
    assert main(["release", "shufflenet_v2_x0_5.cifar10", "--target", "tflite,onnx", "--int8",
                 "--calib", data, "--data", data, "--limit", "1000", "--bench-runs", "3",
                 "--threads", "1", "--output", str(out)]) == 0
    (bundle,) = [p for p in out.iterdir() if (p / "manifest.json").is_file()]  # not build/
    return bundle


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY_FILES)
def test_shufflenet_parity_on_1000_images(board, remote_dir, release, name, tmp_path, capsys):
    """bench and eval on the board: top-1 on 1,000 CIFAR-10 test images within 0.1 point of
    this host's, every score within tolerance (float 1e-4; int8 two output steps)."""
    from device_runners.evaluate import evaluate

    model = release / name
    data = need(CIFAR10)
    rc, out, err = deploy(["device", "bench", str(model), *board.flags(remote_dir), "--runs",
                           "3", "--warmup", "1", "--threads", "1", "--no-isolate", "--json",
                           str(tmp_path / "bench.json")], capsys)
    assert rc == 0, err
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["emulated"] and bench["device"]["fingerprint"]["machine"] == "aarch64"
    rc, out, err = deploy(["device", "eval", str(model), "--data", str(data), "--limit", "1000",
                           "--threads", "1", "--no-progress", "--no-isolate",
                           *board.flags(remote_dir), "--outputs", str(tmp_path / "arm.npz"),
                           "--json", str(tmp_path / "arm.json")], capsys)
    assert rc == 0, err
    arm = json.loads((tmp_path / "arm.json").read_text())
    host = evaluate(model, data, limit=1000, threads=1, isolate=False,
                    outputs=tmp_path / "x86.npz")
    assert arm["images"] == host.images == 1000
    assert abs(arm["top1"] - host.top1) <= 0.1, (arm["top1"], host.top1)
    a, h = np.load(tmp_path / "arm.npz"), np.load(tmp_path / "x86.npz")
    assert list(a["names"]) == list(h["names"])
    step = output_step(model) if model.suffix == ".tflite" else None
    limit = INT8_STEPS * step if step else FLOAT_MAX_ABS
    assert (".int8." in name) == (step is not None)
    assert np.abs(a["scores"] - h["scores"]).max() <= limit


@pytest.mark.slow
def test_verify_the_release_on_the_board(board, remote_dir, release, tmp_path, capsys):
    """runner verify on the board re-measures every file of the bundle (TFLite and ONNX: both
    runtimes installed) on the recorded 1,000 images: within 0.1 point of the host's record."""
    rc, out, err = deploy(["device", "verify", str(release), "--data", str(need(CIFAR10)),
                           "--tolerance", "0.1", *board.flags(remote_dir), "--json",
                           str(tmp_path / "verify.json")], capsys)
    assert rc == 0, err
    doc = json.loads((tmp_path / "verify.json").read_text())
    assert doc["ok"] and doc["device"]["fingerprint"]["machine"] == "aarch64"
    assert len(doc["models"]) == 4


@pytest.mark.slow
def test_offline_board_gets_the_runner_from_pushed_wheels(tmp_path, capsys):
    """A board without network (its own network namespace) and a fresh cache: the host pushes
    the runtime's aarch64 wheels and the runner, the board installs them with --no-index."""
    why = emulation_missing()
    if why:
        pytest.skip(why)
    b = EmulatedBoard("--offline")
    try:
        python = parse_address(b.address).python
        assert python.endswith("-offline")
        probe = subprocess.run(
            ["ssh", "-F", str(b.ssh_config), "board", shlex.join([python, "-c", (
                "import socket\ntry:\n socket.create_connection(('pypi.org', 443), 5)\n"
                " print('online')\nexcept OSError:\n print('offline')")])],
            capture_output=True, text=True, timeout=300)
        assert probe.stdout.strip() == "offline", probe
        out_json = tmp_path / "b.json"
        rc, out, err = deploy(["device", "bench", str(need(QUANT_TFLITE)), "--runs", "2",
                               "--warmup", "0", "--no-isolate", "--json", str(out_json),
                               *b.flags(tmp_path / "fresh")], capsys)
        assert rc == 0, err
        assert "pushing wheels" in err and "installed into" in err and "unpacked" in err
        installed = json.loads(out_json.read_text())["device"]["installed"]
        assert {"edgedeploy", "numpy", "ai-edge-litert"} <= {i.split()[0] for i in installed}
    finally:
        b.stop()


@pytest.mark.slow
def test_openvino_on_arm_computes_fp32_files_in_f32(board, remote_dir, cifar100, tmp_path,
                                                     capsys):
    """OpenVINO's ARM CPU plugin defaults to f16; the runner's rule (an fp32 file runs with the
    f32 hint unless asked otherwise) holds there: f32 by default, matching the host's scores;
    --precision-hint auto shows the ARM default."""
    from device_runners.evaluate import evaluate
    from tests.runner_models import make_small_models

    model = make_small_models(tmp_path)["xml"]
    flags = ["--resize", "32", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
             "--threads", "1", "--no-progress", "--no-isolate"]
    docs = {}
    for hint in ("f32", "auto"):
        argv = ["device", "eval", str(model), "--data", str(cifar100), *flags,
                *board.flags(remote_dir), "--outputs", str(tmp_path / f"{hint}.npz"),
                "--json", str(tmp_path / f"{hint}.json")]
        rc, out, err = deploy(argv + (["--precision-hint", hint] if hint != "f32" else []),
                              capsys)
        assert rc == 0, err
        docs[hint] = json.loads((tmp_path / f"{hint}.json").read_text())
    assert docs["f32"]["precision_hint"] == "f32" and docs["f32"]["inference_precision"] == "f32"
    assert docs["auto"]["inference_precision"] == "f16"
    host = evaluate(model, cifar100, resize=32, mean=[0.5] * 3, std=[0.25] * 3, threads=1,
                    isolate=False, outputs=tmp_path / "x86.npz")
    assert docs["f32"]["correct1"] == host.correct1
    h = np.load(tmp_path / "x86.npz")["scores"]
    assert np.abs(np.load(tmp_path / "f32.npz")["scores"] - h).max() <= FLOAT_MAX_ABS


@pytest.mark.slow
def test_benchmark_marks_emulated_latencies(board, remote_dir, tmp_path, capsys):
    """deploy benchmark --device on the emulated board: the report, its rows and its Markdown
    say the file latencies are emulated, and nothing is compared with the host."""
    out = tmp_path / "bench"
    rc, _, err = deploy(["benchmark", "shufflenet_v2_x0_5.cifar10", "--targets", "onnx",
                         "--no-eval", "--threads", "1", "--runs", "3", "--warmup", "1",
                         "--output", str(out), *board.flags(remote_dir)], capsys)
    assert rc == 0, err
    report = json.loads((out / "benchmark.json").read_text())
    assert report["device"]["emulated"].startswith("qemu-aarch64")
    (cell,) = report["cells"]
    assert cell["emulated"] and cell["latency"]["1"]["emulated"]
    assert cell["latency"]["1"]["speedup"] is None
    md = (out / "benchmark.md").read_text()
    assert "EMULATED: that device is qemu-aarch64" in md and "emulated device" in md
