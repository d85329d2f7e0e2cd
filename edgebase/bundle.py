"""The release bundle on disk: ``manifest.json``, safe relative paths, deterministic zips.

Written by ``deploy release``, read by ``runner verify``; standard library only, so the
device side can use it. A bundle is a folder whose ``manifest.json`` lists every other file
in it (path, size, sha256) and describes each model file; its zip holds the same folder.
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgebase.errors import ModelFileError
from edgebase.files import atomic_path, sha256_file
from edgebase.kinds import NONE, NUMBER, check, check_items
from edgebase.manifest import Artifact

SCHEMA = "edgedeploy.bundle/1"
MANIFEST = "manifest.json"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip epoch: timestamps never change the bytes


@dataclass(frozen=True)
class Bundle:
    """What the release stage returns: a written bundle.

    Not an Artifact: an Artifact describes one model file (one format, precision, input and
    output), a bundle holds several, so the bundle carries theirs. ``manifest`` is
    manifest.json as written (every file's path, size and sha256; per model file its checks,
    accuracy and latency); ``artifacts`` are the manifests beside the bundle's model files,
    in manifest order (the bundle's file names, packed metadata, the latency measured there in
    ``benchmarks``).
    """

    folder: Path
    zip: Path
    manifest: dict[str, Any]
    artifacts: tuple[Artifact, ...]

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the folder but manifest.json, as listed in it."""
        return tuple(entry["path"] for entry in self.manifest["files"])

    def to_dict(self) -> dict[str, Any]:
        """``deploy release --json``: where the bundle and zip are, and manifest.json."""
        return {"bundle": str(self.folder), "zip": str(self.zip), **self.manifest}


NAME_MAX, PATH_MAX = 255, 4096  # Linux, and the smallest of the usual limits elsewhere


def check_relpath(path: str, where: str = "bundle") -> str:
    """``path`` if it is a plain relative POSIX path inside the bundle, else ModelFileError."""
    p = PurePosixPath(path)
    if (not path or p.is_absolute() or ".." in p.parts or "\\" in path or ":" in path
            or path != p.as_posix()):
        raise ModelFileError(f"{where}: unsafe path {_short(path)!r} (paths must be relative, "
                             f"without '..', '.', drive letters or backslashes)")
    # the file system refuses these with an OSError at the first stat
    if "\x00" in path or len(path.encode(errors="surrogatepass")) > PATH_MAX or any(
            len(part.encode(errors="surrogatepass")) > NAME_MAX for part in p.parts):
        raise ModelFileError(f"{where}: unusable path {_short(path)!r} (at most {NAME_MAX} bytes "
                             f"a name and {PATH_MAX} in all, no NUL)")
    return path


def _short(text: str, keep: int = 60) -> str:
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


def file_entry(root: Path, rel: str) -> dict[str, Any]:
    p = root / rel
    return {"path": rel, "size_bytes": p.stat().st_size, "sha256": sha256_file(p)}


def list_files(root: str | os.PathLike) -> list[str]:
    """Every file under ``root`` except manifest.json, as sorted relative POSIX paths."""
    root = Path(root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return [f for f in files if f != MANIFEST]


def read_bundle(root: str | os.PathLike) -> dict[str, Any]:
    """Parse and sanity-check ``root/manifest.json`` (schema, paths)."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise ModelFileError(f"{root}: no {MANIFEST} (not a release bundle)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable ({e})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ModelFileError(f"{path}: schema {got!r} is not {SCHEMA!r}")
    for key in ("files", "models"):
        if not isinstance(data.get(key), list):
            raise ModelFileError(f"{path}: {key!r} must be a list")
    _check_kinds(data, str(path))
    for entry in data["files"]:
        check_relpath(entry.get("path", ""), str(path))
    for model in data["models"]:
        for key in ("path", "manifest"):
            check_relpath(model.get(key, ""), str(path))
        for c in model.get("companions", ()):
            check_relpath(c.get("path", ""), str(path))
    return data


# what each field read by `runner verify` must be (an untrusted file: checked before use)
_SPEC = {"name": (str, NONE), "shape": list, "dtype": str, "layout": (str, NONE),
         "scale": (*NUMBER, NONE), "zero_point": (int, NONE)}
_MODEL = {"path": str, "manifest": str, "runtime": (str, NONE), "input": dict,
          "outputs": list, "companions": list, "accuracy": (dict, NONE)}
_ACCURACY = {"top1": NUMBER, "images": (int, NONE), "split": (str, NONE), "seed": (int, NONE)}


def _check_kinds(data: dict[str, Any], where: str) -> None:
    """ModelFileError naming the first field of manifest.json that has the wrong kind."""
    check(data, {"labels": str, "preprocess": (dict, NONE)}, "", where)
    pre = data.get("preprocess") or {}
    for key in ("mean", "std"):
        if key in pre:
            check_items(pre[key], NUMBER, f"preprocess[{key!r}]", where)
    for i, entry in enumerate(data["files"]):
        check(entry, {"path": str}, f"files[{i}]", where, ("path",))
    for i, model in enumerate(data["models"]):
        what = f"models[{i}]"
        check(model, _MODEL, what, where, ("path", "manifest", "input", "outputs"))
        for j, c in enumerate(model.get("companions", ())):
            check(c, {"path": str}, f"{what} companion {j}", where, ("path",))
        for label, spec in [("input", model["input"])] + [
                (f"output {j}", o) for j, o in enumerate(model["outputs"])]:
            check(spec, _SPEC, f"{what} {label}", where)
            check_items(spec.get("shape", []), int, f"{what} {label} shape", where)
        if model.get("accuracy"):
            check(model["accuracy"], _ACCURACY, f"{what} accuracy", where, ("top1",))


def write_zip(root: str | os.PathLike, zip_path: str | os.PathLike, prefix: str) -> Path:
    """Zip ``root`` as ``prefix/<relative path>``: sorted entries, fixed times and modes."""
    root, zip_path = Path(root), Path(zip_path)
    check_relpath(prefix, "zip prefix")
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            for rel in [MANIFEST] + list_files(root):
                info = zipfile.ZipInfo(f"{prefix}/{rel}", date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # unix, so the mode below is read as one
                info.external_attr = 0o644 << 16
                with open(root / rel, "rb") as f:
                    zf.writestr(info, f.read(), compresslevel=9)
    return zip_path


def extract_zip(zip_path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a bundle zip into ``dest`` after checking every name; returns the bundle folder."""
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{zip_path}: unreadable zip ({e})") from None
    with zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        for n in names:
            check_relpath(n, str(zip_path))
        tops = {PurePosixPath(n).parts[0] for n in names}
        if len(tops) != 1 or any(len(PurePosixPath(n).parts) < 2 for n in names):
            raise ModelFileError(f"{zip_path}: expected one top-level bundle folder, found "
                                 f"{', '.join(sorted(tops)) or 'nothing'}")
        for info in zf.infolist():
            if info.is_dir():
                continue
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as out:
                    while block := src.read(1 << 20):
                        out.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise ModelFileError(f"{zip_path}: entry {info.filename} is damaged ({e})") from None
    return dest / tops.pop()
