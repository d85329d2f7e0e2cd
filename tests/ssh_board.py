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
    b = start_board(Path(sys.argv[1]))
    print(b.url, b.client_config, board_python(), flush=True)
    try:
        b.proc.wait()
    except KeyboardInterrupt:
        b.stop()
