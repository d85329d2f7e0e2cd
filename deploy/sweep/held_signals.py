"""Ctrl-C and SIGTERM on the head of a Ray sweep: held while Ray's code runs in this process,
raised by the sweep itself between two waits.

A KeyboardInterrupt raised at an arbitrary point inside Ray (a callback, its own SIGINT
deferral around deserialisation) can be lost, and the sweep then runs to its end. So while
a session is open the handlers only return, and the C-level signal handler's wakeup byte
(``signal.set_wakeup_fd``, written for every handled signal whichever Python handler runs)
says which signal came; ``raise_if_signalled`` turns it into the CLI's usual interruption.
Signals the parent told this process to ignore (``nohup``) stay ignored.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading

_active: list[int] = []  # the read end of the open session's wakeup pipe


def _hold(signum, frame) -> None:
    """The wakeup pipe has the signal: nothing to do here."""


@contextlib.contextmanager
def held():
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _hold) for s in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(s) is not signal.SIG_IGN}
    _active.append(read)
    try:
        yield
    finally:
        _active.remove(read)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(read)
        os.close(write)


def raise_if_signalled() -> None:
    """KeyboardInterrupt (SIGINT) or the CLI's Terminated (SIGTERM) if one came while held."""
    if not _active:
        return
    try:
        came = os.read(_active[-1], 512)
    except BlockingIOError:
        return
    if signal.SIGTERM in came:
        from edgebase.cli import Terminated

        raise Terminated()
    if signal.SIGINT in came:
        raise KeyboardInterrupt()
