"""A real OpenSSH server on 127.0.0.1 for a board that lives on this host (the emulated board;
the device tests): a temporary host key, a temporary client key as the only authorized key, a
known_hosts entry for that host key and a client config naming all three, so that ssh checks
the server strictly and nothing of the user's own ssh setup is used or changed.

``sshd -D -e`` runs in the foreground as this user (only this user can log in); ``stop()``
ends it and the sessions it forked, and removes the folder with the keys.
"""
from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edgebase.errors import DeployError


class LoopbackError(DeployError):
    exit_code = 5


def sshd_binary() -> str | None:
    found = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin")
    return os.path.abspath(found) if found else None  # sshd re-executes itself: absolute path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackSSHD:
    """``with LoopbackSSHD() as server: server.url`` — stopped and cleaned up on exit."""

    alias = "board"

    def __init__(self, port: int = 0, folder: Path | None = None):
        self.user = getpass.getuser()
        self.port = port or free_port()
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="edgedeploy-sshd-"))
        self.proc: subprocess.Popen | None = None

    # paths of what start() writes
    key = property(lambda self: self.folder / "client_key")
    other_key = property(lambda self: self.folder / "other_key")  # one the server refuses
    client_config = property(lambda self: self.folder / "ssh_config")
    log = property(lambda self: self.folder / "sshd.log")

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def __enter__(self) -> "LoopbackSSHD":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 30) -> None:
        sshd = sshd_binary()
        if sshd is None:
            raise LoopbackError("sshd is not installed on this host; install OpenSSH's server "
                                "(Debian/Ubuntu: apt-get install openssh-server)")
        self._privsep_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        for name in ("host_key", "client_key", "other_key"):
            path = self.folder / name
            for old in (path, path.with_suffix(".pub")):
                old.unlink(missing_ok=True)
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f",
                            str(path)], check=True, stdout=subprocess.DEVNULL)
        shutil.copy(self.folder / "client_key.pub", self.folder / "authorized_keys")
        host_pub = (self.folder / "host_key.pub").read_text().split()[:2]
        (self.folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        (self.folder / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {self.folder / 'host_key'}\n"
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}\n"
            f"PidFile {self.folder / 'sshd.pid'}\nAllowUsers {self.user}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nAllowTcpForwarding no\nX11Forwarding no\n"
            "AllowAgentForwarding no\nPermitTunnel no\nMaxStartups 50\nMaxSessions 50\n"
            "LogLevel ERROR\n")
        self.client_config.write_text(
            f"Host {self.alias} 127.0.0.1\n  HostName 127.0.0.1\n  Port {self.port}\n"
            f"  User {self.user}\n  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.folder / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sshd, "-D", "-e", "-p", str(self.port), "-f", str(self.folder / "sshd_config")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # a terminal's Ctrl-C is ours to handle: stop()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                text = self.log.read_text(errors="replace").strip().splitlines()
                said = text[-1] if text else "no output"
                if "bind" in said.lower():
                    said += " (the port is taken: name another or leave --port out)"
                self.stop()
                raise LoopbackError(f"sshd did not start on 127.0.0.1:{self.port}: {said}")
            if _ssh_banner(self.port):  # sshd's own greeting: not another program on the port
                return
            if time.monotonic() > deadline:
                self.stop()
                raise LoopbackError(f"sshd did not answer on 127.0.0.1:{self.port} "
                                    f"within {timeout:.0f} s")
            time.sleep(0.1)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """End sshd and the per-connection processes it forked (they run in sessions of their
        own and would outlive it), then remove the keys."""
        if self.proc is not None and self.proc.poll() is None:
            children = descendants(self.proc.pid)
            self.proc.terminate()
            for pid in children:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _privsep_dir() -> None:
        # sshd refuses to start without its privilege-separation directory
        if os.path.isdir("/run/sshd"):
            return
        try:
            os.makedirs("/run/sshd", mode=0o755)
        except OSError as err:
            raise LoopbackError(f"sshd needs /run/sshd ({err.strerror}); create it once: "
                                "sudo mkdir -p -m 755 /run/sshd") from None


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(1.0)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; children first in the parent's order)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # the command name may hold spaces and parentheses: ppid follows the last ')'
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
