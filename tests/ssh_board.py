"""A real OpenSSH server on 127.0.0.1 for the device tests (Debian's openssh-server): a temp host
key, a temp client key as the only authorized key, a free port, ``sshd -D -e``. The "board" is
a Python on this machine without the runner, so pushing the runner is exercised for real."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


@dataclass
class Board:
    port: int
    config: Path  # client ssh config: alias "board" plus defaults for 127.0.0.1
    key: Path
    other_key: Path  # a key the server does not accept
    root: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ssh://{os.environ.get('USER') or 'root'}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_board(root: Path) -> Board:
    if SSHD is None:
        raise RuntimeError("sshd is not installed (apt-get install -y openssh-server)")
    root.mkdir(parents=True, exist_ok=True)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    keys = {}
    for name in ("host", "client", "other"):
        path = root / f"{name}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
        keys[name] = path
    auth = root / "authorized_keys"
    shutil.copy(str(keys["client"]) + ".pub", auth)
    port = free_port()
    sshd_config = root / "sshd_config"
    sshd_config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {keys['host']}\n"
        f"AuthorizedKeysFile {auth}\nPidFile {root / 'sshd.pid'}\nUsePAM no\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nMaxStartups 50\n"
        "MaxSessions 50\nLogLevel ERROR\n")
    client = root / "ssh_config"
    client.write_text(
        f"Host board\n  HostName 127.0.0.1\n  Port {port}\n\n"
        f"Host *\n  IdentityFile {keys['client']}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n")
    log = open(root / "sshd.log", "wb")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(sshd_config)], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 10
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(root / 'sshd.log').read_text()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    return Board(port, client, keys["client"], keys["other"], root, proc)


if __name__ == "__main__":  # a board for trying things by hand: prints its address
    b = start_board(Path(sys.argv[1]))
    print(b.url, b.config, board_python(), flush=True)
    try:
        b.proc.wait()
    except KeyboardInterrupt:
        b.stop()
