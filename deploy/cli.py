"""The ``deploy`` command line: a table of subcommands, each a module under deploy.commands.

A command module defines ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
heavy imports (torch, converters) inside ``run`` so that ``deploy --help`` stays instant.
"""
from __future__ import annotations

import sys

from edgebase import __version__
from edgebase.cli import run_cli

COMMANDS = {
    "models": "deploy.commands.models",
    "inspect": "deploy.commands.inspect",
    "export": "deploy.commands.export",
    "compress": "deploy.commands.compress",
    "release": "deploy.commands.release",
    "benchmark": "deploy.commands.benchmark",
    "train": "deploy.commands.train",
    "device": "deploy.commands.device",
    "guidelines": "deploy.commands.guidelines",
}


def main(argv=None) -> int:
    return run_cli("deploy", COMMANDS, __version__, argv)


if __name__ == "__main__":
    sys.exit(main())
