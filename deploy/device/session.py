"""One device: probe its Python, make sure the runner is there (pushing it when not), push
files into its cache by hash, run the runner there and bring back its JSON and a fingerprint."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgebase import __version__
from edgebase.errors import ConfigError
from edgebase.files import sha256_file

from deploy.device import scripts
from deploy.device.address import DeviceAddress
from deploy.device.ssh import SSH, DeviceError

MIN_PYTHON = (3, 10)


@dataclass
class RunnerEnv:
    python: str  # the interpreter that runs the runner on the device
    dists: list[str]  # distributions reported in the fingerprint
    installed: list[str] = field(default_factory=list)  # what this run installed, if anything
    pythonpath: str = ""  # ":"-joined folders first on the path: the runner, a --target runtime


class Device:
    def __init__(self, address: DeviceAddress, *, python: str | None = None,
                 remote_dir: str = "~/.cache/edgedeploy", ssh_config: str | None = None,
                 connect_timeout: int = 10, install: bool = True, log=None):
        self.address = address
        self.ssh = SSH(address, ssh_config=ssh_config, connect_timeout=connect_timeout)
        if python and address.python and python != address.python:
            raise ConfigError(f"--python {python} contradicts the address's ?python="
                              f"{address.python}; give one of them")
        self.python = python or address.python or "python3"
        self.root, self.install = remote_dir.rstrip("/") or "/", install
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self._probe: dict | None = None

    # --- the device's Python -------------------------------------------------------------
    def probe(self, dists: list[str], venv: str = "", runner: str = "") -> dict:
        out = self.ssh.python(self.python, scripts.PROBE, [json.dumps(dists), venv, runner],
                              timeout=60)
        version = tuple(int(x) for x in out["python"].split(".")[:2])
        if version < MIN_PYTHON:
            raise DeviceError(f"{self.address}: Python {out['python']} at {self.python!r}; the "
                              f"runner needs Python >= {'.'.join(map(str, MIN_PYTHON))} (install "
                              "a newer python3 on the board or name one with --python PATH)")
        if self.root.startswith("~"):
            self.root = out["home"].rstrip("/") + self.root[1:]
        self._probe = out
        return out

    def ensure_runner(self, extra: str) -> RunnerEnv:
        """The runner with ``extra`` (one, or several joined by commas as pip writes them:
        ``litert,onnxruntime``) on the device, in two layers that change at different
        paces: the runtime (numpy, the runtime, pillow) from the board's own Python when it has
        them, else a venv made from wheels this host pushes, once per requirement set and
        platform; and the runner itself (pure Python) unpacked from this source tree's wheel,
        once per source hash. A board whose Python has edgedeploy of this version uses it."""
        import hashlib

        from deploy.device.wheels import RUNNER_PARTS, names, requirements, runner_wheel

        wheel, key = runner_wheel()
        specs = requirements(wheel, extra)
        dists = names(specs)
        spec_key = hashlib.sha256("\n".join(specs).encode()).hexdigest()[:12]
        probe = self.probe(dists, f"{self.root}/venv/{extra.replace(',', '+')}-{spec_key}",
                           f"{self.root}/runner/{key[:16]}")
        report = ["edgedeploy", *dists]
        if probe["runner"] == __version__ and not probe["missing"]:
            return RunnerEnv(self.python, report)
        venv = probe["venv_path"]
        python, paths, installed = None, [], []
        if probe.get("venv"):
            python = f"{venv}/bin/python"
        elif probe.get("site"):
            python, paths = self.python, [f"{venv}-site"]
        elif not probe["missing"]:  # the board's Python has the runtime: only the runner goes
            python = self.python
        if python is None or not probe["runner_dir"]:
            missing = ", ".join(probe["missing"]) if python is None else ""
            what = "the runner" + (f" and {missing}" if missing else "")
            if not self.install:
                raise DeviceError(f"{self.address}: {what} is missing on the device's Python "
                                  f"{probe['python']}; drop --no-install to push it from this "
                                  f"host, or install it there: pip install 'edgedeploy[{extra}]'")
            self.log(f"device: {what} missing on {self.address} (Python {probe['python']}, "
                     f"{probe['platform']}); pushing wheels from this host")
        if python is None:
            python, paths, installed = self._install_runtime(wheel, extra, specs, probe)
        if not probe["runner_dir"]:
            (remote,) = self.push([(wheel, wheel.name)], per_file=True)
            parts = [p for p in RUNNER_PARTS if "." not in p]
            out = self.ssh.python(self.python, scripts.UNPACK,
                                  [remote, probe["runner_path"], json.dumps(parts)], timeout=600)
            if out.get("error"):
                raise self._remote_error(out, "unpacking the runner")
            installed.append(f"edgedeploy {__version__}")
            self.log(f"device: runner {__version__} unpacked into {out['path']}")
        return RunnerEnv(python, report, installed,
                         pythonpath=":".join([probe["runner_path"], *paths]))

    def _install_runtime(self, wheel: Path, extra: str, specs: list[str], probe: dict
                         ) -> tuple[str, list[str], list[str]]:
        """The runtime's wheels pushed and installed with pip --no-index on the device."""
        from deploy.device.wheels import runtime_wheels

        wheels = runtime_wheels(wheel, extra, probe)
        remote = self.push([(w, w.name) for w in wheels], per_file=True)
        dirs = [str(Path(r).parent) for r in remote]
        pip = next((r for r in remote if Path(r).name.startswith("pip-")), "")
        venv = probe["venv_path"]
        out = self.ssh.python(self.python, scripts.INSTALL,
                              [venv, json.dumps(sorted(set(dirs))), json.dumps(specs), pip],
                              timeout=3600)
        if out.get("error"):
            raise self._remote_error(out, "installing the runtime")
        installed = [f"{p['name']} {p['version']}" for p in out["installed"]
                     if p["name"].lower() not in ("pip", "setuptools", "wheel")]
        self.log(f"device: installed into {out.get('path', venv)}: {', '.join(installed)}")
        if out.get("mode") == "site":
            return self.python, [out["path"]], installed
        return f"{venv}/bin/python", [], installed

    # --- files ---------------------------------------------------------------------------
    def push(self, files: list[tuple[Path, str]], per_file: bool = False) -> list[str]:
        """Copy files into the device cache; returns their remote paths. A group goes into
        ``blobs/<hash of names and contents>/`` (names kept: suffixes and companions matter);
        with ``per_file`` each file is a group of its own. Files already there are skipped."""
        groups = [[f] for f in files] if per_file else [files]
        return [r for remote in self.push_groups(groups) for r in remote]

    def push_groups(self, groups: list[list[tuple[Path, str]]]) -> list[list[str]]:
        """``push`` of several groups with one look and one copy on the device (each is a
        Python start there: seconds on a small or emulated board)."""
        files, rels, shas, remote = [], [], [], []
        for group in groups:
            group_shas = [sha256_file(p) for p, _ in group]
            h = hashlib.sha256()
            for (_, name), sha in zip(group, group_shas):
                h.update(f"{name}\0{sha}\0".encode())
            group_rels = [f"blobs/{h.hexdigest()[:24]}/{name}" for _, name in group]
            files += group
            rels += group_rels
            shas += group_shas
            remote.append([f"{self.root}/{r}" for r in group_rels])
        sizes = [Path(p).stat().st_size for p, _ in files]
        have = self.ssh.python(self.python, scripts.HAVE,
                               [self.root, json.dumps([[r, s] for r, s in zip(rels, sizes)])],
                               timeout=60)
        missing = have["missing"]
        need = sum(sizes[i] for i in missing)
        if missing and have.get("free") is not None and have["free"] < need:
            raise self._remote_error({"error": "nospace", "message":
                                      f"{have['free']:,} bytes free in {self.root}, "
                                      f"{need:,} needed"}, "copying files")
        if missing:
            self.log(f"device: copying {len(missing)} file(s), {need / 1e6:.1f} MB, to "
                     f"{self.address}:{self.root}")
        if missing:
            with _concatenated([files[i][0] for i in missing]) as stream:
                out = self.ssh.python(self.python, scripts.RECEIVE, [self.root, json.dumps(
                    [[rels[i], shas[i], sizes[i]] for i in missing])], stdin=stream,
                    timeout=max(120, need / 1e6))
            if out.get("error"):
                raise self._remote_error(out, "copying files")
        return remote

    # --- running -------------------------------------------------------------------------
    def run_runner(self, env: RunnerEnv, argv: list[str], timeout: float | None = None) -> dict:
        work = f"{self.root}/runs/{uuid.uuid4().hex}"
        out = self.ssh.python(env.python, scripts.RUN,
                              [work, json.dumps(env.dists), env.pythonpath, *argv],
                              timeout=timeout)
        return out

    def _remote_error(self, out: dict, doing: str) -> DeviceError:
        kind, msg = out.get("error"), out.get("message", "")
        if kind == "nospace":
            return DeviceError(f"{self.address}: no space left on the device while {doing} "
                               f"({msg}); free some space or pass --remote-dir on a bigger disk")
        if kind == "venv":
            return DeviceError(f"{self.address}: the device's Python cannot make a venv ({msg}); "
                               "install it (Debian/Raspberry Pi OS: sudo apt install python3-venv)")
        if kind == "pip":
            return DeviceError(f"{self.address}: pip on the device refused the pushed wheels "
                               f"({msg}); the platform may be unsupported by the runtime")
        return DeviceError(f"{self.address}: {doing} failed on the device: {msg}")


@contextlib.contextmanager
def _concatenated(paths: list[Path]):
    """A pipe's read end carrying the files one after the other (written by a thread, so that
    no file is held in memory); a reader that stops early ends the writing quietly."""
    read_fd, write_fd = os.pipe()

    def write() -> None:
        try:
            with open(write_fd, "wb") as out:
                for path in paths:
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
        except (BrokenPipeError, OSError):
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with open(read_fd, "rb") as stream:
        try:
            yield stream
        finally:
            stream.close()  # the writer sees a broken pipe if the reader stopped early
            writer.join()
