"""The frame both command lines share: a table of subcommands, each a module.

A command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
heavy imports (torch, converters, runtimes) inside ``run`` so that ``--help`` stays instant.
Every way a run can end on a user's mistake or on the machine prints one line on stderr and
exits non-zero: errors of the DeployError family (their exit code), a flag argparse refuses
(2), Ctrl-C (130), SIGTERM (143) and a full or read-only disk (5); ``--debug`` shows the
traceback. Interruptions travel as KeyboardInterrupt, so every ``finally`` and atomic write on
the way out removes what it had not finished. An interruption that arrives while a module is
being imported waits until the import is done: native extensions (onnx's nanobind enums, for
one) abort the whole process when an exception crosses their initialisation, which would skip
every cleanup.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
from pathlib import Path

from edgebase.errors import DeployError

# OSErrors that are the machine's state, not a bug: reported in one line
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
DISK_EXIT = 5


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that cleanups run."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a refused flag is one line (the message names the flag and what is
    valid) instead of the whole usage block."""

    def error(self, message: str):
        # "runner: error: ..." as for every other error; the subcommand names its help
        self.exit(2, f"{self.prog.split()[0]}: error: {message} (see {self.prog} --help)\n")


def build_parser(prog: str, commands: dict[str, str], version: str) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in commands.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks for errors")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# a deferred interruption is delivered again this many seconds later
RETRY_S = 0.05


def _importing(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum, frame):
    """Raise Terminated (SIGTERM) or KeyboardInterrupt, but never inside an import."""
    if _importing(frame):
        # a real signal again (not _thread.interrupt_main, which does not wake a sleeping call)
        retry = threading.Timer(RETRY_S, signal.pthread_kill,
                                (threading.main_thread().ident, signum))
        retry.daemon = True
        retry.start()
        return
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def run_cli(prog: str, commands: dict[str, str], version: str, argv=None) -> int:
    parser = build_parser(prog, commands, version)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a refused flag (its line is printed), --help, --version
        return int(done.code or 0)
    previous = _on_signals(_interrupt)
    try:
        return int(args._run(args) or 0)
    except DeployError as err:
        if args.debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except Terminated:
        print(f"{prog}: stopped by SIGTERM; unfinished files were removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; unfinished files were removed", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (`| head`) went away; silence the flush at exit as well
        sys.stdout = open(os.devnull, "w")
        return 141
    except OSError as err:
        if args.debug or err.errno not in DISK_FULL | NOT_WRITABLE:
            raise
        print(f"{prog}: error: {disk_message(err, getattr(args, 'output', None))}",
              file=sys.stderr)
        return DISK_EXIT
    finally:
        _on_signals(previous)


def disk_message(err: OSError, output=None) -> str:
    """One line for an operation the machine refused. A hidden temporary name is shown as its
    folder (the user never chose it); with no name at all, the command's output folder."""
    name = str(err.filename or "")
    where = str(Path(name).parent) if Path(name).name.startswith(".") else name
    where = where or (str(output) if output else "")
    if err.errno in DISK_FULL:
        return (f"{err.strerror}" + (f" while writing {where}" if where else "")
                + ": free some space or choose another output folder; unfinished files were "
                  "removed")
    return f"{where or 'a file'}: {err.strerror}"


def _on_signals(handlers):
    """Install a handler for SIGINT and SIGTERM (main thread only): one callable for both,
    or the dict this returns of the ones it replaced."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = handlers.get(sig) if isinstance(handlers, dict) else handlers
        if handler is None or signal.getsignal(sig) == signal.SIG_IGN:
            continue  # a signal the parent told us to ignore (nohup, `cmd &`) stays ignored
        try:
            previous[sig] = signal.signal(sig, handler)
        except (ValueError, TypeError):  # not the main thread, or no previous Python handler
            pass
    return previous
