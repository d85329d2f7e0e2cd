"""Kinds of JSON values in files the toolchain did not necessarily write (manifests, bundles).

``check(obj, kinds, what)`` raises ModelFileError naming the first field whose value is of the
wrong kind, so that readers of untrusted JSON use a field only after its kind is known: a
damaged or hostile file is then one line, never a traceback deep inside a consumer.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from edgebase.errors import ModelFileError

NONE = type(None)
NUMBER = (int, float)
_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object",
          list: "a list", bool: "true/false", NONE: "null"}
_PLURALS = {str: "strings", int: "integers", NUMBER: "numbers", dict: "objects"}


def name(kind) -> str:
    """JSON's words for a kind or a tuple of kinds: 'a string or null'."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds:  # "a number" says it: integers are numbers
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(dict.fromkeys(_NAMES.get(k, k.__name__) for k in kinds))


def check(obj: Any, kinds: Mapping[str, Any], what: str, where: str,
          required: Iterable[str] = ()) -> None:
    """``obj`` is an object holding ``required`` keys, each key of ``kinds`` it has being of
    that kind; else ModelFileError("{where}: {what}...")."""
    if not isinstance(obj, dict):
        raise ModelFileError(f"{where}: {what or 'the file'} must be an object, not "
                             f"{name(type(obj))}")
    for key in required:
        if key not in obj:
            raise ModelFileError(f"{where}: {what or 'the file'} has no {key!r}")
    for key, kind in kinds.items():
        if key in obj and not isinstance(obj[key], kind):
            label = f"{what}[{key!r}]" if what else repr(key)
            raise ModelFileError(f"{where}: {label} must be {name(kind)}, not "
                                 f"{name(type(obj[key]))}")


def check_items(values: Any, kind, what: str, where: str) -> None:
    """``values`` is a list whose every item is of ``kind``."""
    if not isinstance(values, list) or not all(isinstance(v, kind) for v in values):
        raise ModelFileError(f"{where}: {what} must be a list of {_PLURALS.get(kind, name(kind))}")
