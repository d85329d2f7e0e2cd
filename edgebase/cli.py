"""The frame both command lines share: a table of subcommands, each a module.

A command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
heavy imports (torch, converters, runtimes) inside ``run`` so that ``--help`` stays instant.
Errors of the DeployError family become one line on stderr and their exit code; ``--debug``
shows the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from edgebase.errors import DeployError


def build_parser(prog: str, commands: dict[str, str], version: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
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


def run_cli(prog: str, commands: dict[str, str], version: str, argv=None) -> int:
    parser = build_parser(prog, commands, version)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except DeployError as err:
        if args.debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (`| head`) went away; silence the flush at exit as well
        sys.stdout = open(os.devnull, "w")
        return 141
