"""The transport: the system ``ssh`` binary run with argument lists, never through a local shell.

The remote side always gets ``shlex.join`` of fixed words and quoted values. BatchMode (no
password prompt), a connect timeout and keep-alives are always on; the user's ``~/.ssh/config``
(aliases, keys, ProxyJump) applies, or the file given with ``ssh_config``.
"""
from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from edgebase.errors import DeployError

from deploy.device.address import DeviceAddress


class DeviceError(DeployError):
    """A device that cannot be reached, refuses us, or cannot run the runner."""

    exit_code = 5


@dataclass
class SSH:
    address: DeviceAddress
    ssh_config: str | None = None
    connect_timeout: int = 10
    multiplex: bool = True  # one connection (ControlMaster) for all the commands of a run
    _control: str | None = field(default=None, init=False, repr=False)

    def base_argv(self) -> list[str]:
        self.connect()
        return self._argv()

    def connect(self) -> None:
        """Open the shared connection once (``ssh -M -N -f``): the handshake and key exchange
        happen once per run instead of once per command. Errors are mapped like any other."""
        if not self.multiplex or self._control:
            return
        folder = tempfile.mkdtemp(prefix="edgedeploy-ssh-")
        control = os.path.join(folder, "cm")
        argv = self._argv(master=control)
        with tempfile.TemporaryFile() as log:
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=log, timeout=self.connect_timeout + 30)
            except subprocess.TimeoutExpired:
                shutil.rmtree(folder, ignore_errors=True)
                raise DeviceError(f"{self.address}: unreachable (no answer within "
                                  f"{self.connect_timeout + 30} s)") from None
            log.seek(0)
            stderr = log.read().decode(errors="replace")
        if proc.returncode or not os.path.exists(control):
            shutil.rmtree(folder, ignore_errors=True)
            raise ssh_error(self.address, stderr)
        self._control = control
        atexit.register(self.close)

    def close(self) -> None:
        """End the shared connection (also run at exit)."""
        control, self._control = self._control, None
        if control:
            subprocess.run(self._argv(control=control, exit=True), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)
            shutil.rmtree(os.path.dirname(control), ignore_errors=True)

    def _argv(self, master: str | None = None, control: str | None = None,
              exit: bool = False) -> list[str]:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise DeviceError("the ssh client is not installed on this host; install OpenSSH "
                              "(apt install openssh-client)")
        argv = [ssh, "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
                "-o", "LogLevel=ERROR"]
        if self.ssh_config:
            argv += ["-F", str(self.ssh_config)]
        if self.address.port:
            argv += ["-p", str(self.address.port)]
        control = control or self._control
        if master:
            argv += ["-o", "ControlMaster=yes", "-o", f"ControlPath={master}", "-N", "-f"]
        elif control:
            argv += ["-o", "ControlMaster=no", "-o", f"ControlPath={control}"]
            if exit:
                argv += ["-O", "exit"]
        return argv + ["--", self.address.destination()]

    def run(self, words: list[str], *, stdin=None, timeout: float | None = None
            ) -> subprocess.CompletedProcess:
        """Run the remote command ``words`` (quoted here); raise DeviceError on ssh failures."""
        argv = self.base_argv() + [shlex.join(words)]
        try:
            proc = subprocess.run(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.address}: no answer within {timeout:.0f} s; check the "
                              "board (load, disk) and try again") from None
        if proc.returncode == 255:
            raise ssh_error(self.address, proc.stderr.decode(errors="replace"))
        return proc

    def python(self, python: str, script: str, args: list[str], *, stdin=None,
               timeout: float | None = None) -> dict:
        """Run a fixed script from deploy.device.scripts with ``python``; its JSON answer."""
        proc = self.run([python, "-c", script, *args], stdin=stdin, timeout=timeout)
        err = proc.stderr.decode(errors="replace").strip()
        if proc.returncode == 127 or (proc.returncode and "not found" in err
                                      and not proc.stdout.strip()):
            raise DeviceError(f"{self.address}: no Python 3 at {python!r} on the device; install "
                              "it (Debian/Raspberry Pi OS: sudo apt install python3 python3-venv) "
                              "or name one with --python PATH")
        try:
            return json.loads(proc.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
            if "SyntaxError" in err:
                last = f"{python} is not Python 3.6 or newer ({last})"
            raise DeviceError(f"{self.address}: {python} failed on the device: {last}") from None


def ssh_error(address: DeviceAddress, stderr: str) -> DeviceError:
    lines = [l.strip() for l in stderr.splitlines() if l.strip()]
    last = lines[-1] if lines else "ssh failed"
    text = stderr.lower()
    port = f" -p {address.port}" if address.port else ""
    if "permission denied" in text or "too many authentication failures" in text:
        return DeviceError(f"{address}: authentication refused ({last}); add your public key on "
                           f"the board (ssh-copy-id{port} {address.destination()}) or name the "
                           "key in ~/.ssh/config (IdentityFile); passwords are never asked")
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return DeviceError(f"{address}: the board's host key is unknown or changed; connect once "
                           f"with `ssh{port} {address.destination()}` to check and accept it")
    if any(s in text for s in ("could not resolve", "name or service not known")):
        return DeviceError(f"{address}: unknown host name ({last}); check the address or the "
                           "alias in ~/.ssh/config")
    if any(s in text for s in ("connection refused", "timed out", "no route to host",
                               "network is unreachable", "connection closed",
                               "connection reset", "kex_exchange")):
        return DeviceError(f"{address}: unreachable ({last}); check that the board is on, on "
                           "the network and runs sshd, and the port "
                           f"(try: ssh{port} {address.destination()} true)")
    return DeviceError(f"{address}: ssh failed: {last}")


