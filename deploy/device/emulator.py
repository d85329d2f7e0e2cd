"""An emulated board on this host: a Debian root of another architecture, run with QEMU in user
mode (no binfmt_misc, no root needed to run it), prepared once into a user cache.

What it is made of, and why:
- QEMU 10 ``qemu-user`` from bookworm-backports, only unpacked. Debian 12's own QEMU 7.2 shows
  the guest the host's x86 /proc/cpuinfo, and then LiteRT's XNNPACK and onnxruntime crash.
- A Debian 12 root of ``python3.11`` and its dependencies, unpacked from the archive's .debs
  with a private apt configuration (the system's apt state is never touched). No python3-venv:
  a venv's interpreter would be the guest binary, which the host cannot exec; the runner is
  installed with ``pip --target`` instead (deploy.device.scripts.INSTALL does so by itself).
- A wrapper per named CPU (``bin/python3-<cpu>``): ``qemu -0 WRAPPER`` makes sys.executable the
  wrapper, so the guest's subprocesses run emulated too. ``-cpu max`` turns on SME (LiteRT float
  ten times slower, false numpy warnings), so only named CPUs are offered.
- The wrapper exports EDGEDEPLOY_EMULATOR ("qemu-aarch64 10.0.2 neoverse-n1"): the device
  fingerprint reports it, and results measured there are marked emulated.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgebase.errors import ConfigError, DeployError

from deploy.device.wheels import cache_base

FORMAT = 1  # bumped when the layout of a prepared root changes: older ones are rebuilt
SUITE = "bookworm"  # Debian 12: python3.11, glibc 2.36
# the packages of a root that only runs python3.11 and the runtimes' shared libraries;
# dpkg, perl, tar and friends are maintainer-script tools nothing here runs
ROOT_PACKAGES = ("python3.11", "libstdc++6", "libgomp1")
SKIP_PACKAGES = {"dpkg", "perl", "perl-base", "perl-modules-5.36", "libperl5.36", "tar",
                 "install-info", "mailcap", "mime-support"}
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIN_QEMU = 10  # the first version measured to run LiteRT, onnxruntime and OpenVINO here


class EmulatorError(DeployError):
    exit_code = 5


@dataclass(frozen=True)
class Architecture:
    name: str  # what `deploy device emulate NAME` takes (uname -m on such a board)
    deb_arch: str  # Debian's name for it
    qemu: str  # the qemu-user binary
    default_cpu: str
    measured_cpus: tuple[str, ...]  # named CPUs the runtimes were measured on


ARCHITECTURES = {
    "aarch64": Architecture("aarch64", "arm64", "qemu-aarch64", "neoverse-n1",
                            ("cortex-a53", "cortex-a72", "cortex-a76", "neoverse-n1",
                             "neoverse-n2", "neoverse-v1")),
}


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ConfigError(f"cannot emulate {name!r}; valid: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


@dataclass(frozen=True)
class EmulatedRoot:
    """A prepared root in the cache: the QEMU binary, the Debian root, the wrappers."""

    arch: Architecture
    path: Path
    qemu_version: str
    python_version: str

    @property
    def qemu(self) -> Path:
        return self.path / "bin" / self.arch.qemu

    def cpus(self) -> list[str]:
        """Named CPUs this QEMU offers (``-cpu help``), without ``max``/``any``."""
        out = subprocess.run([str(self.qemu), "-cpu", "help"], capture_output=True, text=True)
        names = re.findall(r"^\s+(\S+)", out.stdout, re.M)
        return [n for n in names if n not in ("max", "any", "host")]

    def check_cpu(self, cpu: str) -> None:
        if cpu.split(",")[0] == "max":
            raise ConfigError("--cpu max turns on SME (LiteRT float runs ten times slower and "
                              "numpy warns falsely): name a real core, e.g. "
                              f"{', '.join(self.arch.measured_cpus)}")
        offered = self.cpus()
        if cpu not in offered:
            raise ConfigError(f"--cpu {cpu!r} is not a CPU QEMU {self.qemu_version} emulates; "
                              f"measured: {', '.join(self.arch.measured_cpus)}; all: "
                              f"{', '.join(offered)}")

    def python(self, cpu: str, offline: bool = False) -> Path:
        """The board's interpreter for ``cpu``: a wrapper script (made once). ``offline``: in
        a network namespace of its own with nothing but loopback, like a board without
        internet (its subprocesses inherit that)."""
        self.check_cpu(cpu)
        wrapper = self.path / "bin" / f"python3-{cpu}"
        q = shlex.quote
        if offline:
            unshare = _unshare()
            _write_script(self.path / "bin" / f"python3-{cpu}-offline", (
                "#!/bin/sh\n"
                f"# the emulated {self.arch.name} board's Python without network\n"
                f"exec {' '.join(map(q, unshare))} -- {q(str(self.python(cpu)))} \"$@\"\n"))
            return self.path / "bin" / f"python3-{cpu}-offline"
        text = (
            "#!/bin/sh\n"
            f"# an emulated {self.arch.name} board's Python: QEMU {self.qemu_version} user "
            f"mode, CPU {cpu}, Debian {SUITE} root\n"
            f"export QEMU_CPU={q(cpu)}\n"
            f"export EDGEDEPLOY_EMULATOR={q(f'{self.arch.qemu} {self.qemu_version} {cpu}')}\n"
            f"exec {q(str(self.qemu))} -0 {q(str(wrapper))} -L {q(str(self.path / 'root'))} "
            f"{q(str(self.path / 'root/usr/bin/python3.11'))} \"$@\"\n")
        _write_script(wrapper, text)
        return wrapper


def _write_script(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def _unshare() -> list[str]:
    """``unshare`` arguments that give a process a network namespace of its own here (root:
    --net; others: in a user namespace as well), checked once."""
    found = shutil.which("unshare")
    tried = []
    for argv in ([found, "--net"], [found, "--net", "--map-root-user"]) if found else []:
        if os.getuid() != 0 and len(argv) == 2:
            continue
        proc = subprocess.run([*argv, "--", "true"], capture_output=True, text=True)
        if proc.returncode == 0:
            return argv
        tried.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed")
    raise ConfigError("--offline needs network namespaces (util-linux `unshare --net`"
                      + (f": {tried[-1]}" if tried else ", not found") + "); run without "
                      "--offline, the runner is installed from pushed wheels either way")


def root_dir(arch: Architecture) -> Path:
    return cache_base() / arch.name


def prepare(arch: Architecture, log: Callable[[str], None]) -> EmulatedRoot:
    """The cached root of ``arch``, made now if missing (once; concurrent callers wait)."""
    final = root_dir(arch)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{arch.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _load(arch, final)
        if found:
            return found
        _check_host(arch)
        log(f"emulate: preparing an emulated {arch.name} board in {final} (once; Debian "
            f"{SUITE} .debs and QEMU from {SUITE}-backports)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{arch.name}.part-", dir=final.parent))
        try:
            _build(arch, tmp, final, log)
            if final.exists():  # an older format: replaced whole
                old = final.with_name(f".{arch.name}.old-{os.getpid()}")
                os.rename(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, final)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise EmulatorError(f"no space left in {final.parent} while preparing the "
                                    f"emulated {arch.name} root (about 200 MB needed); free "
                                    "some or set XDG_CACHE_HOME to a bigger disk") from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        root = _load(arch, final)
        log(f"emulate: ready: QEMU {root.qemu_version}, Debian {SUITE} {arch.name} Python "
            f"{root.python_version}")
        return root


def _load(arch: Architecture, path: Path) -> EmulatedRoot | None:
    try:
        stamp = json.loads((path / "ready.json").read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("format") != FORMAT or not (path / "bin" / arch.qemu).is_file():
        return None
    return EmulatedRoot(arch, path, stamp["qemu"], stamp["python"])


def _check_host(arch: Architecture) -> None:
    if platform.machine() == arch.name:
        raise EmulatorError(f"this host is {arch.name} already: run the board's Python "
                            "directly (deploy device ... --device ssh://localhost)")
    missing = [t for t in ("apt-get", "apt-cache", "dpkg-deb", "dpkg") if not shutil.which(t)]
    if missing:
        raise EmulatorError(f"preparing the emulated {arch.name} board needs a Debian or Ubuntu "
                            f"host with apt ({', '.join(missing)} not found)")


def _mirrors() -> tuple[str, str]:
    """The machine's Debian archive and security archive (a local mirror or proxy applies),
    else deb.debian.org."""
    main = security = None
    texts = []
    for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            texts.append(p.read_text())
    for uri in re.findall(r"(?:^URIs:\s*|^deb\s+(?:\[[^]]*\]\s+)?)(\S+)", "\n".join(texts), re.M):
        uri = uri.rstrip("/")
        if uri.endswith("debian-security") and not security:
            security = uri
        elif uri.endswith("/debian") and not main:
            main = uri
    return (main or "http://deb.debian.org/debian",
            security or "http://deb.debian.org/debian-security")


class _Apt:
    """apt-get with a private configuration: own lists, cache, status and sources."""

    def __init__(self, folder: Path, arch: str, sources: list[str]):
        self.folder = folder
        for sub in ("lists/partial", "cache/archives/partial"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "status").write_text("")
        signed = f"[arch={arch} signed-by={KEYRING}]" if os.path.exists(KEYRING) else \
            f"[arch={arch}]"
        (folder / "sources.list").write_text(
            "".join(f"deb {signed} {s}\n" for s in sources))
        user = "root" if os.getuid() == 0 else ""  # the _apt sandbox cannot write into ~/.cache
        conf = {"Dir::Etc::SourceList": folder / "sources.list",
                "Dir::Etc::SourceParts": "/nonexistent", "Dir::Etc::Preferences": "/nonexistent",
                "Dir::Etc::PreferencesParts": "/nonexistent",
                "Dir::State::Lists": folder / "lists", "Dir::State::status": folder / "status",
                "Dir::Cache": folder / "cache", "APT::Architecture": arch,
                "APT::Get::Assume-Yes": "true", "Acquire::Retries": "3"}
        lines = [f'{k} "{v}";' for k, v in conf.items()]
        lines.append(f'APT::Architectures {{ "{arch}"; }};')
        if user:
            lines.append(f'APT::Sandbox::User "{user}";')
        (folder / "apt.conf").write_text("\n".join(lines) + "\n")
        self.env = dict(os.environ, APT_CONFIG=str(folder / "apt.conf"), LC_ALL="C",
                        DEBIAN_FRONTEND="noninteractive")

    def run(self, argv: list[str], cwd: Path | None = None, what: str = "") -> str:
        proc = subprocess.run(argv, env=self.env, cwd=cwd, capture_output=True, text=True)
        if proc.returncode:
            errs = [l for l in proc.stderr.splitlines() if l.startswith(("E:", "W:"))] or \
                proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
            raise EmulatorError(f"{what or argv[0]} failed: {errs[0]}; the Debian archive must "
                                "be reachable once (later runs use the cache)")
        return proc.stdout

    def update(self) -> None:
        self.run(["apt-get", "update", "-q"], what="apt-get update")

    def depends(self, packages) -> list[str]:
        out = self.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                        *packages], what="apt-cache depends")
        names = {l.strip() for l in out.splitlines() if l and not l.startswith((" ", "<"))}
        return sorted(names - SKIP_PACKAGES)

    def download(self, packages, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        self.run(["apt-get", "download", "-q", *packages], cwd=dest, what="apt-get download")
        return sorted(dest.glob("*.deb"))


def _build(arch: Architecture, tmp: Path, final: Path, log: Callable[[str], None]) -> None:
    main, security = _mirrors()
    host_arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                               text=True).stdout.strip() or "amd64"
    (tmp / "bin").mkdir()
    log(f"emulate: [1/3] qemu-user from {main} {SUITE}-backports")
    apt = _Apt(tmp / "apt-host", host_arch, [f"{main} {SUITE}-backports main"])
    apt.update()
    (deb,) = apt.download([f"qemu-user/{SUITE}-backports"], tmp / "debs-host")
    unpacked = tmp / "qemu"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    qemu = tmp / "bin" / arch.qemu
    shutil.move(unpacked / "usr/bin" / arch.qemu, qemu)
    shutil.rmtree(unpacked)
    shutil.rmtree(tmp / "debs-host")
    version = subprocess.run([str(qemu), "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)\.(\d+)", version)
    if not m or int(m.group(1)) < MIN_QEMU:
        found = version.strip().splitlines()[0] if version.strip() else "a QEMU that does not run"
        raise EmulatorError(f"{SUITE}-backports offered {found}; the runtimes need "
                            f"QEMU >= {MIN_QEMU}")
    qemu_version = ".".join(m.groups())

    log(f"emulate: [2/3] Debian {SUITE} {arch.deb_arch} root with python3.11 from {main}")
    apt = _Apt(tmp / "apt-root", arch.deb_arch,
               [f"{main} {SUITE} main", f"{main} {SUITE}-updates main",
                f"{security} {SUITE}-security main"])
    apt.update()
    debs = apt.download(apt.depends(ROOT_PACKAGES), tmp / "debs")
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
    log(f"emulate:   unpacked {len(debs)} packages")
    shutil.rmtree(tmp / "debs")
    for folder in ("apt-host", "apt-root"):
        shutil.rmtree(tmp / folder)

    log(f"emulate: [3/3] checking the emulated Python")
    probe = subprocess.run(
        [str(qemu), "-cpu", arch.default_cpu, "-L", str(tmp / "root"),
         str(tmp / "root/usr/bin/python3.11"), "-c",
         "import json, platform; print(json.dumps([platform.machine(), "
         "platform.python_version()]))"], capture_output=True, text=True, timeout=300)
    try:
        machine, python = json.loads(probe.stdout)
    except ValueError:
        raise EmulatorError(f"the emulated {arch.name} Python does not start: "
                            f"{(probe.stderr.strip().splitlines() or ['no output'])[-1]}") from None
    if machine != arch.name:
        raise EmulatorError(f"the emulated Python reports {machine!r}, not {arch.name}")
    (tmp / "ready.json").write_text(json.dumps(
        {"format": FORMAT, "arch": arch.name, "qemu": qemu_version, "python": python,
         "suite": SUITE, "packages": [d.name for d in debs], "mirror": main}, indent=1) + "\n")
