"""``runner verify``: is this release bundle exactly what was released, and does it still work?

Checks, in order:
  1. every file listed in ``manifest.json`` exists with the recorded size and sha256, and no
     unlisted file is present (a changed byte is reported with the file's name);
  2. each model whose files are intact loads in its runtime and its input/output tensors
     (shape, dtype, layout, quantization) are those recorded; its own manifest agrees; a
     Deep Compression container is decoded first, each decoded file checked against the
     sha256 the container and manifest.json record; a format with its own check (the
     capability table's ``BundleHooks.check``, e.g. a ``.tflite`` with packed metadata
     carries the bundle's labels and normalization) passes it;
  3. with ``--data``, top-1 on the recorded image subset is within ``tolerance`` points of
     the recorded figure.
A bundle is a folder or its zip. Only numpy and the runtimes of the models are imported.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebase.bundle import extract_zip, file_entry, list_files, read_bundle
from edgebase.errors import DeployError, ModelFileError

DEFAULT_TOLERANCE = 1.0  # top-1 percentage points


@dataclass
class Problem:
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


@dataclass
class VerifyReport:
    bundle: str
    name: str
    version: str
    checked_files: int
    models: list[dict[str, Any]] = field(default_factory=list)  # per model: path, checks done
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def bad_files(self) -> list[str]:
        return sorted({p.path for p in self.problems})


def verify(bundle: str | os.PathLike, *, data: str | os.PathLike | None = None,
           tolerance: float = DEFAULT_TOLERANCE, limit: int | None = None,
           threads: int | None = None, load: bool = True) -> VerifyReport:
    bundle = Path(bundle)
    if not bundle.exists():
        raise ModelFileError(f"{bundle}: no such bundle folder or zip")
    if tolerance < 0:
        raise DeployError(f"tolerance must be 0 or more, got {tolerance}")
    if bundle.is_file():
        with tempfile.TemporaryDirectory(prefix="verify-") as tmp:
            report = _verify_dir(extract_zip(bundle, tmp), data, tolerance, limit, threads, load)
            report.bundle = str(bundle)
            return report
    return _verify_dir(bundle, data, tolerance, limit, threads, load)


def _verify_dir(root: Path, data, tolerance, limit, threads, load) -> VerifyReport:
    manifest = read_bundle(root)
    report = VerifyReport(bundle=str(root), name=manifest.get("name", "?"),
                          version=manifest.get("version", "?"), checked_files=0)
    listed = {e["path"]: e for e in manifest["files"]}
    for rel, entry in sorted(listed.items()):
        report.checked_files += 1
        problem = _check_file(root, rel, entry)
        if problem:
            report.problems.append(Problem(rel, problem))
    for rel in list_files(root):
        if rel not in listed:
            report.problems.append(Problem(rel, "not listed in manifest.json"))
    damaged = set(report.bad_files())
    for model in manifest["models"]:
        paths = [model["path"], model["manifest"]] + [c["path"] for c in model.get("companions", ())]
        unlisted = [p for p in paths if p not in listed]
        for p in unlisted:
            report.problems.append(Problem(p, "model file not listed in the checksums"))
        done = {"path": model["path"], "checksums": not (set(paths) & damaged) and not unlisted}
        report.models.append(done)
        if not done["checksums"] or not load:
            continue  # a changed file is not worth loading; its checksum already failed
        for what in _check_model(root, model, manifest, threads):
            report.problems.append(Problem(model["path"], what))
        done["loaded"] = True
        if data is not None:
            top1, what = _check_accuracy(root, model, data, tolerance, limit, threads)
            done["top1"] = top1
            if what:
                report.problems.append(Problem(model["path"], what))
    return report


def _check_file(root: Path, rel: str, entry: dict[str, Any]) -> str | None:
    p = root / rel
    if not p.is_file():
        return "missing"
    got = file_entry(root, rel)
    if got["size_bytes"] != entry.get("size_bytes"):
        return f"size {got['size_bytes']} bytes, manifest says {entry.get('size_bytes')}"
    if got["sha256"] != entry.get("sha256"):
        return f"sha256 {got['sha256'][:12]}... differs from the manifest's {str(entry.get('sha256'))[:12]}..."
    return None


def _check_model(root: Path, model: dict[str, Any], manifest: dict[str, Any], threads) -> list[str]:
    from edgebase.manifest import read_manifest
    from device_runners.container import materialized

    problems = []
    path = root / model["path"]
    artifact = read_manifest(path)
    if artifact is None:
        return [f"no manifest {Path(model['manifest']).name} beside it"]
    if artifact.sha256 != model.get("sha256"):
        problems.append("its own manifest records a different sha256 than manifest.json")
    with contextlib.ExitStack() as stack:
        try:  # a container is decoded first (each file checked against its sha256)
            file, decoded = stack.enter_context(materialized(path))
        except DeployError as e:
            return problems + [f"does not decode ({e})"]
        if decoded is not None:
            problems += _check_decoded(decoded, model)
        problems += _check_loaded(file, model, threads)
    check = _format_check(model.get("format"))
    if check is not None:
        problems += check(root, path, model, manifest)
    return problems


def _check_decoded(decoded: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """The files a container decoded to are the ones the bundle manifest names."""
    got = {f["name"]: f["sha256"] for f in decoded["files"]}
    want = {f["name"]: f["sha256"] for f in model.get("decodes_to", ())}
    if got != want:
        return [f"decodes to {sorted(got)} with other contents than manifest.json records"]
    return []


def _check_loaded(path: Path, model: dict[str, Any], threads) -> list[str]:
    from device_runners.loading import load
    from device_runners.backends.base import spec_dict

    problems = []
    try:
        backend = load(path, model.get("runtime"), threads=threads, isolate=True)
    except DeployError as e:
        return [f"does not load ({e})"]
    try:
        for kind, got, want in (("input", backend.inputs, [model["input"]]),
                                ("output", backend.outputs, model["outputs"])):
            if len(got) != len(want):
                problems.append(f"{len(got)} {kind}s, manifest says {len(want)}")
                continue
            for g, w in zip(got, want):
                diff = _spec_diff(spec_dict(g), w)
                if diff:
                    problems.append(f"{kind} {w.get('name')!r} differs: {diff}")
    finally:
        backend.close()
    return problems


def _format_check(name: str | None):
    """The format's own bundle check from the capability table (None: it has none)."""
    from edgebase.capabilities import TARGETS

    target = TARGETS.get(name or "")
    return target.bundle.get("check") if target else None


def _spec_diff(got: dict[str, Any], want: dict[str, Any]) -> str | None:
    out = []
    if list(got["shape"]) != list(want.get("shape", [])):
        out.append(f"shape {got['shape']} vs {want.get('shape')}")
    if got["dtype"] != want.get("dtype"):
        out.append(f"dtype {got['dtype']} vs {want.get('dtype')}")
    if want.get("layout") and got["layout"] and got["layout"] != want["layout"]:
        out.append(f"layout {got['layout']} vs {want['layout']}")
    if (got["scale"] is None) != (want.get("scale") is None) or (
            got["scale"] is not None and abs(got["scale"] - want["scale"]) > 1e-9 * abs(want["scale"])):
        out.append(f"scale {got['scale']} vs {want.get('scale')}")
    if got["zero_point"] != want.get("zero_point"):
        out.append(f"zero point {got['zero_point']} vs {want.get('zero_point')}")
    return "; ".join(out) or None


def _check_accuracy(root: Path, model: dict[str, Any], data, tolerance, limit, threads):
    from device_runners.evaluate import evaluate

    rec = model.get("accuracy")
    if not rec:
        return None, "no recorded accuracy to compare with"
    n = limit or rec.get("images")
    result = evaluate(root / model["path"], data, limit=n, split=rec.get("split", "test"),
                      seed=rec.get("seed", 0), runtime=model.get("runtime"), threads=threads,
                      isolate=False)
    delta = result.top1 - rec["top1"]
    if abs(delta) > tolerance:
        return result.top1, (f"top-1 {result.top1:.2f}% on {result.images} images vs recorded "
                             f"{rec['top1']:.2f}% (|delta| {abs(delta):.2f} > {tolerance})")
    return result.top1, None


def format_report(r: VerifyReport) -> str:
    lines = [f"bundle {r.name} {r.version}: {r.checked_files} files checked, "
             f"{len(r.models)} models"]
    for m in r.models:
        status = "ok" if m["path"] not in {p.path for p in r.problems} and m["checksums"] else "FAILED"
        extra = f", top-1 {m['top1']:.2f}%" if m.get("top1") is not None else ""
        lines.append(f"  {status:6s} {m['path']}{' (loaded)' if m.get('loaded') else ''}{extra}")
    for p in r.problems:
        lines.append(f"  FAILED {p}")
    lines.append("verified: all files match" if r.ok else
                 f"NOT verified: {len(r.bad_files())} file(s) fail: {', '.join(r.bad_files())}")
    return "\n".join(lines)
