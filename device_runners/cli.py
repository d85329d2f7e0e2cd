"""The ``runner`` command line (device side): ``runner bench``, ``runner eval`` and ``runner verify``.

Imports only the standard library and the command table at start-up; numpy and the one
runtime a model needs are imported when a command runs.
"""
from __future__ import annotations

import sys

from edgebase import __version__
from edgebase.cli import run_cli

COMMANDS = {
    "bench": "device_runners.commands.bench",
    "eval": "device_runners.commands.eval",
    "verify": "device_runners.commands.verify",
    "unpack": "device_runners.commands.unpack",
}


def main(argv=None) -> int:
    return run_cli("runner", COMMANDS, __version__, argv)


if __name__ == "__main__":
    sys.exit(main())
