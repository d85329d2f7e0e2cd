"""``deploy release``: one versioned, self-describing, verifiable bundle for mobile apps.

    artifacts (built by the export pipeline, or reused by ``deploy.reuse``'s rule when the
    build folder already holds the same file)
      -> copied into the bundle under stable names; a format that carries metadata gets the
         bundle's labels and normalization packed in by its own hook (the capability table's
         ``BundleHooks.pack``: TFLite Support metadata for .tflite), and its runtime must give
         identical outputs before and after
      -> measured there with ``runner eval`` / ``runner bench`` (machine and command recorded;
         the latency also in the file's own manifest, ``benchmarks``)
      -> labels.txt, README.md (model card), manifest.json (every file's size and sha256)
      -> a deterministic zip of the folder (sorted entries, fixed times, relative paths).

Model files are reproducible from the same inputs; manifest.json and README.md also hold the
creation time and measured latency, which differ between builds.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from edgebase.capabilities import DEFAULT_RELEASE_TARGETS, get_target, runtime_for_suffix
from edgebase.bundle import MANIFEST, SCHEMA, Bundle, file_entry, list_files, write_zip
from edgebase.errors import ConfigError, DataError, DeployError, ValidationError
from edgebase.files import write_bytes_atomic, write_text_atomic
from edgebase.manifest import Artifact, read_manifest, write_manifest

NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class ReleaseConfig:
    model: str
    targets: tuple[str, ...] = DEFAULT_RELEASE_TARGETS
    int8: bool = False
    int8_io: str = "float"  # input/output type of int8 files of targets that offer it
    fp16: bool = False
    version: str = "1.0.0"
    calib: Path | None = None
    eval_data: Path | None = None
    eval_limit: int = 1000
    eval_split: str = "test"
    output: Path = Path("release")
    threads: int | None = None
    bench_runs: int = 100
    bench_warmup: int = 10
    # the parent model, as for `deploy export`
    weights: Path | None = None
    num_classes: int | None = None
    width: float | None = None
    input_size: int | None = None
    labels_file: Path | None = None  # for models whose classes have no label set in the zoo
    force: bool = False  # replace an existing bundle of this name and version from another parent
    containers: tuple[Path, ...] = ()  # Deep Compression containers (`deploy compress`) to carry

    def __post_init__(self):
        if not self.targets:
            raise ConfigError("--target needs at least one target")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"--target lists a target twice: {','.join(self.targets)}")
        if not NAME_OK.match(self.version):
            raise ConfigError(f"--version {self.version!r}: use letters, digits and . _ + - only")
        if self.int8 and self.calib is None:
            raise ConfigError("--int8 needs --calib PATH (calibration images)")
        from edgebase.capabilities import TARGETS, all_int8_io

        if self.int8_io not in all_int8_io():
            raise ConfigError(f"--int8-io {self.int8_io!r}: valid: {', '.join(all_int8_io())}")
        offering = [n for n, t in TARGETS.items() if self.int8_io in t.int8_io]
        if self.int8_io != "float" and not (self.int8 and set(offering) & set(self.targets)):
            raise ConfigError(f"--int8-io {self.int8_io} applies to int8 files of "
                              f"{', '.join(offering)}: it needs --int8 and one of those targets")
        if self.eval_limit < 1 or self.bench_runs < 1 or self.bench_warmup < 0:
            raise ConfigError("--limit and --bench-runs must be at least 1, --bench-warmup 0 or more")
        for what, p in (("--calib", self.calib), ("--data", self.eval_data),
                        ("--weights", self.weights), ("--labels", self.labels_file),
                        *(("--container", c) for c in self.containers)):
            if p is not None and not Path(p).exists():
                raise DataError(f"{what} {p}: no such file or folder")

    @property
    def precisions(self) -> tuple[str, ...]:
        """fp32 always (the reference every other precision is compared with)."""
        return ("fp32",) + (("fp16",) if self.fp16 else ()) + (("int8",) if self.int8 else ())


@dataclass(frozen=True)
class Built:
    """One artifact ready for the bundle: its file in the build folder, and whether reused."""

    path: Path
    artifact: Artifact
    reused: bool


# ---- building ---------------------------------------------------------------------------
def plan(cfg: ReleaseConfig) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """(target, precision) pairs to build, and the requested ones a target does not offer
    (fp16/int8 are "where offered"; fp32 everywhere). Unknown targets raise."""
    from edgebase.capabilities import get_target

    pairs, skipped = [], []
    for name in cfg.targets:
        target = get_target(name)  # UnknownNameError lists the valid targets
        for precision in cfg.precisions:
            if precision == "fp32" or precision in target.precisions:
                pairs.append((name, precision))
            else:
                reason = target.refused.get(precision) or (
                    f"the export stage has no {precision} pass for {name} (it offers "
                    f"{', '.join(target.precisions)})")
                skipped.append({"target": name, "precision": precision, "reason": reason})
    if cfg.int8 and not any(p == "int8" for _, p in pairs):
        raise ConfigError("--int8: none of the targets offers int8 in this installation ("
                          + "; ".join(f"{s['target']}: {s['reason']}" for s in skipped
                                      if s["precision"] == "int8") + ")")
    return pairs, skipped


def build_artifacts(cfg: ReleaseConfig, build_dir: Path, log=print) -> list[Built]:
    """Every (target, precision) of the release through the export stage, reusing matches."""
    from deploy.export import ExportConfig, export, load_source
    from deploy.int8_stage import Int8Config
    from deploy.reuse import find_reusable

    pairs, skipped = plan(cfg)
    for s in skipped:
        log(f"note: no {s['precision']} {s['target']} file: {s['reason']}")

    source = load_source(cfg.model, weights=cfg.weights, num_classes=cfg.num_classes,
                         width=cfg.width, input_size=cfg.input_size)
    choose_labels(source.name, source.entry.num_classes, source.labels, cfg.labels_file)
    if not source.weights.get("trained"):
        log(f"note: {source.name} has random-init weights; its accuracy figures mean nothing")
    # before any export: a bundle of this name and version from another parent stays
    from deploy.overwrite import bundle_identity, check_bundle_overwrite

    check_bundle_overwrite(cfg.output / bundle_name(source.name, cfg.version), bundle_identity(
        source.name, source.entry.num_classes, source.weights.get("sha256"),
        dataclasses.asdict(source.entry.preprocess)), cfg.force)
    carried = [container_artifact(Path(c), source) for c in cfg.containers]  # before exporting
    done: dict[tuple[str, str], Built] = {}
    # int8 first: the int8 stage exports its own fp32 parent, which the fp32 step then reuses
    for target, precision in sorted(pairs, key=lambda tp: tp[1] != "int8"):
        int8 = None
        if precision == "int8":  # --int8-io where the target offers it, else its default
            offered = get_target(target).int8_io
            int8 = Int8Config(calib=cfg.calib,
                              io=cfg.int8_io if cfg.int8_io in offered else offered[0])
        # force: the build folder is this command's cache (find_reusable keeps what matches);
        # the bundle's own files are named by model, version and precision
        config = ExportConfig(target=target, precision=precision, output_dir=build_dir,
                              threads=cfg.threads, force=True)
        found = find_reusable(source, config)
        if found is not None:
            log(f"reusing {found.file} (same parent, passes and toolchain)")
            done[target, precision] = Built(build_dir / found.file, found, True)
            continue
        log(f"exporting {source.name} -> {target} {precision}")
        art = export(source, config, int8)
        done[target, precision] = Built(build_dir / art.file, art, False)
    built = [done[pair] for pair in pairs]  # the bundle lists files in plan order
    for b in built:
        if b.artifact is None or not b.artifact.passed:
            status = (b.artifact.validation or {}).get("status", "not run") if b.artifact else "no manifest"
            raise ValidationError(f"{b.path.name}: validation against the PyTorch parent did not "
                                  f"pass ({status}); refusing to release it")
    return built + carried


# ---- the bundle -------------------------------------------------------------------------
def bundle_name(name: str, version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).strip("._") or "model"
    return f"{safe}-{version}"


def release(cfg: ReleaseConfig, log=print) -> Bundle:
    """Build (or reuse), assemble, measure; returns the Bundle written.

    A release that fails or is interrupted leaves no build file it made: what it exported is
    removed again, so nothing in the build folder looks like a result of a release that did
    not happen (files reused from earlier releases stay)."""
    from edgebase.files import folder_lock

    build = cfg.output / "build"
    with folder_lock(cfg.output, "release"):
        before = set(build.iterdir()) if build.is_dir() else set()
        try:
            built = build_artifacts(cfg, build, log=log)
            return assemble(built, cfg, log=log)
        except BaseException:
            for path in (set(build.iterdir()) if build.is_dir() else set()) - before:
                if path.is_file():
                    path.unlink()
            raise


def _parent_weights(art: Artifact) -> dict[str, Any]:
    """The weights an artifact descends from; a container's record of how it compressed
    them is not part of the parent."""
    return {k: v for k, v in (art.model.get("weights") or {}).items() if k != "deep_compression"}


def container_artifact(path: Path, source) -> Built:
    """A ``deploy compress`` container as a bundle file: its manifest must be there, its
    validation passed, and its parent the release's (same weights file, classes)."""
    from edgebase.files import sha256_file

    if path.suffix != ".edc":
        raise ConfigError(f"--container {path}: not a Deep Compression container (.edc, made "
                          f"by deploy compress)")
    art = read_manifest(path)
    if art is None:
        raise ConfigError(f"--container {path}: no manifest {path.name}.json beside it (copy "
                          f"the container with its manifest)")
    if sha256_file(path) != art.sha256:
        raise ValidationError(f"--container {path}: its bytes differ from its manifest's sha256")
    if not art.passed:
        raise ValidationError(f"--container {path}: its validation against the PyTorch parent "
                              f"did not pass; refusing to release it")
    parent = {k: v for k, v in source.weights.items() if k != "deep_compression"}
    if (json.dumps(_parent_weights(art), sort_keys=True, default=str)
            != json.dumps(parent, sort_keys=True, default=str)
            or list(art.labels or ()) != list(source.labels)):
        raise ConfigError(f"--container {path}: compressed from another parent than this "
                          f"release's {source.name} (weights or classes differ)")
    return Built(path, art, False)


def assemble(built: Sequence[Built], cfg: ReleaseConfig, log=print) -> Bundle:
    """The release stage proper: the built Artifacts in, the Bundle of their released copies
    out (folder and zip written atomically)."""
    first = built[0].artifact
    name = first.model.get("name") or cfg.model
    labels = release_labels(first, cfg.labels_file)
    for b in built[1:]:
        if (_parent_weights(b.artifact) != _parent_weights(first)
                or b.artifact.labels != first.labels):
            raise ConfigError(f"{b.path.name} comes from a different model than {built[0].path.name}")
    folder = bundle_name(name, cfg.version)
    final, zip_path = cfg.output / folder, cfg.output / f"{folder}.zip"
    from deploy.overwrite import bundle_identity, check_bundle_overwrite

    pre = dataclasses.asdict(first.preprocess) if first.preprocess else {}
    check_bundle_overwrite(final, bundle_identity(
        name, len(labels), (first.model.get("weights") or {}).get("sha256"), pre), cfg.force)
    cfg.output.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=cfg.output))
    stage.chmod(0o755)  # mkdtemp makes it private; the bundle is for sharing
    try:
        write_text_atomic(stage / "labels.txt", "\n".join(labels) + "\n")
        added = [_add_model(b, stage, folder, labels, cfg, log) for b in built]
        models = [entry for entry, _ in added]
        manifest = _bundle_manifest(first, name, cfg, models, labels)
        from deploy.model_card import render

        manifest["files"] = [file_entry(stage, rel) for rel in list_files(stage)]
        write_text_atomic(stage / "README.md", render(manifest))
        manifest["files"] = [file_entry(stage, rel) for rel in list_files(stage)]
        text = json.dumps(manifest, indent=2) + "\n"
        write_text_atomic(stage / MANIFEST, text)
        for p in stage.rglob("*"):  # atomic writes leave 0600 files; a bundle is for sharing
            p.chmod(0o644 if p.is_file() else 0o755)
        # the zip first (atomically), from the staged folder: a full disk or an interruption
        # here leaves the earlier bundle, if any, as it was
        write_zip(stage, zip_path, folder)
        zip_path.chmod(0o644)
        if final.exists():
            shutil.rmtree(final)
        os.replace(stage, final)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    log(f"wrote {final}/ and {zip_path}")
    return Bundle(final, zip_path, json.loads(text), tuple(art for _, art in added))


def release_labels(art: Artifact, labels_file: Path | None) -> list[str]:
    """The model's labels, or --labels for a model whose classes the zoo cannot name."""
    return choose_labels(art.model.get("name"), int(art.outputs[0].shape[-1]), art.labels,
                         labels_file)


def choose_labels(name, classes: int, own, labels_file: Path | None) -> list[str]:
    """``own`` labels, or those of ``labels_file``; checked before any export is made (and
    again on the built files), so a wrong --labels never fails a release late."""
    if labels_file is None:
        if not own:
            raise ConfigError(f"{name}: no label set is known for its {classes} classes; pass "
                              f"--labels FILE (one name a line)")
        return list(own)
    try:
        text = Path(labels_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--labels {labels_file}: unreadable ({e})") from None
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if len(labels) != classes:
        raise ConfigError(f"--labels {labels_file}: {len(labels)} names for {classes} classes")
    if own and list(own) != labels:
        raise ConfigError(f"--labels {labels_file} contradicts the model's own labels; drop --labels")
    return labels


def _add_model(b: Built, stage: Path, folder: str, labels, cfg: ReleaseConfig,
               log) -> tuple[dict[str, Any], Artifact]:
    """The file's entry in manifest.json, and its Artifact as written beside it."""
    art, src = b.artifact, b.path
    # the export stage's name (<model>[.<precision>]<suffix>): one scheme for export, release
    # and benchmark. Bundles of 0.1.0 named files <model>-<precision><suffix>; runner verify
    # reads names from manifest.json, so it checks both.
    dst = stage / src.name
    if dst.exists():
        raise ConfigError(f"two artifacts would both be {dst.name} in the bundle")
    companions = []
    for c in art.companions:
        cdst = c["file"]
        shutil.copyfile(src.parent / c["file"], stage / cdst)
        companions.append({**c, "file": cdst})
    passes = list(art.passes)
    container = art.extra.get("container") if dst.suffix == ".edc" else None
    # a container is measured as the file it decodes to, in that file's runtime
    runtime = (get_target(container["target"]).runtime if container
               else runtime_for_suffix(dst.suffix).name)
    pack = None if container else get_target(art.format).bundle.get("pack")
    format_fields: dict[str, Any] = {}
    if pack is not None:
        data, record, format_fields = pack(src.read_bytes(), art, labels, cfg.version)
        write_bytes_atomic(dst, data)
        _check_same_outputs(src, dst, runtime)
        passes.append(record)
    else:
        shutil.copyfile(src, dst)
    from edgebase.manifest import file_facts

    facts = file_facts(dst)
    new = art.replace(file=dst.name, sha256=facts["sha256"], size_bytes=facts["size_bytes"],
                      companions=tuple(companions), passes=tuple(passes), benchmarks=())
    write_manifest(new, dst)  # runner eval reads the preprocessing from it
    entry = {
        "path": dst.name, "manifest": dst.name + ".json", "format": art.format,
        "precision": art.precision, "runtime": runtime, "size_bytes": facts["size_bytes"],
        "sha256": facts["sha256"], **format_fields,
        "input": _spec(art.input), "preprocess": dataclasses.asdict(art.preprocess),
        "outputs": [_spec(t) for t in art.outputs], "labels": "labels.txt",
        "companions": [{"path": c["file"], **file_entry(stage, c["file"])} for c in companions],
        "passes": passes, "validation": art.validation, "toolchain": dict(art.toolchain),
        "source_sha256": art.sha256, "reused": b.reused,
    }
    for c in entry["companions"]:
        c.pop("file", None)
    if container:
        from device_runners.container import describe

        entry["decodes_to"] = describe(dst)["files"]  # name, size and sha256 of each file
    entry["accuracy"], entry["latency"] = _measure(dst, runtime, cfg, log)
    bench = {"tool": "deploy release", "precision_hint": "f32", "device": None,
             **{k: v for k, v in entry["latency"].items() if k != "command"}}
    write_manifest(new.with_benchmarks(bench), dst)
    return entry, read_manifest(dst)  # as written (JSON lists where the record had tuples)


def _spec(t) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "layout": t.layout,
            "scale": t.scale, "zero_point": t.zero_point}


def _check_same_outputs(before: Path, after: Path, runtime: str) -> None:
    """The runtime must compute exactly the same outputs from the file with metadata packed in
    as from the file without (one seeded input in the input's own dtype)."""
    import numpy as np

    from device_runners.loading import load

    outs = []
    for path in (before, after):
        with load(path, runtime, threads=1) as backend:
            spec = backend.inputs[0]
            rng = np.random.default_rng(0)
            x = (rng.integers(-128, 127, spec.shape).astype(spec.dtype)
                 if np.dtype(spec.dtype).kind in "iu"
                 else rng.standard_normal(spec.shape).astype(spec.dtype))
            outs.append(np.asarray(backend.run(x)[0]).copy())
    if not np.array_equal(outs[0], outs[1]):
        raise ValidationError(f"{after.name}: outputs changed after packing metadata into it")


def _measure(path: Path, runtime: str, cfg: ReleaseConfig, log):
    """(accuracy, latency) records from runner eval / runner bench on the bundle's own file."""
    from device_runners import sysinfo
    from device_runners.bench import bench

    machine = sysinfo.machine_record(sysinfo.cpu_info())
    threads = cfg.threads or machine["cores"]
    accuracy = None
    if cfg.eval_data is not None:
        from device_runners.evaluate import evaluate

        # isolate=False: the file was validated in this process already, and forking after
        # the converters started their threads (JAX) risks a deadlock in the child
        log(f"{path.name}: evaluating {cfg.eval_limit} images of {Path(cfg.eval_data).name}")
        # progress bar on stderr: 1,000 images take tens of seconds per file
        r = evaluate(path, cfg.eval_data, limit=cfg.eval_limit, split=cfg.eval_split, seed=0,
                     threads=threads, isolate=False, progress=True)
        accuracy = {"top1": r.top1, "top5": r.top5, "images": r.images,
                    "data": Path(cfg.eval_data).name, "split": cfg.eval_split, "seed": 0,
                    "runtime": r.runtime, "runtime_version": r.runtime_version,
                    "threads": threads, "machine": machine,
                    "command": f"runner eval {path.name} --data {cfg.eval_data} --split "
                               f"{cfg.eval_split} --limit {cfg.eval_limit} --seed 0 --threads {threads}"}
        log(f"{path.name}: top-1 {r.top1:.2f}% top-5 {r.top5:.2f}% on {r.images} images")
    b = bench(path, threads=threads, warmup=cfg.bench_warmup, runs=cfg.bench_runs, isolate=False)
    latency = {"mean_ms": b.mean_ms, "p50_ms": b.p50_ms, "p90_ms": b.p90_ms, "min_ms": b.min_ms,
               "std_ms": b.std_ms, "runs": b.runs, "warmup": b.warmup_runs, "batch": b.batch,
               "threads": b.threads, "runtime": b.runtime, "runtime_version": b.runtime_version,
               "machine": machine,
               "command": f"runner bench {path.name} --threads {threads} --warmup "
                          f"{cfg.bench_warmup} --runs {cfg.bench_runs}"}
    log(f"{path.name}: {b.mean_ms:.3f} ms mean, {b.p50_ms:.3f} ms p50 ({threads} threads)")
    return accuracy, latency


def _bundle_manifest(first: Artifact, name: str, cfg: ReleaseConfig, models, labels) -> dict[str, Any]:
    from edgebase import __version__

    m = first.model
    toolchain = {"edgedeploy": __version__, "python": platform.python_version()}
    for entry in models:
        toolchain.update(entry["toolchain"])
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    created = (datetime.fromtimestamp(int(epoch), timezone.utc) if epoch and epoch.isdigit()
               else datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pre = first.preprocess
    weights = dict(m.get("weights") or {})
    description = None
    try:  # the zoo entry's own words and training recipe, when the model is a zoo name
        from zoo import get_entry

        entry = get_entry(name)
        description = entry.doc or None
        if entry.weights is not None and weights.get("sha256") == entry.weights.sha256:
            weights.setdefault("recipe", dict(entry.weights.recipe))
    except DeployError:
        pass
    return {
        "schema": SCHEMA, "name": name, "version": cfg.version, "created": created,
        "source": {"model": name, "arch": m.get("arch"), "description": description,
                   "params": m.get("params"), "macs": m.get("macs"), "weights": weights,
                   "adaptation": m.get("adaptation"), "build": m.get("kwargs")},
        "num_classes": len(labels), "labels": "labels.txt",
        "preprocess": {"resize": pre.resize, "crop": pre.crop, "mean": list(pre.mean),
                       "std": list(pre.std), "interpolation": pre.interpolation,
                       "color": pre.color},
        "release": {"targets": list(cfg.targets), "precisions": list(cfg.precisions),
                    "not_offered": plan(cfg)[1],
                    "calib": Path(cfg.calib).name if cfg.calib else None,
                    "eval": Path(cfg.eval_data).name if cfg.eval_data else None},
        "measured_on": models[0]["latency"]["machine"] if models else None,
        "toolchain": toolchain, "models": models, "files": [],
    }
