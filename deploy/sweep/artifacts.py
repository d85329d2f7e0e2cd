"""Content-addressed cells and files for a sweep across machines.

A cell's key is a hash of its parent (model build and weights identity, seed), its settings
(target, precision, data and calibration sets by content, thread counts, runs) and the
toolchain: the same key means the same work, so a re-run or a retried cell reuses a finished
result instead of doing it again. A file made on one machine travels as a ``FileSet`` (the
model file, its companions and its manifest, in bytes) and is laid down on another machine under
its key, checked against the manifest's hashes. Latency records (``Artifact.benchmarks``) are
no part of a file's identity: the head adds them to the manifests of its output folder, and a
file is the same file with or without them.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgebase.errors import DeployError

KEY_CHARS = 24  # 96 bits of sha256: no collision among any sweep's cells


def digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


_DATA_IDS: dict[tuple, str] = {}


def data_identity(path: str | os.PathLike | None) -> str | None:
    """A data set by content: a file's sha256, a folder's listing (names, sizes, times)."""
    if path is None:
        return None
    from edgebase.files import sha256_file

    p = Path(path).resolve()
    st = p.stat()
    memo = (str(p), st.st_size, st.st_mtime_ns)
    if memo not in _DATA_IDS:
        if p.is_file():
            _DATA_IDS[memo] = sha256_file(p)
        else:
            listing = sorted((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                             for f in p.rglob("*") if f.is_file())
            _DATA_IDS[memo] = digest(listing)
    return _DATA_IDS[memo]


def parent_identity(source, seed: int) -> dict[str, Any]:
    """What makes two parents the same model: build, weights (sha256 of a checkpoint) and the
    seed random-init weights are drawn with."""
    d = source.describe()
    return {k: d[k] for k in ("name", "arch", "kwargs", "num_classes", "input_size", "weights")
            } | {"seed": seed}


# ---- files between machines -------------------------------------------------------------
@dataclass(frozen=True)
class FileSet:
    """A finished file with its companions and manifest, as bytes: {name: content}."""

    folder: str  # the model's folder (deploy.placement.file_stem)
    name: str  # the model file
    blobs: dict[str, bytes]

    @property
    def manifest(self) -> str:
        from edgebase.manifest import manifest_path

        return manifest_path(self.name).name

    def hashes(self) -> dict[str, str]:
        """sha256 of each file; the manifest's without its latency records."""
        return {n: content_hash(b, n == self.manifest) for n, b in self.blobs.items()}


def content_hash(blob: bytes, manifest: bool = False) -> str:
    """sha256 of a file's bytes; of a manifest, of what it says without ``benchmarks`` (an
    unreadable one: of its bytes, which then match nothing the head wrote)."""
    if manifest:
        try:
            data = json.loads(blob)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data.pop("benchmarks", None)
            blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def pack(path: Path) -> FileSet:
    """The file at ``path`` with its companions and its manifest, which travels without latency
    records (they are the output folder's, written on the head)."""
    from edgebase.errors import ModelFileError
    from edgebase.manifest import manifest_path, manifest_text, read_manifest

    art = read_manifest(path)
    if art is None:
        raise ModelFileError(f"{path}: no manifest beside it")
    blobs = {n: (path.parent / n).read_bytes()
             for n in [path.name] + [c["file"] for c in art.companions]}
    blobs[manifest_path(path).name] = manifest_text(art.replace(benchmarks=())).encode()
    return FileSet(path.parent.name, path.name, blobs)


def unpack(files: FileSet, root: Path) -> Path:
    """The files under ``root/<folder>/`` (the manifest last: it marks the file finished);
    returns the model file's path. Files already there with the same content are kept, so is a
    manifest of the same file with latency records (as a local run's reuse keeps them)."""
    from edgebase.files import write_bytes_atomic

    folder = root / files.folder
    path = folder / files.name
    want = files.hashes()
    for name in sorted(files.blobs, key=lambda n: n == files.manifest):
        dest = folder / name
        if not (dest.is_file() and _hash_of(dest, name == files.manifest) == want[name]):
            write_bytes_atomic(dest, files.blobs[name])
    return path


def _hash_of(path: Path, manifest: bool) -> str:
    from edgebase.files import sha256_file

    return content_hash(path.read_bytes(), True) if manifest else sha256_file(path)


def intact(path: Path):
    """The Artifact at ``path`` if it passed validation and its bytes (and companions') still
    match its manifest; else None."""
    from edgebase.files import sha256_file
    from edgebase.manifest import read_manifest

    try:
        art = read_manifest(path)
    except DeployError:
        return None
    if art is None or not art.passed or not path.is_file():
        return None
    files = [(path, art.sha256)] + [(path.parent / c["file"], c["sha256"])
                                    for c in art.companions]
    if any(not f.is_file() or sha256_file(f) != want for f, want in files):
        return None
    return art


NODE_CACHE_ENV = "EDGEDEPLOY_NODE_CACHE"


def node_cache(key: str) -> Path:
    """Where this machine keeps the files of cell ``key``: under $EDGEDEPLOY_NODE_CACHE if the
    node was started with it, else in the system's temp folder (which the OS cleans)."""
    root = os.environ.get(NODE_CACHE_ENV)
    root = Path(root) if root else Path(tempfile.gettempdir()) / f"edgedeploy-sweep-{os.getuid()}"
    return root / key


def on_this_node(files: FileSet, key: str) -> Path:
    """The file of ``files`` on this machine (laid down under its key unless already there)."""
    return unpack(files, node_cache(key))


def files_if_unchanged(path: Path, hashes: dict[str, str]) -> FileSet | None:
    """A finished file's FileSet from an output folder, if every file is still as made (its
    manifest may have gained latency records since: FileSet.hashes leaves them out)."""
    try:
        files = pack(path)
    except (OSError, DeployError):
        return None
    return files if files.hashes() == hashes else None
