"""``runner eval``: top-1 / top-5 of a classifier file over a labelled image set.

Preprocessing comes from the manifest beside the model; for files without one, from flags
(``--resize``, ``--size``, ``--mean``/``--std`` or ``--scale``, ``--layout``,
``--label-offset``); a flag that contradicts the manifest is an error, not an override.
Integer inputs are fed through the input tensor's own quantization (q = x/scale + zero_point);
with no normalisation given, an integer input gets the raw 0..255 pixels, which its
quantization then maps (Google's uint8 models: (p - 128)/128). Quantized outputs are
dequantized before ranking.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgebase.errors import ConfigError
from edgebase.manifest import TensorSpec, read_manifest
from device_runners.backends import backend_class, resolve
from device_runners.backends.base import guess_layout, shape_str
from device_runners.caveats import caveats, weights_trained
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
    source: str = "flags"  # "manifest" or "flags"

    def describe(self) -> str:
        norm = (f"(x/255 - {_fmt(self.mean)}) / {_fmt(self.std)}" if self.mean is not None
                else "raw 0..255 pixels")
        return (f"{self.source}: resize {self.resize} ({self.interpolation}), crop {self.crop} "
                f"(offset {self.crop_offset}), "
                f"{norm}, {self.color}, {self.layout}, label offset {self.label_offset}")


def _fmt(v) -> str:
    return "(" + ", ".join(f"{x:g}" for x in v) + ")" if len(set(v)) > 1 else f"{v[0]:g}"


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


def make_pipeline(spec: TensorSpec, manifest_pre, *, size=None, resize=None, mean=None,
                  std=None, scale=None, layout=None, label_offset=None,
                  interpolation=None, crop_offset=None) -> Pipeline:
    """Preprocessing from the manifest, else from the flags; contradictions raise."""
    mean, std = _triple(mean, "--mean"), _triple(std, "--std")
    if scale is not None:
        if mean is not None or std is not None:
            raise ConfigError("give --scale or --mean/--std, not both")
        if scale <= 0:
            raise ConfigError(f"--scale must be positive, got {scale}")
        # x*scale - 1 style (x/127.5 - 1): std = 1/(255*scale), mean centres 0..255 on zero
        std = (1.0 / (255.0 * scale),) * 3
        mean = (0.5,) * 3 if abs(scale - 1 / 127.5) < 1e-9 else (0.0,) * 3
    if (mean is None) != (std is None):
        raise ConfigError("--mean and --std go together")
    shape_layout = guess_layout(spec.shape)
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
        return Pipeline(resize=p.resize, crop=p.crop, mean=tuple(p.mean), std=tuple(p.std),
                        layout=p.layout, interpolation=p.interpolation, color=p.color,
                        label_offset=label_offset or 0, crop_offset=crop_offset or "round",
                        source="manifest")
    layout = layout or shape_layout
    if layout not in ("NCHW", "NHWC"):
        raise ConfigError(f"cannot tell the layout of input {shape_str(spec.shape)}; "
                          f"pass --layout NCHW or --layout NHWC")
    if shape_layout and layout != shape_layout:
        raise ConfigError(f"--layout {layout} but the input is {shape_str(spec.shape)}")
    hw = spec.shape[2:4] if layout == "NCHW" else spec.shape[1:3]
    if size is None:
        if len(hw) != 2 or hw[0] != hw[1] or hw[0] <= 0:
            raise ConfigError(f"input {shape_str(spec.shape)} has no fixed square size; "
                              f"pass --size")
        size = hw[0]
    elif hw[0] > 0 and hw[0] != size:
        raise ConfigError(f"--size {size} but the input is {shape_str(spec.shape)}")
    if resize is None:
        raise ConfigError(f"no manifest beside the model: pass --resize (the short side before "
                          f"the centre crop of {size}; e.g. 256 for 224 ImageNet crops, or "
                          f"{size} for no crop)")
    if resize < size:
        raise ConfigError(f"--resize {resize} is smaller than the crop {size}")
    if mean is None and np.dtype(spec.dtype).kind == "f":
        raise ConfigError("a float input needs normalisation: pass --mean and --std (0..1 "
                          "units, e.g. 0.5 0.5 for x/127.5-1) or --scale")
    return Pipeline(resize=resize, crop=size, mean=mean, std=std, layout=layout,
                    interpolation=interpolation or "bilinear", label_offset=label_offset or 0,
                    crop_offset=crop_offset or "round")


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
        if dtype.kind in "iu":
            if spec.scale is None:
                raise ConfigError(f"input {spec.name!r} is {spec.dtype} without quantization "
                                  f"parameters; cannot feed normalised values")
            x = x / spec.scale + (spec.zero_point or 0)
    if pipe.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = np.clip(np.rint(x), info.min, info.max)
    return np.ascontiguousarray(x, dtype=dtype)


def scores(out: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """[N, classes] float scores, dequantized when the output is quantized."""
    out = out.reshape(out.shape[0], -1)
    if spec.scale is not None and np.dtype(spec.dtype).kind in "iu":
        return (out.astype(np.float32) - (spec.zero_point or 0)) * spec.scale
    return out.astype(np.float32, copy=False)


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
    pipe = make_pipeline(spec, artifact.preprocess if artifact else None, size=size,
                         resize=resize, mean=mean, std=std, scale=scale, layout=layout,
                         label_offset=label_offset, interpolation=interpolation,
                         crop_offset=crop_offset)
    images = ImageSet(data, split=split)  # after the cheap checks: listing a big zip takes time
    classes = int(np.prod([d for d in out_spec.shape[1:] if d > 0])) if len(out_spec.shape) > 1 else 0
    if classes:
        if label_offset is None and classes == images.num_classes + 1:
            raise ConfigError(f"the model has {classes} outputs for {images.num_classes} "
                              f"classes: pass --label-offset 1 (class 0 is background) or 0")
        if images.num_classes + pipe.label_offset > classes:
            raise ConfigError(f"{images.num_classes} classes (+ label offset "
                              f"{pipe.label_offset}) do not fit the model's {classes} outputs")
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
    pre["description"] = pipe.describe()
    return EvalResult(model=str(path), data=str(data), runtime=runtime,
                      runtime_version=backend.version, provider=backend.provider,
                      threads=threads, images=n, top1=100.0 * c1 / n, top5=100.0 * c5 / n,
                      correct1=c1, correct5=c5, ties=_tie_summary(ties, n),
                      preprocess=pre, seconds=seconds,
                      images_per_s=n / seconds if seconds else 0.0,
                      precision_hint=backend.precision_hint,
                      inference_precision=backend.inference_precision,
                      weights_trained=weights_trained(artifact),
                      warnings=caveats(artifact, path.name),
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
        f"top-1        {r.top1:.2f}%  ({r.correct1}/{r.images})",
        f"top-5        {r.top5:.2f}%  ({r.correct5}/{r.images})",
        *([f"ties         label tied across the boundary: top-1 {r.ties['top1_tied']}, "
           f"top-5 {r.ties['top5_tied']} images; expected under random tie-breaking: "
           f"top-1 {r.ties['top1_expected']:.2f}%, top-5 {r.ties['top5_expected']:.2f}%"]
          if r.ties["top1_tied"] or r.ties["top5_tied"] else []),
        f"time         {r.seconds:.1f} s ({r.images_per_s:.1f} images/s)",
    ])
