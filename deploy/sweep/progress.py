"""One progress bar over a sweep's cells on the head: done, running, retried, failed."""
from __future__ import annotations

import time
from typing import TextIO


class SweepProgress:
    """tqdm on ``stream`` when installed, else a line redrawn at most once a second."""

    def __init__(self, total: int, stream: TextIO, desc: str = "cells"):
        self.total, self.stream, self.desc = total, stream, desc
        self.done = self.running = self.retried = self.failed = 0
        self._last = 0.0
        try:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="cell", file=stream,
                             dynamic_ncols=True, mininterval=0.5)
        except ImportError:
            self._bar = None

    def _status(self) -> str:
        return (f"running {self.running}, retried {self.retried}, failed {self.failed}")

    def update(self, *, done: int = 0, running: int | None = None, retried: int = 0,
               failed: int = 0) -> None:
        self.done += done
        self.retried += retried
        self.failed += failed
        if running is not None:
            self.running = running
        if self._bar is not None:
            self._bar.set_postfix_str(self._status(), refresh=False)
            self._bar.update(done)
            return
        now = time.monotonic()
        if now - self._last > 1.0 or self.done == self.total:
            self._last = now
            print(f"\r{self.desc} {self.done}/{self.total} ({self._status()})", end="",
                  file=self.stream, flush=True)

    def write(self, line: str) -> None:
        """A line above the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(f"\r{line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=self.stream, flush=True)
