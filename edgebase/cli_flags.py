"""Flags shared by ``deploy`` and ``runner``: one name for one thing.

The vocabulary: ``--target`` (one, or a comma list where a command builds several),
``--data`` (labelled images to validate / measure on), ``--limit`` (how many of them),
``--int8-io``, ``--threads``, ``--json [FILE]``, ``--force``. Names used before are kept as
hidden aliases for one release: they still work, print a note naming the new flag, and do not
appear in ``--help``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

STDOUT = "-"


class _OldName(argparse.Action):
    """Store like the new flag, and say once on stderr that the name is going away."""

    def __init__(self, option_strings, dest, new: str, nargs=None, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, nargs=nargs, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is now {self.new}; the old name goes in the next "
              f"release", file=sys.stderr)
        setattr(namespace, self.dest, values)


def old_name(parser, flag: str, new: str, dest: str, **kwargs) -> None:
    """``flag`` as a hidden alias storing into ``dest`` (the new flag's, or its own when the
    old flag meant something narrower)."""
    parser.add_argument(flag, dest=dest, action=_OldName, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


def add_model_build(parser) -> None:
    """--num-classes, --width, --input-size: how a zoo model is built for given weights."""
    parser.add_argument("--num-classes", type=POSITIVE,
                        help="classifier outputs (default: the model's)")
    parser.add_argument("--width", type=above(0),
                        help="width multiplier / scale, where the model has one")
    parser.add_argument("--input-size", type=POSITIVE,
                        help="square input side in pixels (default: the model's)")


def csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def json_file(text: str) -> str:
    """FILE of ``--json [FILE]`` must say it is JSON: ``--json MODEL`` would otherwise take a
    positional argument for a file name and overwrite it."""
    if text != STDOUT and not text.endswith(".json"):
        raise argparse.ArgumentTypeError(
            f"{text!r} does not end in .json; write --json FILE.json, or put --json after the "
            f"positional arguments")
    return text if text == STDOUT else output_file(text)


def add_json(parser, what: str) -> None:
    parser.add_argument("--json", nargs="?", const=STDOUT, type=json_file, metavar="FILE",
                        help=f"{what} as JSON: to FILE.json (the table still prints), or alone "
                             f"instead of the table on stdout")


def write_json(data: Any, dest: str) -> None:
    """``dest`` "-" prints to stdout; a path is written atomically."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    if dest == STDOUT:
        sys.stdout.write(text)
        return
    from edgebase.files import write_text_atomic

    write_text_atomic(dest, text)


def at_least(lo: float, kind=int):
    """An argparse type for numbers >= ``lo``: a bad value is refused while parsing, before
    any work starts, with the flag's name and the valid range."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo:g}, got {text}")
        return value

    parse.__name__ = f"number >= {lo:g}"
    return parse


def above(lo: float):
    """An argparse type for floats > ``lo`` (a learning rate, a time budget, a width)."""
    base = at_least(float("-inf"), float)

    def parse(text: str) -> float:
        value = base(text)
        if value <= lo:
            raise argparse.ArgumentTypeError(f"must be more than {lo:g}, got {text}")
        return value

    parse.__name__ = f"number > {lo:g}"
    return parse


POSITIVE = at_least(1)  # counts that must be >= 1: threads, runs, batch, images
COUNT = at_least(0)  # counts that may be 0: warm-up runs, a label offset


def output_dir(text: str) -> str:
    """An argparse type for an output folder that can be made and written (checked now)."""
    from edgebase.files import output_problem

    problem = output_problem(text, "folder")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def output_file(text: str) -> str:
    """An argparse type for an output file whose folder can be written (checked now)."""
    from edgebase.files import output_problem

    problem = output_problem(text, "file")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text
