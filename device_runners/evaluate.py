"""``runner eval``: top-1 / top-5 of a classifier file over a labelled image set.

Preprocessing comes from the manifest beside the model (a flag that contradicts it is an
error, not an override). For files without one, each setting comes from the flags
(``--resize``, ``--size``, ``--mean``/``--std`` or ``--scale``, ``--layout``,
``--label-offset``), else from what the file carries inside (TFLite metadata, ONNX
metadata_props: ``device_runners.embedded``), else from the input shape or a default, and the
result says which. Labels the manifest or the file records settle the label offset (a first
label "background" means 1).
Integer inputs are fed through the input tensor's own quantization
(``device_runners.quantization``); with no normalisation given, an integer input gets the raw
0..255 pixels, which its quantization then maps (Google's uint8 models: (p - 128)/128).
Quantized outputs are dequantized before ranking.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgebase.errors import ConfigError
from edgebase.manifest import TensorSpec, read_manifest
from device_runners.backends import backend_class, resolve
from device_runners.backends.base import guess_layout, shape_str
from device_runners.caveats import caveats, weights_trained
from device_runners.embedded import fmt_values as _fmt
from device_runners.quantization import clamp_to_dtype, dequantize, quantize
from edgebase.images import ImageSet, resize_crop


@dataclass(frozen=True)
class Pipeline:
    """Everything between a decoded RGB image and the model's input tensor."""

    resize: int
    crop: int
    mean: tuple[float, ...] | None  # None: raw pixels (integer inputs only)
    std: tuple[float, ...] | None
    layout: str
    interpolation: str = "bilinear"
    crop_offset: str = "round"  # torchvision's placement; "floor" is TensorFlow's
    color: str = "RGB"
    label_offset: int = 0
    source: str = "flags"  # where the preprocessing came from: manifest, metadata or flags
    # setting -> where it came from: "flags", "manifest", the file's metadata ("TFLite
    # metadata", ...), "input shape" or "default (...)"
    sources: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        norm = (f"(x/255 - {_fmt(self.mean)}) / {_fmt(self.std)}" if self.mean is not None
                else "raw 0..255 pixels")
        return (f"{self.source}: resize {self.resize} ({self.interpolation}), crop {self.crop} "
                f"(offset {self.crop_offset}), "
                f"{norm}, {self.color}, {self.layout}, label offset {self.label_offset}")

    def describe_sources(self) -> str:
        """Settings grouped by where they came from, e.g. "TFLite metadata: normalization,
        label offset; input shape: crop, layout; default: resize (...)"."""
        groups: dict[str, list[str]] = {}
        for setting, where in self.sources.items():
            base, _, why = where.partition(" (")
            groups.setdefault(base, []).append(setting + (f" ({why}" if why else ""))
        last = ("input shape", "default")  # the file's and the user's words first
        order = sorted(groups, key=lambda g: (g in last, last.index(g) if g in last else 0))
        return "; ".join(f"{where}: {', '.join(groups[where])}" for where in order)


@dataclass
class EvalResult:
    model: str
    data: str
    runtime: str
    runtime_version: str
    provider: str
    threads: int | None
    images: int
    top1: float  # percent
    top5: float
    correct1: int
    correct5: int
    # images whose label is tied with other classes across the top-k boundary (common
    # with uint8 outputs), and the accuracy expected if such ties were broken at random
    ties: dict[str, Any]
    preprocess: dict[str, Any]
    seconds: float
    images_per_s: float
    precision_hint: str = "f32"  # asked of the runtime
    inference_precision: str = "f32"  # what its float kernels ran in
    # from the manifest (device_runners.caveats): None when unknown; warnings go to stderr too
    weights_trained: bool | None = None
    warnings: list[str] = field(default_factory=list)
    outputs: str | None = None  # the .npz of per-image scores, when asked for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _triple(v: Sequence[float] | float | None, what: str) -> tuple[float, ...] | None:
    if v is None:
        return None
    v = (v,) if isinstance(v, (int, float)) else tuple(float(x) for x in v)
    if len(v) == 1:
        v = v * 3
    if len(v) != 3:
        raise ConfigError(f"{what} takes 1 or 3 values, got {len(v)}")
    return v


# With no resize given, a file that describes itself as an image classifier (metadata with a
# normalization or labels) is evaluated the usual ImageNet way: the crop is 87.5 % of the
# short side (256 -> 224), as in TF-slim's and torchvision's evaluation.
CROP_FRACTION = 0.875


def flag_normalization(mean=None, std=None, scale=None):
    """(mean, std, where) from --mean/--std or --scale in 0..1 units; None, None, None when not
    given. Values above 1 are TFLite's pixel units (input = (pixel - mean) / std): they are
    taken as such and ``where`` says so; a mix of both units is refused."""
    mean, std = _triple(mean, "--mean"), _triple(std, "--std")
    if scale is not None:
        if mean is not None or std is not None:
            raise ConfigError("give --scale or --mean/--std, not both")
        if scale <= 0:
            raise ConfigError(f"--scale must be positive, got {scale}")
        # x*scale - 1 style (x/127.5 - 1): std = 1/(255*scale), mean centres 0..255 on zero
        std = (1.0 / (255.0 * scale),) * 3
        mean = (0.5,) * 3 if abs(scale - 1 / 127.5) < 1e-9 else (0.0,) * 3
        return mean, std, "flags"
    if (mean is None) != (std is None):
        raise ConfigError("--mean and --std go together")
    if mean is None:
        return None, None, None
    if any(not s > 0 for s in std):
        raise ConfigError(f"--std must be positive (it divides), got {_fmt(std)}")
    if any(m < 0 for m in mean):
        raise ConfigError(f"--mean must be 0 or more, got {_fmt(mean)}")
    if max(mean + std) <= 1:
        return mean, std, "flags"
    if any(0 < m <= 1 for m in mean) or (max(mean) == 0 and min(std) <= 1):
        raise ConfigError(f"--mean {_fmt(mean)} and --std {_fmt(std)} mix units: give both "
                          f"in 0..1 units (e.g. --mean 0.5 --std 0.5) or both in pixel units "
                          f"(--mean 127.5 --std 127.5)")
    unit = (tuple(m / 255 for m in mean), tuple(x / 255 for x in std))
    return unit[0], unit[1], (f"flags (pixel units, as a value is above 1: {_fmt(mean)} / "
                              f"{_fmt(std)} = {_fmt(unit[0])} / {_fmt(unit[1])} of x/255)")


def make_pipeline(spec: TensorSpec, manifest_pre, *, embedded=None, size=None, resize=None,
                  mean=None, std=None, scale=None, layout=None, label_offset=None,
                  interpolation=None, crop_offset=None) -> Pipeline:
    """Preprocessing from the manifest (a contradicting flag raises), else per setting from
    the flags, the file's own metadata (``embedded``), the input shape or a default; the
    Pipeline records where each setting came from. The label offset is settled later
    (``settle_label_offset``) when the classes are known."""
    mean, std, norm_from = flag_normalization(mean, std, scale)
    shape_layout = guess_layout(spec.shape)
    offset_from = "flags" if crop_offset else "default"
    if manifest_pre is not None:
        p = manifest_pre
        given = {"--size": (size, p.crop), "--resize": (resize, p.resize),
                 "--mean": (mean, tuple(p.mean)), "--std": (std, tuple(p.std)),
                 "--layout": (layout, p.layout), "--interpolation": (interpolation, p.interpolation)}
        for flag, (value, have) in given.items():
            if value is not None and not _same(value, have):
                raise ConfigError(f"{flag} {value} contradicts the manifest ({have}); "
                                  f"drop the flag, or re-export the model with `deploy export "
                                  f"--preset/--mean/--std/--resize`")
        if shape_layout and p.layout != shape_layout:
            raise ConfigError(f"the manifest says {p.layout} but the input is "
                              f"{shape_str(spec.shape)}")
        sources = {k: "manifest" for k in ("resize", "crop", "normalization", "layout",
                                           "interpolation", "colour")}
        return Pipeline(resize=p.resize, crop=p.crop, mean=tuple(p.mean), std=tuple(p.std),
                        layout=p.layout, interpolation=p.interpolation, color=p.color,
                        label_offset=label_offset or 0, crop_offset=crop_offset or "round",
                        source="manifest", sources={**sources, "crop offset": offset_from})
    emb = embedded if embedded is not None and not embedded.empty else None
    meta = emb.where if emb else None
    sources: dict[str, str] = {}

    def pick(setting: str, flag_value, meta_value, fallback=None, fallback_from=None):
        for value, where in ((flag_value, "flags"), (meta_value, meta),
                             (fallback, fallback_from)):
            if value is not None:
                sources[setting] = where
                return value
        return None

    layout = pick("layout", layout, None, shape_layout or (emb and emb.layout), "input shape"
                  if shape_layout else meta)
    if layout not in ("NCHW", "NHWC"):
        raise ConfigError(f"cannot tell the layout of input {shape_str(spec.shape)}; "
                          f"pass --layout NCHW or --layout NHWC")
    if shape_layout and layout != shape_layout:
        raise ConfigError(f"--layout {layout} but the input is {shape_str(spec.shape)}")
    hw = spec.shape[2:4] if layout == "NCHW" else spec.shape[1:3]
    fixed = hw[0] if len(hw) == 2 and hw[0] == hw[1] and hw[0] > 0 else None
    if size is not None and hw[0] > 0 and hw[0] != size:
        raise ConfigError(f"--size {size} but the input is {shape_str(spec.shape)}")
    size = pick("crop", size, None if fixed else emb and emb.crop, fixed, "input shape")
    if size is None:
        raise ConfigError(f"input {shape_str(spec.shape)} has no fixed square size; "
                          f"pass --size")
    if resize is None and emb and emb.resize is None and (emb.mean or emb.labels):
        resize = round(size / CROP_FRACTION)
        sources["resize"] = (f"default (crop {size} = {100 * CROP_FRACTION:g} % of the short "
                             f"side, the usual ImageNet evaluation; --resize {size} for none)")
    else:
        resize = pick("resize", resize, emb and emb.resize)
    if resize is None:
        raise ConfigError(f"no manifest beside the model and no preprocessing inside it: pass "
                          f"--resize (the short side before the centre crop of {size}; e.g. 256 "
                          f"for 224 ImageNet crops, or {size} for no crop)")
    if resize < size:
        raise ConfigError(f"--resize {resize} is smaller than the crop {size}")
    if mean is not None:
        sources["normalization"] = norm_from
    elif np.dtype(spec.dtype).kind != "f":
        # as Android's Task Library does: an integer input's own quantization maps raw
        # pixels; metadata normalization describes the float model it came from
        sources["normalization"] = "default (raw pixels into an integer input)"
    elif emb and emb.mean is not None:
        mean, std = emb.mean, emb.std
        sources["normalization"] = meta
    else:
        raise ConfigError("a float input needs normalisation: pass --mean and --std (0..1 "
                          "units, e.g. 0.5 0.5 for x/127.5-1) or --scale")
    interpolation = pick("interpolation", interpolation, emb and emb.interpolation,
                         "bilinear", "default")
    color = pick("colour", None, emb and emb.color, "RGB", "default")
    sources["crop offset"] = offset_from
    return Pipeline(resize=resize, crop=size, mean=mean, std=std, layout=layout,
                    interpolation=interpolation, label_offset=label_offset or 0,
                    crop_offset=crop_offset or "round", color=color,
                    source="metadata" if meta in sources.values() else "flags", sources=sources)


def settle_label_offset(pipe: Pipeline, flag: int | None, labels, where: str | None,
                        classes: int, data_classes: int, said: int | None = None) -> Pipeline:
    """The label offset from the flag, else as the file says it outright (``said``), else from
    labels the file or manifest records (first label "background": 1), else 0; a 1001-output
    model with nothing to say so is refused."""
    from device_runners.embedded import background_first

    if flag is not None:
        offset, source = flag, "flags"
    elif said is not None:
        offset, source = said, where
    elif labels and len(labels) == classes:
        offset = 1 if background_first(labels) else 0
        source = f"{where} (its labels start with {labels[0]!r})" if offset else where
    else:
        offset, source = 0, "default"
        if classes and classes == data_classes + 1:
            raise ConfigError(f"the model has {classes} outputs for {data_classes} classes: "
                              f"pass --label-offset 1 (class 0 is background) or 0")
    if classes and data_classes + offset > classes:
        raise ConfigError(f"{data_classes} classes (+ label offset {offset}) do not fit "
                          f"the model's {classes} outputs")
    return dataclasses.replace(pipe, label_offset=offset,
                               sources={**pipe.sources, "label offset": source})


def _same(a, b) -> bool:
    if isinstance(b, tuple):
        return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))
    return a == b


def to_input(rgb: np.ndarray, pipe: Pipeline, spec: TensorSpec) -> np.ndarray:
    """One decoded RGB image -> one input sample of the tensor's dtype (no batch axis)."""
    if pipe.color == "BGR":
        rgb = rgb[..., ::-1]
    img = resize_crop(rgb, pipe.resize, pipe.crop, pipe.interpolation, pipe.crop_offset)
    dtype = np.dtype(spec.dtype)
    if pipe.mean is None:  # raw pixels into an integer input
        x = img.astype(np.float32)
        if dtype.kind == "i":  # int8 tensors hold pixels shifted by -128 when fed raw
            x = x - 128.0
    else:
        x = img.astype(np.float32) / 255.0
        x = (x - np.asarray(pipe.mean, np.float32)) / np.asarray(pipe.std, np.float32)
    if pipe.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    if pipe.mean is None and dtype.kind in "iu":  # raw pixels are the integers already
        return clamp_to_dtype(x, dtype)
    return quantize(x, spec)


def scores(out: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """[N, classes] float scores, dequantized when the output is quantized."""
    return dequantize(out.reshape(out.shape[0], -1), spec)


def rank(s: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores per row, best first. Ties are broken the way the common
    ``np.argsort(-scores)`` does; ``tie_share`` reports how much that choice matters."""
    return np.argsort(-s, axis=1)[:, :min(k, s.shape[1])]


def tie_share(s: np.ndarray, y: np.ndarray, k: int) -> tuple[int, float]:
    """(rows whose label straddles the top-k boundary in a tie, expected hits under
    random tie-breaking summed over rows)."""
    label = s[np.arange(len(y)), y][:, None]
    higher = (s > label).sum(1)
    tied = (s == label).sum(1)  # includes the label itself
    ambiguous = int(((higher < k) & (higher + tied > k)).sum())
    expected = np.clip((k - higher) / tied, 0.0, 1.0).sum()
    return ambiguous, float(expected)


def _tie_summary(t: dict[str, float], n: int) -> dict[str, Any]:
    return {"top1_tied": t["top1_tied"], "top5_tied": t["top5_tied"],
            "top1_expected": 100.0 * t["top1_expected"] / n,
            "top5_expected": 100.0 * t["top5_expected"] / n}


class _Progress:
    """tqdm when installed, else a line on stderr redrawn at most twice a second."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.total, self.n, self.enabled, self.desc = total, 0, enabled, desc
        self._bar, self._last = None, 0.0
        if enabled:
            try:
                from tqdm import tqdm
                self._bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr,
                                 leave=False)
            except ImportError:
                pass

    def update(self, k: int, postfix: str = "") -> None:
        self.n += k
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(k)
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            return
        now = time.monotonic()
        if now - self._last > 0.5 or self.n == self.total:
            self._last = now
            print(f"\r{self.desc} {self.n}/{self.total} {postfix}", end="", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _evaluate_file(model: str | os.PathLike, data: str | os.PathLike, *, limit: int | None = None,
             split: str = "test", runtime: str | None = None, threads: int | None = None,
             batch: int = 1, size: int | None = None, resize: int | None = None,
             mean=None, std=None, scale: float | None = None, layout: str | None = None,
             label_offset: int | None = None, interpolation: str | None = None,
             crop_offset: str | None = None, seed: int = 0, progress: bool = False,
             isolate: bool = True, precision_hint: str | None = None,
             outputs: str | os.PathLike | None = None) -> EvalResult:
    """Top-1/top-5 (percent) of ``model`` over ``data`` (``limit`` images, class-balanced).
    ``outputs``: a .npz to write the scores to (``scores`` images x classes, float32 as the
    accuracy saw them; ``labels``; ``names``), e.g. to compare two machines image by image."""
    if outputs is not None and not str(outputs).endswith(".npz"):
        raise ConfigError(f"--outputs {outputs}: the scores are written as .npz; name a "
                          "file ending in .npz")
    if crop_offset not in (None, "round", "floor"):
        raise ConfigError(f"crop offset {crop_offset!r}; valid: floor, round")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    if batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    path, runtime = resolve(model, runtime)
    cls = backend_class(runtime)
    cls.check_hint(precision_hint)
    artifact = read_manifest(path)
    if isolate:
        from device_runners.isolation import check_in_child
        check_in_child(path, runtime, threads)
    backend = cls(path, threads=threads, precision_hint=precision_hint)
    if len(backend.inputs) != 1:
        raise ConfigError(f"{path.name} has {len(backend.inputs)} inputs; eval needs one image input")
    spec, out_spec = backend.input, backend.outputs[0]
    embedded = backend.embedded() if artifact is None else None
    pipe = make_pipeline(spec, artifact.preprocess if artifact else None, embedded=embedded,
                         size=size, resize=resize, mean=mean, std=std, scale=scale,
                         layout=layout, label_offset=label_offset,
                         interpolation=interpolation, crop_offset=crop_offset)
    images = ImageSet(data, split=split)  # after the cheap checks: listing a big zip takes time
    classes = int(np.prod([d for d in out_spec.shape[1:] if d > 0])) if len(out_spec.shape) > 1 else 0
    if artifact is not None:
        labels, where = artifact.labels, "manifest"
    else:
        labels, where = (embedded.labels, embedded.where) if embedded else (None, None)
    pipe = settle_label_offset(pipe, label_offset, labels, where, classes, images.num_classes,
                               said=embedded.label_offset if embedded else None)
    indices = images.subset(limit, seed=seed)
    bar = _Progress(len(indices), progress, "eval")
    c1 = c5 = 0
    kept: list[np.ndarray] = []  # scores, when written to ``outputs``
    ties = {"top1_tied": 0, "top5_tied": 0, "top1_expected": 0.0, "top5_expected": 0.0}
    t0 = time.perf_counter()
    try:
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            x = np.stack([to_input(images.load(i), pipe, spec) for i in chunk])
            y = np.array([images.samples[i].label for i in chunk]) + pipe.label_offset
            s = scores(backend.run(x)[0], out_spec)
            if outputs is not None:
                kept.append(s.reshape(len(chunk), -1).copy())
            top = rank(s, 5)
            c1 += int((top[:, 0] == y).sum())
            c5 += int((top == y[:, None]).any(1).sum())
            for k in (1, 5):
                amb, exp = tie_share(s, y, k)
                ties[f"top{k}_tied"] += amb
                ties[f"top{k}_expected"] += exp
            done = start + len(chunk)
            bar.update(len(chunk), f"top-1 {100 * c1 / done:.1f}%")
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    n = len(indices)
    if outputs is not None:
        _write_scores(outputs, np.concatenate(kept),
                      np.array([images.samples[i].label for i in indices]) + pipe.label_offset,
                      [images.samples[i].key for i in indices])
    pre = asdict(pipe)
    pre["sources"] = dict(pipe.sources)
    pre["description"] = pipe.describe()
    pre["from"] = pipe.describe_sources()
    warnings = caveats(artifact, path.name)
    if embedded is not None and embedded.problem:
        warnings.append(f"{embedded.where} of {path.name} ignored: {embedded.problem}")
    return EvalResult(model=str(path), data=str(data), runtime=runtime,
                      runtime_version=backend.version, provider=backend.provider,
                      threads=threads, images=n, top1=100.0 * c1 / n, top5=100.0 * c5 / n,
                      correct1=c1, correct5=c5, ties=_tie_summary(ties, n),
                      preprocess=pre, seconds=seconds,
                      images_per_s=n / seconds if seconds else 0.0,
                      precision_hint=backend.precision_hint,
                      inference_precision=backend.inference_precision,
                      weights_trained=weights_trained(artifact), warnings=warnings,
                      outputs=str(outputs) if outputs is not None else None)


def _write_scores(path, scores_: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    from edgebase.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, scores=scores_.astype(np.float32), labels=labels.astype(np.int64),
                 names=np.array(names))


def evaluate(model: str | os.PathLike, data: str | os.PathLike, **options) -> EvalResult:
    """Top-1/top-5 of ``model`` over ``data`` (options as ``_evaluate_file``); a Deep
    Compression container is decoded first and evaluated as the file it carries."""
    from device_runners.container import materialized

    with materialized(model) as (path, container):
        result = _evaluate_file(path, data, **options)
    if container:
        result.model = str(model)
    return result


def format_table(r: EvalResult) -> str:
    return "\n".join([
        f"model        {r.model}",
        f"runtime      {r.runtime} {r.runtime_version} | {r.provider}",
        f"precision    float work in {r.inference_precision} (hint {r.precision_hint})",
        f"data         {r.data} ({r.images} images)",
        f"preprocess   {r.preprocess['description']}",
        *([f"from         {r.preprocess['from']}"] if r.preprocess.get("from") else []),
        f"top-1        {r.top1:.2f}%  ({r.correct1}/{r.images})",
        f"top-5        {r.top5:.2f}%  ({r.correct5}/{r.images})",
        *([f"ties         label tied across the boundary: top-1 {r.ties['top1_tied']}, "
           f"top-5 {r.ties['top5_tied']} images; expected under random tie-breaking: "
           f"top-1 {r.ties['top1_expected']:.2f}%, top-5 {r.ties['top5_expected']:.2f}%"]
          if r.ties["top1_tied"] or r.ties["top5_tied"] else []),
        f"time         {r.seconds:.1f} s ({r.images_per_s:.1f} images/s)",
    ])
