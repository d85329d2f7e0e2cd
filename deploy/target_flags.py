"""Command-line flags for the target options of the capability table (``Target.options``).

Each option's flag is made here from its table entry, so a target's options reach the CLI by
its table entry alone; a flag offered by several targets (same option, same kind) is one flag
whose help names them. A flag given for a target without that option is refused by
``Target.check_options`` in one line.
"""
from __future__ import annotations

from typing import Any


def option_flags() -> dict[str, tuple[str, Any, list[str]]]:
    """flag -> (option name, its TargetOption, the targets offering it), in table order."""
    from edgebase.capabilities import TARGETS

    flags: dict[str, tuple[str, Any, list[str]]] = {}
    for target in TARGETS.values():
        for name, option in target.options.items():
            flag = option.flag_name(name)
            if flag not in flags:
                flags[flag] = (name, option, [target.name])
                continue
            known_name, known, owners = flags[flag]
            if (known_name, known.kind, known.default) != (name, option.kind, option.default):
                raise ValueError(f"{flag} would set {known_name} of {', '.join(owners)} and "
                                 f"{name} of {target.name}")
            owners.append(target.name)
    return flags


def _dest(flag: str) -> str:
    return "target_option_" + flag.lstrip("-").replace("-", "_")


def add_arguments(parser) -> None:
    for flag, (name, option, owners) in option_flags().items():
        help_text = f"{', '.join(owners)}: {option.help}"
        if option.kind is bool:
            parser.add_argument(flag, dest=_dest(flag), action="store_const",
                                const=not option.default, default=None, help=help_text)
        else:
            least = "" if option.minimum is None else f", at least {option.minimum}"
            parser.add_argument(flag, dest=_dest(flag), type=option.kind, default=None,
                                choices=option.choices,
                                metavar="N" if option.kind is int else "VALUE",
                                help=f"{help_text} (default {option.default}{least})")


def given(args) -> dict[str, Any]:
    """The target options the command line set, by option name (unset ones are left out, so
    the converter's defaults apply; ``ExportConfig`` also drops those given at their default,
    so the manifest records only what differs from it)."""
    out = {}
    for flag, (name, _, _) in option_flags().items():
        value = getattr(args, _dest(flag), None)
        if value is not None:
            out[name] = value
    return out
