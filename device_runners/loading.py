"""``load(path)``: a model file in the runtime for its suffix, ready to run.

``isolate=True`` first loads the model and runs one inference in a child process
(``device_runners.isolation``), so a runtime that crashes on a malformed file costs a one-line
``ModelFileError`` instead of the calling process.
"""
from __future__ import annotations

import os

from edgebase.errors import ConfigError
from device_runners.backends import backend_class, resolve
from device_runners.backends.base import Backend


def load(path: str | os.PathLike, runtime: str | None = None, threads: int | None = None,
         *, isolate: bool = False, precision_hint: str | None = None) -> Backend:
    """Load a model file with the runtime for its suffix (or ``runtime``).

    ``threads`` None leaves the runtime's default; ``precision_hint`` None runs float work in
    f32 (see ``base.PRECISION_HINTS``). Raises ModelFileError for files the
    runtime cannot read, MissingDependencyError (naming the extra) when it is not installed.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    path, runtime = resolve(path, runtime)
    cls = backend_class(runtime)
    cls.check_hint(precision_hint)  # a bad hint is a user error before any loading
    if isolate:
        from device_runners.isolation import check_in_child
        check_in_child(path, runtime, threads)
    return cls(path, threads=threads, precision_hint=precision_hint)
