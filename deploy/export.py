"""The export stage: a PyTorch model (zoo entry + optional checkpoint) -> a validated Artifact.

``load_source`` builds the parent model; ``export(source, config)`` converts it with the
target's converter into a hidden temporary folder beside the output, validates the file in its
runtime against the parent on real images, and only then moves the model file(s) into place
and writes the manifest last (the manifest is what marks a result finished).

A failed validation never ships silently: the files are kept, for inspection, under a name that
says so (``<model>.failed.tflite`` with its ``.json`` manifest whose validation status is
"failed"), any earlier good result of the same name is left untouched, and ValidationError is
raised (exit 3). A conversion error leaves nothing behind. A finished file made from a
different parent is never replaced without ``force`` (``deploy.overwrite``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from edgebase.errors import ConfigError, DeployError, ValidationError
from edgebase.files import raise_if_disk_full
from device_runners.embedded import background_first
from edgebase.manifest import Artifact
from deploy.overwrite import check_overwrite, parent_identity
from deploy.placement import file_stem, place
from deploy.validate import MIN_IMAGES, RANDOM_INIT_NOTE, parent_reference, validate_against_parent


@dataclass(frozen=True)
class ExportConfig:
    target: str
    precision: str = "fp32"
    batch: int = 1
    output_dir: Path = Path("out")
    validate_data: Path | None = None
    validate_images: int = MIN_IMAGES
    threads: int | None = None  # runtime threads during validation (None: its default)
    options: Mapping[str, Any] = field(default_factory=dict)  # target options (capabilities)
    force: bool = False  # replace a finished file of the same name made from another parent

    def __post_init__(self):
        t = self.target_entry  # raises UnknownNameError with the valid names
        t.check_precision(self.precision)
        t.check_options(self.options)
        # a value equal to the default is no option: one spelling, one file (deploy.reuse)
        object.__setattr__(self, "options", t.given_options(self.options))
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if self.validate_images < MIN_IMAGES:
            raise ConfigError(f"validation needs at least {MIN_IMAGES} images, "
                              f"got {self.validate_images}")
        object.__setattr__(self, "output_dir", Path(self.output_dir))

    @property
    def target_entry(self):
        from edgebase.capabilities import get_target

        return get_target(self.target)


@dataclass(frozen=True)
class ModelSource:
    """The PyTorch parent of an export and what the manifest says about it."""

    entry: Any  # zoo.registry.ModelEntry, with overrides applied
    model: Any  # nn.Module in eval mode
    weights: dict[str, Any]  # {"trained": bool, "source": ..., "sha256": ..., ...}
    alias_note: str | None = None  # "shufflenet_v2 -> shufflenet_v2_x0_5.cifar10: ..." for aliases
    label_names: tuple[str, ...] | None = None  # --labels FILE; None: the entry's label set

    @property
    def name(self) -> str:
        """The name shown and recorded: the entry's, with the width when --width changed it
        (``mobilenet_v1_x0_25`` for the architecture default at width 0.25)."""
        return file_stem(self)

    @property
    def labels(self) -> tuple[str, ...]:
        from zoo.labels import labels

        return self.label_names if self.label_names is not None else labels(self.entry.labels)

    def identity(self, precision: str) -> dict[str, Any]:
        """What the no-overwrite rule compares with an existing file's manifest."""
        model = {"name": self.name, "num_classes": self.entry.num_classes,
                 "input_size": self.entry.input_size, "weights": self.weights}
        return parent_identity(model, precision, self.entry.preprocess, self.labels)

    def describe(self) -> dict[str, Any]:
        from zoo.facts import model_facts

        facts = model_facts(self.model, self.entry.input_size)
        return {
            "name": self.name, "arch": self.entry.arch,
            "kwargs": dict(self.entry.kwargs), "num_classes": self.entry.num_classes,
            "input_size": self.entry.input_size, "params": facts.params, "macs": facts.macs,
            "mac_cost": facts.mac_cost, "adaptation": self.entry.adaptation,
            "weights": self.weights,
        }


def load_source(name: str, *, weights: str | os.PathLike | None = None,
                num_classes: int | None = None, width: float | None = None,
                input_size: int | None = None) -> ModelSource:
    """Build zoo model ``name`` with overrides; load ``weights`` (a checkpoint) if given."""
    from zoo.registry import resolve_entry
    from zoo.weights import build_kwargs_for, entry_overrides_for, load_weights

    resolved = resolve_entry(name, weights_given=weights is not None, num_classes=num_classes,
                             width=width, input_size=input_size)
    entry, note = resolved.entry, resolved.note
    if weights is None:
        model = entry.build()
        if entry.weights is not None:
            info = {"trained": True, "source": "packaged", "file": entry.weights.file,
                    "sha256": entry.weights.sha256, "dataset": entry.weights.dataset,
                    "top1": entry.weights.top1}
        else:
            info = {"trained": False, "source": "random init", "note": RANDOM_INIT_NOTE}
        return ModelSource(entry, model.eval(), info, note)
    extra = build_kwargs_for(entry.arch, weights)
    entry = dataclasses.replace(entry, weights=None, kwargs={**entry.kwargs, **extra},
                                **entry_overrides_for(entry.arch, weights))
    model = entry.builder(**entry.kwargs)
    loaded = load_weights(model, weights, entry.arch)
    info = {"trained": True, "source": "checkpoint", **loaded.to_dict()}
    info["path"] = Path(loaded.path).name  # the name, not the user's folder layout
    return ModelSource(entry, model.eval(), info, note)


def export(source: ModelSource, config: ExportConfig, int8=None) -> Artifact:
    """Convert, validate and write; returns the Artifact written beside the model file.

    Precision int8 runs the int8 stage on the fp32 file this stage makes, with ``int8``
    (``deploy.int8_stage.Int8Config``; None: its defaults). The output folder is locked for
    the whole stage (``edgebase.files.folder_lock``): a second export into it is refused at
    once instead of interleaving its files with this one's."""
    from edgebase.files import folder_lock

    with folder_lock(config.output_dir, "export"):
        return _export(source, config, int8)


def _export(source: ModelSource, config: ExportConfig, int8=None) -> Artifact:
    import torch

    if config.precision == "int8":
        from deploy.int8_stage import Int8Config, export_int8

        # the int8 stage is handed its parent stage: it makes the fp32 file with it
        return export_int8(source, config, int8 or Int8Config(), fp32_stage=export)
    if int8 is not None:
        raise ConfigError(f"int8 options need precision int8, not {config.precision}")
    target = config.target_entry
    out_dir = config.output_dir
    final = out_dir / target.file_name(file_stem(source), config.precision)
    check_overwrite(final, source.identity(config.precision), config.force)
    # real images first: a missing data folder fails before a slow conversion
    t0 = time.perf_counter()
    ref = parent_reference(source, config.validate_images, config.validate_data)
    seconds = {"conversion": 0.0, "validation": time.perf_counter() - t0}
    example = torch.from_numpy(ref.x[:1]).repeat(config.batch, 1, 1, 1)
    model_info = source.describe()
    options = dict(config.options)
    if target.embeds_metadata:
        options["metadata"] = _embedded(source, model_info, target, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_dir))
    try:
        progress(f"converting {source.name} to {target.name} {config.precision}")
        t0 = time.perf_counter()
        try:
            conversion = target.convert_fn()(source.model, example, work / final.name,
                                             precision=config.precision, **options)
        except DeployError as err:
            raise_if_disk_full(work, final, err)
            raise
        seconds["conversion"] = time.perf_counter() - t0
        progress(f"converted in {seconds['conversion']:.1f} s; validating on {len(ref.x)} images")
        t0 = time.perf_counter()
        layout = conversion.details.get("input_layout", target.input_layout)  # options may change it
        checked = validate_against_parent(conversion.file, target, config.precision, ref,
                                          layout, config.threads)
        seconds["validation"] += time.perf_counter() - t0
        artifact = _artifact(source, model_info, config, conversion, checked, seconds)
        if not checked.passed:
            failed, _ = place(conversion, final, artifact, failed=True)
            raise ValidationError(
                f"{final.name} disagrees with its PyTorch parent: "
                f"{'; '.join(checked.record.get('failures', []))} (kept as {failed.name})")
        return place(conversion, final, artifact, failed=False)[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def progress(message: str) -> None:
    """A line on stderr before and after each step that can take seconds (stdout: the result)."""
    import sys

    print(message, file=sys.stderr, flush=True)


def _artifact(source, model_info, config, conversion, checked, seconds) -> Artifact:
    from deploy.toolchain import versions

    target = config.target_entry
    layout = conversion.details.get("input_layout", target.input_layout)
    inputs = tuple(dataclasses.replace(t, layout=layout) for t in checked.inputs)
    outputs = checked.outputs
    preprocess = dataclasses.replace(source.entry.preprocess, layout=layout)
    option_record = {k: v for k, v in config.options.items() if k != "metadata"}
    passes = ({"name": "export", "target": target.name, "precision": config.precision,
               "batch": config.batch, "options": option_record, **conversion.details},)
    # conversion_seconds: the converter alone; seconds: every step of this export, apart
    extra = {"conversion_seconds": round(seconds["conversion"], 3),
             "seconds": {k: round(v, 3) for k, v in seconds.items()}, "input_layout": layout,
             **conversion.graph}
    return Artifact(
        file=conversion.file.name, format=target.name, precision=config.precision,
        sha256="", size_bytes=0, model=model_info, inputs=inputs, outputs=outputs,
        preprocess=preprocess, labels=source.labels, passes=passes,
        toolchain=versions(target.tools), validation=checked.record, extra=extra,
    )


def _embedded(source, model_info, target, config) -> dict[str, str]:
    """What the converter stores inside the file (formats that carry metadata)."""
    pre = dataclasses.asdict(dataclasses.replace(source.entry.preprocess,
                                                 layout=target.input_layout))
    return {
        "edgedeploy.model": json.dumps({k: model_info[k] for k in
                                        ("name", "arch", "num_classes", "input_size")}
                                       | {"weights_sha256": model_info["weights"].get("sha256"),
                                          "trained": model_info["weights"]["trained"]}),
        "edgedeploy.preprocess": json.dumps(pre),
        # the zoo's label set name, or the names of --labels FILE one a line (names of the
        # big sets would cost a size-critical container ~10 KB)
        "edgedeploy.labels": (source.entry.labels if source.label_names is None
                              else "\n".join(source.label_names)) or "",
        # so that a runner without the manifest needs no --label-offset for TF-style
        # 1001-class models (class 0 "background")
        **({"edgedeploy.label_offset": "1"} if background_first(source.labels) else {}),
        "edgedeploy.precision": config.precision,
    }

