"""Ctrl-C, SIGTERM, a full disk and two runs into one folder: one line, nothing half-made.

The real command lines run as child processes; a signal is sent when the child says (on
stderr) that it has reached the step under test. Afterwards the output folder may only hold
finished results: every model file with a manifest whose sha256 matches it, no manifest
without its file, no hidden temporary file. The full disk is a real tmpfs, mounted in a
private mount namespace (``unshare``) so nothing outside the test sees it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgebase.files import sha256_file
from tests.runner_models import CIFAR10, make_small_models, need

REPO = Path(__file__).resolve().parents[1]
MODEL = "squeezenet1_1.cifar10"  # trained, 32x32: the quickest real export
MODEL_SUFFIXES = (".onnx", ".tflite", ".xml", ".pte", ".edc")
INTERRUPTED = {signal.SIGINT: (130, r"interrupted; unfinished files were removed"),
               signal.SIGTERM: (143, r"stopped by SIGTERM; unfinished files were removed")}


def command(prog: str, *argv) -> list[str]:
    module = "deploy.cli" if prog == "deploy" else "device_runners.cli"
    return [sys.executable, "-m", module, *map(str, argv)]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Child:
    """A CLI in a child process whose stderr is read as it comes (progress bars included)."""

    def __init__(self, cmd: list[str], cwd: Path, sigint=_default_sigint):
        # as a foreground command: a suite started in the background (`pytest &`, nohup)
        # inherits an ignored SIGINT, which the CLI rightly keeps ignoring
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, preexec_fn=sigint)
        self.err = b""

    def wait_for(self, pattern: str, timeout: float = 300) -> None:
        """Read stderr until ``pattern`` shows (raw chunks: tqdm redraws without newlines)."""
        os.set_blocking(self.proc.stderr.fileno(), False)
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.err.decode(errors="replace")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.finish(timeout=5)
                pytest.fail(f"never saw {pattern!r} (exit {self.proc.returncode}):\n"
                            f"{self.err.decode(errors='replace')}")
            chunk = self.proc.stderr.read()
            self.err += chunk or b""
            if not chunk:
                time.sleep(0.05)

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        os.set_blocking(self.proc.stderr.fileno(), True)
        out, rest = self.proc.communicate(timeout=timeout)
        self.err += rest
        return self.proc.returncode, self.err.decode(errors="replace")


def last_line(err: str) -> str:
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip()]
    return lines[-1] if lines else ""


def error_lines(err: str, prog: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"{prog}: ")]


def assert_only_finished(folder: Path) -> list[Path]:
    """Every file in ``folder`` (recursively) is a finished result; returns the model files."""
    models = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        assert not path.name.startswith("."), f"temporary file left: {path}"
        if path.suffix in MODEL_SUFFIXES:
            manifest = Path(str(path) + ".json")
            assert manifest.is_file(), f"{path.name} has no manifest"
            assert json.loads(manifest.read_text())["sha256"] == sha256_file(path), path
            models.append(path)
        elif path.name.endswith(tuple(s + ".json" for s in MODEL_SUFFIXES)):
            assert Path(str(path)[:-5]).is_file(), f"manifest without its file: {path}"
    return models


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_export_conversion(sig, tmp_path):
    out = tmp_path / "out"
    child = Child(command("deploy", "export", MODEL, "--target", "onnx", "--output", out,
                          "--threads", "1"), tmp_path)
    child.wait_for(r"converting ")
    child.proc.send_signal(sig)
    code, err = child.finish()
    want_code, want_line = INTERRUPTED[sig]
    assert code == want_code, err
    assert re.fullmatch(rf"deploy: {want_line}", last_line(err)), err
    assert len(error_lines(err, "deploy")) == 1 and "Traceback" not in err, err
    assert assert_only_finished(out) == []


SLOW_IMPORT = """
import sys, time
print("importing", file=sys.stderr, flush=True)
time.sleep(1.5)  # the signal lands here, inside the import
print("imported", file=sys.stderr, flush=True)
"""
IMPORTING_COMMAND = """
HELP = "imports a slow module, then works"
def add_arguments(parser):
    pass
def run(args):
    import sys, time
    import slow_module
    print("working", file=sys.stderr, flush=True)
    time.sleep(600)  # the deferred interruption ends this; finish() would time out otherwise
    return 0
"""


def importing_child(tmp_path: Path, sigint=_default_sigint) -> Child:
    """The CLI frame running a command that imports a slow module, then works."""
    (tmp_path / "slow_module.py").write_text(SLOW_IMPORT)
    (tmp_path / "importing_command.py").write_text(IMPORTING_COMMAND)
    code = ("import sys; from edgebase.cli import run_cli; "
            "sys.exit(run_cli('deploy', {'go': 'importing_command'}, '0', ['go']))")
    return Child([sys.executable, "-c", code], tmp_path, sigint=sigint)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_an_import_waits_for_the_import(sig, tmp_path):
    """Native extensions abort the process when an exception crosses their initialisation
    (onnx's nanobind enums did, on a Ctrl-C during the export's `import onnx`), so an
    interruption inside an import is delivered right after it."""
    child = importing_child(tmp_path)

    child.wait_for(r"importing")
    child.proc.send_signal(sig)
    code, err = child.finish(timeout=60)
    want_code, want_line = INTERRUPTED[sig]
    assert code == want_code, err
    assert "imported" in err, err  # the import ran to its end
    assert re.fullmatch(rf"deploy: {want_line}", last_line(err)), err


def test_an_ignored_sigint_stays_ignored(tmp_path):
    """`deploy ... &` in a script: the shell ignores SIGINT for it, and so does the CLI."""
    child = importing_child(tmp_path, sigint=_ignore_sigint)
    child.wait_for(r"working")
    child.proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert child.proc.poll() is None  # still working
    child.proc.send_signal(signal.SIGTERM)
    code, err = child.finish(timeout=60)
    assert code == 143 and "Traceback" not in err, err


def test_sigterm_during_int8_quantization_keeps_only_the_finished_parent(tmp_path):
    out = tmp_path / "out"
    child = Child(command("deploy", "export", MODEL, "--target", "openvino", "--int8",
                          "--output", out, "--threads", "1"), tmp_path)
    child.wait_for(r"quantizing with ")
    child.proc.send_signal(signal.SIGTERM)
    code, err = child.finish()
    assert code == 143 and "Traceback" not in err, err
    assert re.fullmatch(r"deploy: stopped by SIGTERM; unfinished files were removed",
                        last_line(err)), err
    # the validated fp32 parent was finished before quantization began; no int8 file
    assert [p.name for p in assert_only_finished(out)] == [f"{MODEL}.xml"]


def test_sigterm_during_training_keeps_the_last_epoch_and_resumes(tmp_path):
    out = tmp_path / "run"
    train = ["train", "squeezenet1_1", "--data", need(CIFAR10), "--epochs", "2", "--limit",
             "256", "--batch-size", "64", "--threads", "1", "--output", out]
    child = Child(command("deploy", *train), tmp_path)
    child.wait_for(r"squeezenet1_1\.cifar10 2/2")  # epoch 1's checkpoint is written
    child.proc.send_signal(signal.SIGTERM)
    code, err = child.finish()
    assert code == 143 and "Traceback" not in err, err
    assert last_line(err) == "deploy: stopped by SIGTERM; unfinished files were removed", err
    # the checkpoint of the finished epoch, nothing half-written, no final weights yet
    assert sorted(p.name for p in out.iterdir()) == ["squeezenet1_1.cifar10.ckpt"]
    done = subprocess.run(command("deploy", *train, "--resume", "--no-progress"), cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming squeezenet1_1.cifar10 after epoch 1/2" in done.stdout, done.stdout
    record = json.loads((out / "squeezenet1_1.cifar10.json").read_text())
    assert [h["epoch"] for h in record["history"]] == [1, 2]


def test_sigterm_during_release_leaves_no_build_file_of_its_own(tmp_path):
    out = tmp_path / "release"
    child = Child(command("deploy", "release", MODEL, "--target", "openvino", "--output", out,
                          "--data", need(CIFAR10), "--limit", "2000", "--threads", "1"),
                  tmp_path)
    child.wait_for(r"eval: +\d+%")  # exported, staged, measuring the staged file
    child.proc.send_signal(signal.SIGTERM)
    code, err = child.finish()
    assert code == 143 and "Traceback" not in err, err
    assert last_line(err) == "deploy: stopped by SIGTERM; unfinished files were removed", err
    assert not [p for p in out.rglob("*") if p.is_file()], sorted(out.rglob("*"))


def test_sigterm_during_eval_writes_no_result(tmp_path):
    small = make_small_models(tmp_path)
    child = Child(command("runner", "eval", small["onnx"], "--data", need(CIFAR10),
                          "--resize", "32", "--scale", 1 / 255, "--json", tmp_path / "r.json"),
                  tmp_path)
    child.wait_for(r"eval: +\d+%")  # the progress bar is drawing
    child.proc.send_signal(signal.SIGTERM)
    code, err = child.finish()
    assert code == 143 and "Traceback" not in err, err
    assert last_line(err) == "runner: stopped by SIGTERM; unfinished files were removed", err
    assert not (tmp_path / "r.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_two_exports_into_one_folder(tmp_path):
    """The second run is refused at once with a lock message; the first ends correctly.

    The first is stopped (SIGSTOP) while it converts, so the two surely overlap however
    fast this machine is."""
    from edgebase.files import folder_lock

    out = tmp_path / "out"
    argv = ("export", MODEL, "--target", "openvino", "--output", out, "--threads", "1")
    first = Child(command("deploy", *argv), tmp_path)
    first.wait_for(r"converting ")  # holds the folder now
    first.proc.send_signal(signal.SIGSTOP)
    try:
        code2, err2 = Child(command("deploy", *argv), tmp_path).finish()
    finally:
        first.proc.send_signal(signal.SIGCONT)
    code1, err1 = first.finish()
    assert code1 == 0, err1
    assert code2 == 2 and "Traceback" not in err2, err2
    assert re.fullmatch(rf"deploy: error: {re.escape(str(out))} is in use by another run "
                        rf"writing into it; wait for it to finish or give this export another "
                        rf"output folder", last_line(err2)), err2
    assert [p.name for p in assert_only_finished(out)] == [f"{MODEL}.xml"]
    with folder_lock(out, "check"):  # free again once the first has ended
        pass


# ---- full disk ----------------------------------------------------------------------------
FULL_DISK = r"""
mount -t tmpfs -o size="$2" tmpfs "$1" || exit 97
if [ "$3" != 0 ]; then head -c "$3" /dev/zero > "$1/filler" || true; fi
mnt=$1; shift 3
"$@"
rc=$?
find "$mnt" -mindepth 1 -print0 > "$mnt.left" 2>/dev/null || true
exit $rc
"""


def on_small_tmpfs(mount: Path, size: str, fill: int, cmd: list[str], cwd: Path):
    """Run ``cmd`` with a tmpfs of ``size`` (``fill`` bytes used up first) mounted on
    ``mount`` in a private mount namespace; returns (exit code, stderr, files left on it)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed: no private tmpfs can be mounted")
    mount.mkdir(parents=True, exist_ok=True)
    wrap = ["unshare", "--mount", "--map-root-user", "sh", "-c", FULL_DISK, "sh",
            str(mount), size, str(fill)]
    p = subprocess.run(wrap + cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                       timeout=600)
    if p.returncode == 97 or "unshare:" in p.stderr:
        pytest.skip(f"cannot mount a tmpfs in a private namespace here: {p.stderr.strip()}")
    listing = Path(str(mount) + ".left")
    left = [x for x in listing.read_bytes().decode().split("\0") if x] if listing.exists() else []
    return p.returncode, p.stderr, [x for x in left if not x.endswith("/filler")]


def test_full_disk_export_is_one_line_and_leaves_nothing(tmp_path):
    mnt = tmp_path / "small"
    code, err, left = on_small_tmpfs(mnt, "256k", 0, command(
        "deploy", "export", MODEL, "--target", "openvino", "--output", mnt / "out",
        "--threads", "1"), tmp_path)
    assert code == 5 and "Traceback" not in err, err
    assert re.fullmatch(r"deploy: error: No space left on device while writing \S+: free some "
                        r"space or choose another output folder; unfinished files were removed",
                        last_line(err)), err
    assert len(error_lines(err, "deploy")) == 1, err
    assert [x for x in left if not Path(x).is_dir() and not x.endswith("/out")] == [], left
    assert all(not Path(x).suffix for x in left), left  # at most the empty folder


def test_full_disk_unpack_and_eval_json(tmp_path):
    import numpy as np

    from quant.container_writer import write_container

    rng = np.random.default_rng(0)
    w = rng.choice(np.linspace(-1, 1, 16, dtype=np.float32), size=(64, 64, 3, 3))
    write_container({"m.onnx": b"H" * 64 + w.tobytes()}, {"w": w}, tmp_path / "m.edc")
    mnt = tmp_path / "small"
    code, err, left = on_small_tmpfs(mnt, "64k", 0, command(
        "runner", "unpack", tmp_path / "m.edc", "-o", mnt / "files"), tmp_path)
    assert code == 5 and "Traceback" not in err, err
    assert re.fullmatch(r"runner: error: No space left on device while writing \S*/files/m\.onnx: "
                        r"free some space or choose another output folder; unfinished files "
                        r"were removed", last_line(err)), err
    assert [x for x in left if Path(x).suffix] == [], left

    small = make_small_models(tmp_path)
    code, err, left = on_small_tmpfs(mnt, "16k", 16 * 1024 - 512, command(
        "runner", "eval", small["onnx"], "--data", need(CIFAR10), "--limit", "20",
        "--resize", "32", "--scale", 1 / 255, "--no-progress", "--json", mnt / "r.json"),
        tmp_path)
    assert code == 5 and "Traceback" not in err, err
    assert re.fullmatch(r"runner: error: No space left on device while writing \S+: free "
                        r"some space or choose another output folder; unfinished files were "
                        r"removed", last_line(err)), err
    assert left == [], left


def test_folder_lock_nests_and_leaves_no_empty_folders(tmp_path):
    import fcntl

    from edgebase.files import FolderBusyError, folder_lock

    target = tmp_path / "a" / "b"
    with folder_lock(target, "export"):
        with folder_lock(target, "export"):  # the int8 stage makes its fp32 parent inside
            pass
        other = os.open(target, os.O_RDONLY)  # another open file: as another process would
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    assert not (tmp_path / "a").exists()  # made for a run that wrote nothing: removed
    with folder_lock(target, "export"):
        (target / "result.txt").write_text("x")
    assert (target / "result.txt").is_file()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from edgebase.files import folder_lock\n"
        f"with folder_lock({str(target)!r}, 'x'):\n    print('held', flush=True); time.sleep(60)")],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match="in use by another run writing into it"):
            with folder_lock(target, "export"):
                pass
    finally:
        holder.kill()
        holder.wait()
