"""Wheels for a board without internet: the ``edgedeploy`` wheel built from this source tree
and the runtime wheels for the board's platform, downloaded once into a host cache (later
runs resolve from that cache with ``--no-index`` first, so they work offline)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from deploy.device.ssh import DeviceError

PACKAGES = ("edgebase", "deploy", "exporters", "quant", "device_runners", "zoo")
TOP_FILES = ("pyproject.toml", "README.md", "LICENSE")


def cache_base() -> Path:
    """This host's edgedeploy cache: $EDGEDEPLOY_CACHE, else $XDG_CACHE_HOME/edgedeploy."""
    return Path(os.environ.get("EDGEDEPLOY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgedeploy"))


def host_cache() -> Path:
    return cache_base() / "device"


def source_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "device_runners").is_dir():
        raise DeviceError("the runner is not installed on the device and this host has no "
                          "edgedeploy source tree to build its wheel from; install it on the "
                          "board (pip install 'edgedeploy[EXTRA]') and pass --python")
    return root


def _source_files(root: Path) -> list[Path]:
    files = [root / f for f in TOP_FILES if (root / f).is_file()]
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"):
                files.append(p)
    return files


RUNNER_PARTS = ("pyproject.toml", "edgebase", "device_runners")  # what runs on the device


def source_hash(root: Path) -> str:
    """Of the parts the runner is made of: the device's venv is remade when they change."""
    h = hashlib.sha256()
    for p in _source_files(root):
        if p.relative_to(root).parts[0] not in RUNNER_PARTS:
            continue
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def runner_wheel() -> tuple[Path, str]:
    """The edgedeploy wheel of this source tree (built once per runner source hash) and that
    hash."""
    root = source_root()
    key = source_hash(root)
    out = host_cache() / "runner" / key[:16]
    found = sorted(out.glob("edgedeploy-*.whl"))
    if found:
        return found[0], key
    with tempfile.TemporaryDirectory(prefix="edgedeploy-wheel-") as tmp:
        src = Path(tmp) / "src"
        for p in _source_files(root):  # build from a copy: the tree gets no build/ or egg-info
            dest = src / p.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        dist = Path(tmp) / "dist"
        base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                "--disable-pip-version-check", "-w", str(dist), str(src)]
        proc = subprocess.run(base[:4] + ["--no-build-isolation"] + base[4:],
                              capture_output=True, text=True)
        if proc.returncode:
            proc = subprocess.run(base, capture_output=True, text=True)
        wheels = sorted(dist.glob("edgedeploy-*.whl"))
        if proc.returncode or not wheels:
            raise DeviceError(f"building the edgedeploy wheel failed: {_last(proc.stderr)}")
        out.mkdir(parents=True, exist_ok=True)
        tmp_wheel = out / f".{wheels[0].name}.part"
        shutil.copy2(wheels[0], tmp_wheel)
        os.replace(tmp_wheel, out / wheels[0].name)
        return out / wheels[0].name, key


def requirements(wheel: Path, extra: str) -> list[str]:
    """The requirements (``numpy>=1.24``) the wheel has with ``extra`` (or several, joined by
    commas), from its METADATA; environment markers other than the extra are kept for pip to
    evaluate on the board."""
    extras = set(extra.split(","))
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    specs = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        spec, _, marker = line.split(":", 1)[1].partition(";")
        if re.search(r"\bextra\s*==", marker):
            named = re.search(r"extra\s*==\s*['\"]([^'\"]*)['\"]", marker)
            if not named or named.group(1) not in extras:
                continue
            marker = re.sub(r"(\band\s+)?\(?\s*extra\s*==\s*['\"][^'\"]*['\"]\s*\)?", "",
                            marker).strip()
            marker = re.sub(r"^and\s+|\s+and$", "", marker).strip()
        spec = spec.strip() + (f"; {marker.strip()}" if marker.strip() else "")
        if spec not in specs:
            specs.append(spec)
    return specs


def names(specs: list[str]) -> list[str]:
    """Distribution names of requirement strings, in order, once each."""
    out = []
    for spec in specs:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if m and m.group(1) not in out:
            out.append(m.group(1))
    return out


def platform_tags(probe: dict) -> list[str]:
    """pip --platform values for the board: every manylinux level its glibc allows (pip does
    not fall back from one level to a lower one by itself), then manylinux2014."""
    plat = probe.get("platform", "")
    machine = probe.get("machine", "")
    if not plat.startswith("linux-"):
        raise DeviceError(f"unsupported platform for the runtimes: {plat or machine!r}; the "
                          "runner's wheels exist for Linux on aarch64 and x86_64")
    arch = plat.split("-", 1)[1]
    m = re.match(r"glibc-2\.(\d+)", probe.get("glibc", ""))
    if not m:
        raise DeviceError(f"unsupported platform for the runtimes: {arch} without glibc "
                          f"({probe.get('glibc') or 'musl?'}); use a glibc distribution "
                          "(Debian, Ubuntu, Raspberry Pi OS) or install the runtime yourself")
    tags = [f"manylinux_2_{v}_{arch}" for v in range(int(m.group(1)), 16, -1)]
    return tags + [f"manylinux2014_{arch}", f"linux_{arch}"]


def runtime_wheels(wheel: Path, extra: str, probe: dict) -> list[Path]:
    """Wheels of the runner's dependencies for the board: from the host cache (offline), else
    downloaded into it with pip download (binary wheels only, the board's platform)."""
    pyver = "".join(probe["python"].split(".")[:2])
    tags = platform_tags(probe)
    cache = host_cache() / "wheels" / f"cp{pyver}-{tags[-1].split('_', 1)[1]}-{probe['glibc']}"
    cache.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--only-binary=:all:", "--python-version", pyver, "--implementation", "cp",
            "--dest", str(cache)]
    for t in tags:
        base += ["--platform", t]
    req = f"{wheel}[{extra}]"
    reqs = [req, "pip"]  # pip's own wheel installs on Pythons without venv/ensurepip
    proc = subprocess.run(base + ["--no-index", "--find-links", str(cache), *reqs],
                          capture_output=True, text=True)
    if proc.returncode:
        proc = online = subprocess.run(base + reqs, capture_output=True, text=True)
        if online.returncode:
            err = _last(online.stderr)
            if "No matching distribution" in online.stderr or "from versions: none" in online.stderr:
                raise DeviceError(
                    f"unsupported platform for the runtime: no wheel for Python {probe['python']} "
                    f"on {tags[0].split('_', 3)[-1]} ({probe['glibc']}): {err}; use a 64-bit OS "
                    "with Python >= 3.10, or install the runtime on the board and pass --python")
            raise DeviceError(f"downloading wheels for the board failed ({err}); without "
                              f"internet on this host, fill {cache} once where there is")
    # pip's own lines name the files this requirement resolved to (other extras stay behind)
    names = re.findall(r"(?:Saved|File was already downloaded) (\S+\.whl)", proc.stdout)
    found = sorted({Path(n).name for n in names})
    return [cache / n for n in found if not n.startswith("edgedeploy-") and (cache / n).is_file()]


def _last(text: str) -> str:
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    return lines[-1] if lines else "no output"
