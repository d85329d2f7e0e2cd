"""The no-silent-overwrite rule of ``deploy export``.

A model file's name says which model and precision it holds (``<model>[.<precision>]<suffix>``,
see ``edgebase.capabilities.Target.file_name``), not which checkpoint, class count or
preprocessing. So before a slow conversion, an export whose file already exists compares the
parent that file's manifest describes with the parent it is about to write; when they differ
it refuses (``--force`` replaces). Re-exporting the same parent (a new toolchain, other
options) replaces the file as before: that is an update, not a different model.

Chosen over a stem that encodes classes and weights: names stay short and stable for the apps
and scripts that reference them, and the rule catches the real mistake (two different
parents, one name) instead of leaving ever more near-identical files behind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebase.errors import DeployError


class OverwriteError(DeployError):
    """An export would replace a finished file made from a different parent."""


def parent_identity(model: dict[str, Any], precision: str, preprocess, labels) -> dict[str, Any]:
    """What makes two files of the same name different models (layout is the target's own)."""
    pre = None
    if preprocess is not None:
        pre = (preprocess.resize, preprocess.crop, tuple(round(v, 6) for v in preprocess.mean),
               tuple(round(v, 6) for v in preprocess.std), preprocess.interpolation,
               preprocess.color)
    weights = model.get("weights") or {}
    return {
        "model": model.get("name"),
        "classes": model.get("num_classes"),
        "weights": weights.get("sha256") or weights.get("source") or "random init",
        "input size": model.get("input_size"),
        "precision": precision,
        "preprocessing": pre,
        "labels": tuple(labels),
    }


def _show(key: str, value: Any) -> str:
    if key == "weights" and isinstance(value, str) and len(value) == 64:
        return f"sha256 {value[:12]}"
    if key == "labels":
        return f"{len(value)} labels" + (f" ({value[0]}, ...)" if value else "")
    if key == "preprocessing" and value:
        return f"resize {value[0]} crop {value[1]} mean {value[2]} std {value[3]}"
    return str(value)


def differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    return [f"{k} {_show(k, have.get(k))} -> {_show(k, want[k])}"
            for k in want if have.get(k) != want[k]]


def check_overwrite(path: Path, want: dict[str, Any], force: bool) -> None:
    """Raise OverwriteError when ``path`` is a finished file of a different parent."""
    from edgebase.manifest import read_manifest

    path = Path(path)
    if force or not path.exists():
        return
    try:
        art = read_manifest(path)
    except DeployError:
        art = None
    if art is None:
        what = "has no readable manifest (not written by deploy export)"
    else:
        diff = differences(parent_identity(art.model, art.precision, art.preprocess,
                                           art.labels), want)
        if not diff:
            return
        what = "holds a different parent: " + ", ".join(diff)
    raise OverwriteError(f"{path} exists and {what}; pass --force to replace it, or choose "
                         f"another --output folder")


def bundle_identity(name: str, classes: int, weights_sha: str | None, pre: dict) -> dict:
    """What makes two release bundles of the same name and version different releases."""
    return {"model": name, "classes": classes, "weights": weights_sha or "random init",
            "preprocessing": (pre.get("resize"), pre.get("crop"),
                              tuple(round(v, 6) for v in pre.get("mean", ())),
                              tuple(round(v, 6) for v in pre.get("std", ())))}


def check_bundle_overwrite(folder: Path, want: dict[str, Any], force: bool) -> None:
    """A release version names one model: rebuilding it from the same parent replaces the
    bundle (the build is reproducible), from another parent needs --force."""
    import json

    folder = Path(folder)
    if force or not folder.exists():
        return
    try:
        m = json.loads((folder / "manifest.json").read_text())
        src = m["source"]
        have = bundle_identity(src["model"], m["num_classes"],
                               (src.get("weights") or {}).get("sha256"), m["preprocess"])
    except (OSError, ValueError, KeyError, TypeError):
        what = "has no readable manifest.json"
    else:
        diff = [f"{k} {_show(k, have.get(k))} -> {_show(k, v)}" for k, v in want.items()
                if have.get(k) != v]
        if not diff:
            return
        what = "holds a different model: " + ", ".join(diff)
    raise OverwriteError(f"{folder} exists and {what}; pass --force to replace it, or give "
                         f"another --version or --output")
