"""What every converter returns, and small helpers they share."""
from __future__ import annotations

import collections
import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from edgebase.errors import ConversionError  # noqa: F401  (re-exported for converters)


@dataclass(frozen=True)
class Conversion:
    """The files one conversion wrote and the facts worth recording about it.

    ``details`` describe the export pass (tool, options, rewrites) and go into the manifest's
    ``passes``; ``graph`` describes the written graph (op histogram, TRANSPOSE count) and goes
    into the manifest's ``extra``.
    """

    file: Path
    companions: tuple[Path, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)


def graph_summary(op_types: Iterable[str], transpose: str = "Transpose") -> dict[str, Any]:
    """Op histogram (most frequent first), op count and number of transpose ops."""
    hist = collections.Counter(op_types)
    return {
        "op_count": sum(hist.values()),
        "transpose_count": hist.get(transpose, 0),
        "op_histogram": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def first_line(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line[:limit]


class _Captured:
    def __init__(self, f):
        self._f = f

    def text(self, tail: int = 4000) -> str:
        """What the tools printed so far (the last ``tail`` characters)."""
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        self._f.flush()
        self._f.seek(0)
        return self._f.read().decode("utf-8", errors="replace")[-tail:]


@contextlib.contextmanager
def quiet() -> Iterator[_Captured]:
    """Send what converters print (progress bars, absl/MLIR logs on fd 1 and 2) to a buffer.

    The tools write from C++ straight to the file descriptors, so redirecting ``sys.stdout``
    is not enough. ``EDGEDEPLOY_VERBOSE=1`` lets their output through.
    """
    import sys

    if os.environ.get("EDGEDEPLOY_VERBOSE"):
        with tempfile.TemporaryFile() as f:
            yield _Captured(f)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as f:
        saved = os.dup(1), os.dup(2)
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        # Python-level prints too: sys.stdout need not be fd 1 (an embedding app, pytest)
        text = open(f.fileno(), "w", buffering=1, encoding="utf-8", errors="replace",
                    closefd=False)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield _Captured(f)
        finally:
            text.flush()
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            text.close()
