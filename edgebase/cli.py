"""The frame both command lines share: a table of subcommands, each a module.

A command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
heavy imports (torch, converters, runtimes) inside ``run`` so that ``--help`` stays instant.
Every way a run can end on a user's mistake or on the machine prints one line on stderr and
exits non-zero: errors of the DeployError family (their exit code), a flag argparse refuses
(2), Ctrl-C (130), SIGTERM (143) and a full or read-only disk (5); ``--debug`` shows the
traceback. Interruptions travel as KeyboardInterrupt, so every ``finally`` and atomic write on
the way out removes what it had not finished.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
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


def _terminate(signum, frame):
    raise Terminated()


def run_cli(prog: str, commands: dict[str, str], version: str, argv=None) -> int:
    parser = build_parser(prog, commands, version)
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # a refused flag (its line is printed), --help, --version
        return int(done.code or 0)
    previous = _on_sigterm(_terminate)
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
        _on_sigterm(previous)


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


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM (main thread only); returns the one it replaced."""
    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, TypeError):  # not the main thread, or no previous Python handler
        return None
