"""Cheap structural checks on a model file before any runtime parses it.

They catch the common cases (empty, truncated, wrong format or suffix, missing or short
companion files) with a precise message; whatever gets past them and still crashes a runtime
is caught by loading in a child process (``device_runners.isolation``). The format checks
belong to the backend of the runtime that owns the suffix (``Backend.sniff`` and
``Backend.check_structure``); the capability table says which that is.
"""
from __future__ import annotations

from pathlib import Path

from edgebase.capabilities import RUNTIMES, runtime_for_suffix
from edgebase.errors import ModelFileError


def looks_like(head: bytes) -> str | None:
    """What a file's first bytes look like, for the message: "<suffix> (--runtime NAME)"."""
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (unpack it first)"
    for r in RUNTIMES.values():
        own = r.suffixes[0]
        if runtime_for_suffix(own) is r and r.backend_class().sniff(head):
            return f"{own} (--runtime {r.name})"
    return None


def check_file(path: Path, runtime: str) -> None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise ModelFileError(f"{path}: empty file (0 bytes)")
    owner = runtime_for_suffix(path.suffix.lower())
    if owner is None:
        return
    backend = owner.backend_class()
    mine = backend.sniff(head)
    other = None if mine else looks_like(head)
    if mine is False or (mine is None and other):
        raise ModelFileError(f"{path}: not {backend.file_kind}"
                             + (f"; it looks like {other}" if other else ""))
    backend.check_structure(path, head, size)
