"""Versions of the tools that made an artifact, for its manifest (read from package metadata,
so nothing heavy is imported)."""
from __future__ import annotations

import importlib.metadata
import platform
from typing import Iterable

from edgebase.capabilities import TARGETS

# every distribution a host stage may use (the capability table's tools and PTQ tools, plus
# what every stage uses); the manifest records the ones a stage used
KNOWN = tuple(dict.fromkeys([d for t in TARGETS.values() for d in t.tools + t.ptq_tools]
                            + ["torchao", "numpy", "pillow"]))


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(dists: Iterable[str] = KNOWN) -> dict[str, str]:
    """{distribution: version} for the installed ones, plus edgedeploy and Python."""
    from edgebase import __version__

    out = {"edgedeploy": __version__, "python": platform.python_version()}
    for dist in dists:
        v = version(dist)
        if v is not None:
            out[dist] = v
    return out
