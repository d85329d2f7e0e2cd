"""Where a stage's result goes: the file stem, and moving finished files into place.

Shared by the export and int8 stages. A manifest is written last and only beside the file it
describes; a failed result is kept under ``<model>.failed.<suffix>`` and never replaces an
earlier good one.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from edgebase.manifest import Artifact, file_facts, manifest_path, write_manifest

FAILED = "failed"  # infix of the names failed exports are kept under


def file_stem(source) -> str:
    """The file stem: the entry's name, with the width in it when --width overrode it."""
    from zoo import get_entry

    entry, key = source.entry, source.entry.width_kwarg
    width = entry.kwargs.get(key) if key else None
    if width is None or width == get_entry(entry.name).kwargs.get(key):
        return entry.name
    text = f"{float(width):.2f}".rstrip("0")  # 0.25 -> 0.25, 0.5 -> 0.5, 1.0 -> 1.
    tag = "x" + (text + "0" if text.endswith(".") else text).replace(".", "_")
    base, dot, suffix = entry.name.partition(".")
    return re.sub(r"_x\d+_\d+$", "", base) + "_" + tag + dot + suffix


def failed_name(final: Path) -> Path:
    """``out/m.fp16.tflite`` -> ``out/m.fp16.failed.tflite``."""
    return final.with_name(final.name[: -len(final.suffix)] + f".{FAILED}{final.suffix}")


def place(conversion, final: Path, artifact: Artifact, failed: bool) -> tuple[Path, Artifact]:
    """Move the converted file(s) to ``final`` (or its failed name) and write the manifest."""
    dest = failed_name(final) if failed else final
    # a manifest beside a file it does not describe must never exist: drop dest's first
    # (a failure leaves an earlier good result of the same name alone)
    manifest_path(dest).unlink(missing_ok=True)
    companions = []
    for comp in conversion.companions:
        target_comp = dest.with_suffix(comp.suffix)
        os.replace(comp, target_comp)
        companions.append(target_comp)
    os.replace(conversion.file, dest)
    if not failed:  # a good result replaces the leftovers of an earlier failure
        fail = failed_name(final)
        for path in (manifest_path(fail), fail,
                     *(fail.with_suffix(c.suffix) for c in conversion.companions)):
            path.unlink(missing_ok=True)
    artifact = artifact.replace(
        file=dest.name, companions=tuple(file_facts(c) for c in companions),
        **{k: v for k, v in file_facts(dest).items() if k != "file"})
    write_manifest(artifact, dest)
    return dest, artifact
