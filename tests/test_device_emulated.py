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
~/.cache/edgedeploy/aarch64, the runner's venv under ~/.cache/edgedeploy/device/test-aarch64-board):
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
from tests.runner_models import CIFAR10, QUANT_TFLITE, need
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

    path = host_cache() / "test-aarch64-board"
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
