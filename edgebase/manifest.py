"""The Artifact: a small record of one model file, written as ``<model file>.json`` beside it.

Every stage (export, quantize, weight sharing, validate, bench) reads an Artifact and returns a
new one; nothing edits a manifest in place. The runner reads only the model file and this
manifest, so this module imports nothing but the standard library.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgebase.errors import ModelFileError
from edgebase.files import sha256_file, write_text_atomic
from edgebase.kinds import NONE, NUMBER, check, check_items

SCHEMA = "edgedeploy.artifact/1"
# what makes two latency records of one file the same measurement (the newer one replaces it)
BENCHMARK_IDENTITY = ("tool", "runtime", "threads", "batch", "precision_hint", "machine",
                      "device")


@dataclass(frozen=True)
class Preprocess:
    """How a mobile app or the runner turns an RGB image into the model's input.

    pixels (0..255, RGB) -> resize short side to ``resize`` -> centre crop ``crop`` ->
    x/255 -> (x - mean) / std -> ``layout``. ``mean``/``std`` are per channel in 0..1 units
    (TF-style ``x/127.5 - 1`` is mean 0.5, std 0.5).
    """

    resize: int
    crop: int
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    color: str = "RGB"
    layout: str = "NCHW"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str | None = None
    # affine quantization of an integer tensor: real = scale * (q - zero_point)
    scale: float | None = None
    zero_point: int | None = None


@dataclass(frozen=True)
class Artifact:
    file: str  # the model file's name, relative to the manifest's folder
    format: str  # target name from the capability table: onnx | tflite | openvino
    precision: str  # fp32 | fp16 | int8
    sha256: str
    size_bytes: int
    model: dict[str, Any]  # name, arch, build kwargs, num_classes, params, macs, mac_cost, weights
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess | None = None
    labels: tuple[str, ...] = ()
    passes: tuple[dict[str, Any], ...] = ()  # ordered: {"name": "export", "target": ..., ...}
    toolchain: dict[str, str] = field(default_factory=dict)
    validation: dict[str, Any] | None = None  # {"status": "passed"|"failed", ...metrics}
    benchmarks: tuple[dict[str, Any], ...] = ()  # latency records (deploy benchmark, release)
    # other files the model needs, e.g. OpenVINO's .bin: {"file", "sha256", "size_bytes"}
    companions: tuple[dict[str, Any], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # per-target facts (op histogram, ...)
    schema: str = SCHEMA

    # ---- derived views -------------------------------------------------------------
    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def passed(self) -> bool:
        return bool(self.validation) and self.validation.get("status") == "passed"

    def replace(self, **changes) -> "Artifact":
        return dataclasses.replace(self, **changes)

    def with_benchmarks(self, *records: dict[str, Any]) -> "Artifact":
        """This Artifact with latency ``records`` added; an earlier record of the same
        measurement (``BENCHMARK_IDENTITY``) is replaced, not kept beside the new one."""
        def key(r: dict[str, Any]) -> str:
            return json.dumps([r.get(k) for k in BENCHMARK_IDENTITY], sort_keys=True)

        new = {key(r) for r in records}
        kept = tuple(r for r in self.benchmarks if key(r) not in new)
        return self.replace(benchmarks=kept + tuple(records))

    # ---- (de)serialisation --------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Artifact":
        if d.get("schema") != SCHEMA:
            raise ModelFileError(f"manifest schema {d.get('schema')!r} is not {SCHEMA!r}")
        d = dict(d)
        d["inputs"] = tuple(_tensor(t) for t in d.get("inputs", ()))
        d["outputs"] = tuple(_tensor(t) for t in d.get("outputs", ()))
        if d.get("preprocess"):
            p = dict(d["preprocess"])
            p["mean"], p["std"] = tuple(p["mean"]), tuple(p["std"])
            d["preprocess"] = Preprocess(**p)
        for key in ("labels", "passes", "benchmarks", "companions"):
            d[key] = tuple(d.get(key, ()))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ModelFileError(f"manifest has unknown fields: {', '.join(sorted(unknown))}")
        return cls(**d)


def _tensor(t: dict[str, Any]) -> TensorSpec:
    t = dict(t)
    t["shape"] = tuple(t["shape"])
    return TensorSpec(**t)


def manifest_path(model_file: str | os.PathLike) -> Path:
    return Path(str(model_file) + ".json")


def manifest_text(artifact: Artifact) -> str:
    """The manifest file's content."""
    return json.dumps(artifact.to_dict(), indent=2, sort_keys=False) + "\n"


def write_manifest(artifact: Artifact, model_file: str | os.PathLike) -> Path:
    path = manifest_path(model_file)
    write_text_atomic(path, manifest_text(artifact))
    return path


def read_manifest(model_file: str | os.PathLike) -> Artifact | None:
    """The manifest beside ``model_file``, or None when there is none."""
    path = manifest_path(model_file)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable manifest ({e})") from None
    _check_kinds(data, str(path))
    try:
        return Artifact.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as e:  # e.g. a missing field
        raise ModelFileError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None


# the kinds of the fields readers use (a manifest beside a model may come from anywhere)
_ARTIFACT = {"file": str, "format": str, "precision": str, "sha256": str, "size_bytes": int,
             "model": dict, "inputs": list, "outputs": list, "preprocess": (dict, NONE),
             "labels": list, "passes": list, "toolchain": dict, "validation": (dict, NONE),
             "benchmarks": list, "companions": list, "extra": dict}
_MODEL = {"name": str, "macs": (*NUMBER, NONE), "num_classes": (int, NONE),
          "weights": (dict, NONE)}
_TENSOR = {"name": str, "shape": list, "dtype": str, "layout": (str, NONE),
           "scale": (*NUMBER, NONE), "zero_point": (int, NONE)}
_PREPROCESS = {"resize": int, "crop": int, "mean": list, "std": list, "interpolation": str,
               "color": str, "layout": str}


def _check_kinds(data: Any, where: str) -> None:
    check(data, _ARTIFACT, "", where)
    check(data.get("model", {}), _MODEL, "model", where)
    for key in ("inputs", "outputs"):
        for i, t in enumerate(data.get(key, ())):
            check(t, _TENSOR, f"{key}[{i}]", where)
            check_items(t.get("shape", []), int, f"{key}[{i}] shape", where)
    if data.get("preprocess"):
        check(data["preprocess"], _PREPROCESS, "preprocess", where)
        for key in ("mean", "std"):
            check_items(data["preprocess"].get(key, []), NUMBER, f"preprocess {key}", where)
    check_items(data.get("labels", []), str, "labels", where)
    for key in ("passes", "benchmarks", "companions"):
        check_items(data.get(key, []), dict, key, where)


def file_facts(model_file: str | os.PathLike) -> dict[str, Any]:
    """sha256 and size of one file (OpenVINO: the .xml; its .bin goes in ``companions``)."""
    p = Path(model_file)
    return {"file": p.name, "sha256": sha256_file(p), "size_bytes": p.stat().st_size}


def files_match(artifact: Artifact, model_file: str | os.PathLike) -> bool:
    """Do ``model_file`` and its companions still hold the bytes ``artifact`` records?"""
    p = Path(model_file)
    files = [(p, artifact.sha256)] + [(p.parent / c["file"], c["sha256"])
                                      for c in artifact.companions]
    return all(f.is_file() and sha256_file(f) == want for f, want in files)
