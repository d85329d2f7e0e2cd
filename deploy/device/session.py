"""One device: probe its Python, make sure the runner is there (pushing it when not), push
files into its cache by hash, run the runner there and bring back its JSON and a fingerprint."""
from __future__ import annotations

import hashlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from edgebase import __version__
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
    pythonpath: str = ""  # a --target install (Pythons without venv) goes first on the path


class Device:
    def __init__(self, address: DeviceAddress, *, python: str = "python3",
                 remote_dir: str = "~/.cache/edgedeploy", ssh_config: str | None = None,
                 connect_timeout: int = 10, install: bool = True, log=None):
        self.address = address
        self.ssh = SSH(address, ssh_config=ssh_config, connect_timeout=connect_timeout)
        self.python, self.root, self.install = python, remote_dir.rstrip("/") or "/", install
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self._probe: dict | None = None

    # --- the device's Python -------------------------------------------------------------
    def probe(self, dists: list[str], venv_python: str = "", site: str = "") -> dict:
        out = self.ssh.python(self.python, scripts.PROBE, [json.dumps(dists), venv_python, site],
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
        """The runner with ``extra`` on the device: the device's own when it has one of this
        version, else a venv made from wheels this host pushes (once per source tree)."""
        from deploy.device.wheels import requirements, runner_wheel, runtime_wheels

        wheel, key = runner_wheel()
        dists = requirements(wheel, extra)
        venv = f"{self.root}/venv/{key[:16]}-{extra}"
        venv_python = f"{venv}/bin/python"
        probe = self.probe(dists, venv_python, f"{venv}-site")
        report = ["edgedeploy", *dists]
        if probe.get("venv"):
            return RunnerEnv(venv_python, report)
        if probe.get("site"):
            return RunnerEnv(self.python, report, pythonpath=f"{venv}-site")
        if probe["runner"] == __version__ and not probe["missing"]:
            return RunnerEnv(self.python, report)
        what = "the runner" if probe["runner"] is None else \
            f"{', '.join(probe['missing']) or 'the runner ' + __version__}"
        if not self.install:
            raise DeviceError(f"{self.address}: {what} is missing on the device's Python "
                              f"{probe['python']}; drop --no-install to push it from this host, "
                              f"or install it there: pip install 'edgedeploy[{extra}]'")
        self.log(f"device: {what} missing on {self.address} (Python {probe['python']}, "
                 f"{probe['platform']}); pushing wheels from this host")
        wheels = [wheel] + runtime_wheels(wheel, extra, probe)
        remote = self.push([(w, w.name) for w in wheels], per_file=True)
        dirs = [str(Path(r).parent) for r in remote]
        pip = next((r for r in remote if Path(r).name.startswith("pip-")), "")
        out = self.ssh.python(self.python, scripts.INSTALL,
                              [venv, json.dumps(sorted(set(dirs))), f"edgedeploy[{extra}]", pip],
                              timeout=3600)
        if out.get("error"):
            raise self._remote_error(out, "installing the runner")
        installed = [f"{p['name']} {p['version']}" for p in out["installed"]
                     if p["name"].lower() not in ("pip", "setuptools", "wheel")]
        self.log(f"device: installed into {out.get('path', venv)}: {', '.join(installed)}")
        if out.get("mode") == "site":
            return RunnerEnv(self.python, report, installed, pythonpath=out["path"])
        return RunnerEnv(venv_python, report, installed)

    # --- files ---------------------------------------------------------------------------
    def push(self, files: list[tuple[Path, str]], per_file: bool = False) -> list[str]:
        """Copy files into the device cache; returns their remote paths. A group goes into
        ``blobs/<hash of names and contents>/`` (names kept: suffixes and companions matter);
        with ``per_file`` each file is keyed by its own hash. Files already there are skipped."""
        shas = [sha256_file(p) for p, _ in files]
        if per_file:
            rels = [f"blobs/{sha[:24]}/{name}" for (_, name), sha in zip(files, shas)]
        else:
            h = hashlib.sha256()
            for (_, name), sha in zip(files, shas):
                h.update(f"{name}\0{sha}\0".encode())
            rels = [f"blobs/{h.hexdigest()[:24]}/{name}" for _, name in files]
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
        for i in missing:
            with open(files[i][0], "rb") as f:
                out = self.ssh.python(self.python, scripts.RECEIVE,
                                      [self.root, rels[i], shas[i], str(sizes[i])], stdin=f,
                                      timeout=max(120, sizes[i] / 1e6))
            if out.get("error"):
                raise self._remote_error(out, f"copying {files[i][1]}")
        return [f"{self.root}/{r}" for r in rels]

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
