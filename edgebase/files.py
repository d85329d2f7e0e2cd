"""File helpers: hashing and atomic writes (a crash never leaves a file that looks finished)."""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from edgebase.errors import DeployError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only on success.

    The temporary name keeps the final suffix (converters choose formats by suffix) and
    starts with a dot so that a half-written file is never mistaken for a result.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.stem}.", suffix=suffix if suffix is not None else final.suffix,
        dir=final.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes the file private (0600); finished files get the usual umask mode
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except OSError as e:
        if e.filename is None or Path(e.filename) == tmp_path:
            e.filename = str(final)  # name the result that could not be written
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def output_problem(path: str | os.PathLike, kind: str = "folder") -> str | None:
    """Why ``path`` cannot become an output ``kind`` ("folder" or "file"), or None.

    Checked before any work, so a slow conversion never ends on an unwritable path: the
    nearest existing ancestor must be a folder this process can create a file in (tried for
    real: permissions alone do not tell about /proc, read-only mounts or ACLs).
    """
    text = os.fspath(path)
    if not text.strip():
        return f"an empty path; give a {kind} name"
    p = Path(text)
    if p.exists():
        if kind == "folder" and not p.is_dir():
            return f"{p} is a file, not a folder"
        if kind == "file" and p.is_dir():
            return f"{p} is a folder, not a file"
    probe = p.absolute() if kind == "folder" and p.is_dir() else p.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{p} would be inside {probe}, which is a file"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".write-check.", dir=probe)
    except OSError as e:
        return f"cannot write in {probe} ({e.strerror})"
    os.close(fd)
    os.unlink(tmp)
    return None


class FolderBusyError(DeployError):
    """Another process is writing results into the same folder."""


_held: dict[str, list] = {}  # folder -> [fd, depth]: stages nest (int8 makes its fp32 parent)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (made if missing) while results are written in it.

    Two runs into one folder would interleave their renames, leaving a manifest beside a file
    it does not describe; the second run is refused at once with a clear line instead.
    ``flock`` on the folder itself: nothing is left behind, and the kernel drops the lock
    when the process dies, however it dies. Re-entrant within a process.
    """
    import fcntl

    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key][1] += 1
    else:
        fd = os.open(key, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderBusyError(f"{folder} is in use by another run writing into it; wait "
                                  f"for it to finish or give this {what} another output "
                                  f"folder") from None
        _held[key] = [fd, 1]
    try:
        yield folder
    finally:
        _held[key][1] -= 1
        if not _held[key][1]:
            for path in made:  # a run that wrote nothing leaves no folders behind
                try:
                    path.rmdir()
                except OSError:  # not empty: something was written
                    break
            os.close(_held.pop(key)[0])  # closing the only descriptor releases the lock


LOW_SPACE = 1 << 20  # bytes; below this a converter's failure to write is the disk's fault


def raise_if_disk_full(folder: str | os.PathLike, final: str | os.PathLike,
                       err: BaseException) -> None:
    """Raise ENOSPC (naming ``final``) when ``folder`` has next to no space left.

    Converters report a write that ran out of space as anything at all (OpenVINO:
    "basic_ios::clear: iostream error"); blaming the model for it would mislead."""
    import errno

    try:
        st = os.statvfs(folder)
    except OSError:
        return
    if st.f_bavail * st.f_frsize < LOW_SPACE:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final)) from err
