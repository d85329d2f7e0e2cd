"""The device tests' board: a real OpenSSH server on 127.0.0.1 (deploy.device.loopback) whose
"board" Python is one on this machine without the runner, so pushing the runner is exercised
for real."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploy.device.loopback import LoopbackSSHD, free_port, sshd_binary

SSHD = sshd_binary()
__all__ = ["SSHD", "board_python", "free_port", "start_board"]


def board_python() -> str | None:
    """A Python 3.10+ on this machine that lacks the runner and numpy (the board's Python)."""
    candidates = [os.environ.get("EDGEDEPLOY_BOARD_PYTHON"),
                  *sorted(Path("/root/.pyenv/versions").glob("3.1[0-9]*/bin/python3")),
                  "/usr/bin/python3", "/usr/local/bin/python3"]
    for c in candidates:
        if not c or not os.path.exists(c):
            continue
        code = ("import sys, venv, ensurepip; assert sys.version_info >= (3, 10)\n"
                "try:\n import numpy\nexcept ImportError:\n sys.exit(0)\nsys.exit(1)")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        if subprocess.run([str(c), "-c", code], env=env, capture_output=True).returncode == 0:
            return str(c)
    return None


def start_board(root: Path) -> LoopbackSSHD:
    server = LoopbackSSHD(folder=root)
    server.start()
    return server


if __name__ == "__main__":  # a board for trying things by hand: prints its address
    import signal

    def _interrupt(*_):
        raise KeyboardInterrupt

    b = start_board(Path(sys.argv[1]))
    print(b.url, b.client_config, board_python(), flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # kill or a job runner stops the sshd too, as Ctrl-C does
    try:
        b.proc.wait()
    except KeyboardInterrupt:
        b.stop()


# --- the emulated aarch64 board: `deploy device emulate aarch64` run as users run it ---------
REPO = Path(__file__).resolve().parents[1]


def emulation_missing() -> str | None:
    """Why `deploy device emulate aarch64` cannot run on this host, or None."""
    import platform
    import shutil

    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"the emulated board is prepared on x86-64 Linux, not {platform.machine()}"
    missing = [t for t in ("apt-get", "dpkg-deb", "ssh", "ssh-keygen") if not shutil.which(t)]
    if SSHD is None:
        missing.append("sshd")
    return f"{', '.join(missing)} not installed (.ci/run installs them)" if missing else None


class EmulatedBoard:
    """A running `deploy device emulate aarch64 FLAGS` process and the line it printed."""

    def __init__(self, *flags: str, timeout: float = 1800):
        import select
        import tempfile

        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "device", "emulate", "aarch64", *flags],
            stdout=subprocess.PIPE, stderr=self.stderr, env=env, cwd=REPO, text=True)
        # the first run prepares the cached root (downloads): minutes; later ones: seconds
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        self.line = self.proc.stdout.readline() if ready else ""
        if not self.line:
            self.stop()
            raise RuntimeError(f"deploy device emulate printed no address: {self.errors()}")
        self.address, flag, config = self.line.split()
        assert flag == "--ssh-config", self.line
        self.ssh_config = Path(config)

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def flags(self, remote_dir: str | Path) -> list[str]:
        """The device flags of `deploy device ...` for this board."""
        return ["--device", self.address, "--ssh-config", str(self.ssh_config),
                "--remote-dir", str(remote_dir)]

    def stop(self, timeout: float = 60) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
