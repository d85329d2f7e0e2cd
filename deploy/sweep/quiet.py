"""Ray writes to the process's own stdout and stderr (connection notes, retry messages, a
dying node's raylet log): while a sweep runs, both go to a log file and the user's terminal
gets only the sweep's own lines, through a stream on the original stderr."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator, TextIO


@contextlib.contextmanager
def output_to(log_file: Path) -> Iterator[TextIO]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    user = os.fdopen(os.dup(saved_err), "w", buffering=1)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        yield user
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, log_fd):
            os.close(fd)
        user.close()
