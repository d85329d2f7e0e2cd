"""Check an exported model file against its PyTorch parent on real images.

One check, ``validate_against_parent``, used after every export, int8 pass and compression:
run the file in its own runtime (the runner's backends through
``device_runners.file_logits``, so validation and ``runner`` read files the same way), run the
parent in PyTorch on the same preprocessed pixels (``parent_reference``), and compare logits:
shapes, max |difference|, per-image cosine similarity, top-1 agreement. Limits come from the
target's capability entry (``edgebase.capabilities.Tolerance``). The result is a plain dict
for the manifest.

Images: ``validation_batch`` reads a class-balanced, seeded subset of a real image set through
``edgebase.images`` with the model's own preprocessing. Without ``--data`` the
set is chosen by input size: CIFAR-10's test split for 32x32 nets, the ImageNet sample
otherwise, both from the shared data folder (``EDGEDEPLOY_DATA`` or ``<repo>/../shared/data``).
A missing folder is a DataError: validation never falls back to random inputs.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import ConfigError, DataError

MIN_IMAGES = 64
SMALL_INPUT = 32  # nets at or below this input size validate on CIFAR-10
DATASETS = {"cifar10": ("cifar10.zip", "test"), "imagenet": ("imagenet-sample-1k.zip", "test")}
# Tiny parents. Absolute |dlogit| limits are sized for trained logits (magnitude ~1..20); a
# random-init MobileNet's logits are 1e-10..1e-18 (zero-mean weights shrink every layer), so
# against an absolute limit any output at all, zeros included, "passes" and every class is a
# near-tie. A relative tolerance, not a blanket failure: the limit shrinks with the parent's
# logit scale (RELATIVE_MAX_ABS x max|logit|, never above the target's own), which keeps the
# check's power at every scale -- fp32 conversions agree to ~1e-6 relative, so a tiny but real
# parent still passes honestly and latency work on random-init nets still runs. A parent with
# no scale left to test against (max|logit| below DEGENERATE_SCALE, all zeros included) is an
# explicit "degenerate parent" failure.
RELATIVE_MAX_ABS = 1e-3
DEGENERATE_SCALE = 1e-30
RANDOM_INIT_NOTE = ("random-init weights: logits are compared numerically (meaningful for "
                    "fp32); top-1 agreement says nothing about accuracy")


def data_dir() -> Path:
    """The shared data folder: $EDGEDEPLOY_DATA, else ``<repo>/../shared/data``."""
    env = os.environ.get("EDGEDEPLOY_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        how = "$EDGEDEPLOY_DATA" if env else "the default (set EDGEDEPLOY_DATA to override)"
        raise DataError(f"validation data folder {path} does not exist ({how}); pass "
                        f"--data PATH to use another image folder or zip")
    return path


def default_data(input_size: int) -> tuple[Path, str]:
    """(image set, split) for a net of this input size."""
    name = "cifar10" if input_size <= SMALL_INPUT else "imagenet"
    file, split = DATASETS[name]
    path = data_dir() / file
    if not path.exists():
        raise DataError(f"validation images {path} are missing; pass --data PATH")
    return path, split


def validation_batch(preprocess, n: int = MIN_IMAGES, data: str | os.PathLike | None = None,
                     seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """``n`` real images preprocessed to NCHW float32, and where they came from."""
    from edgebase.images import ImageSet, preprocess as prep

    if n < MIN_IMAGES:
        raise ConfigError(f"validation needs at least {MIN_IMAGES} images, got {n}")
    path, split = (Path(data), "test") if data is not None else default_data(preprocess.crop)
    images = ImageSet(path, split)
    if len(images) < n:
        raise DataError(f"{path} has {len(images)} images; validation needs {n}")
    idx = images.subset(n, seed=seed)
    spec = dataclasses.replace(preprocess, layout="NCHW")
    x = np.stack([prep(images.load(i), spec) for i in idx]).astype(np.float32)
    return x, {"data": path.name, "split": split if images.layout == "imagefolder" else None,
               "images": len(idx), "seed": seed}


def torch_logits(model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """The parent's outputs in float32 (eval mode, no grad), in chunks to bound memory."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[s:s + batch])).float().numpy())
    return np.concatenate(out)


@dataclass(frozen=True)
class ParentReference:
    """The parent's logits on the validation images, computed once per stage."""

    x: np.ndarray  # NCHW float32, preprocessed
    logits: np.ndarray
    data: dict[str, Any]  # where the images came from (validation_batch)
    trained: bool  # False: random-init weights (top-1 agreement says nothing)


def parent_reference(source, n: int = MIN_IMAGES, data: str | os.PathLike | None = None
                     ) -> ParentReference:
    """``n`` real images for ``source``'s preprocessing and its PyTorch logits on them."""
    x, info = validation_batch(source.entry.preprocess, n, data)
    return ParentReference(x, torch_logits(source.model, x), info,
                           bool(source.weights.get("trained")))


@dataclass(frozen=True)
class Validated:
    """The validation record for the manifest and the file's tensors as its runtime reports
    them."""

    record: dict[str, Any]
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]

    @property
    def passed(self) -> bool:
        return self.record["status"] == "passed"


def validate_against_parent(path: str | os.PathLike, target, precision: str,
                            ref: ParentReference, layout: str | None = None,
                            threads: int | None = None) -> Validated:
    """The file at ``path`` (``target``'s format, declared ``precision``) against the parent's
    logits, fed in ``layout`` (default: the target's), float work in f32; and, where the
    runtime's own default precision on this CPU is another, that mode recorded beside it."""
    from device_runners.file_logits import FileLogits

    layout = layout or target.input_layout
    tolerance = target.tolerance(precision)
    if not ref.trained and precision == "int8":
        # top-1 of a random-init net flips with int8's sub-pixel noise: cosine decides
        tolerance = dataclasses.replace(tolerance, min_top1=0.0)
    with FileLogits(path, target.runtime, layout, threads) as f:
        record = {**compare(ref.logits, f(ref.x), tolerance), **ref.data,
                  "runtime": f"{f.backend.name} {f.backend.version}",
                  **precision_record(f.backend)}
        inputs, outputs = tuple(f.backend.inputs), tuple(f.backend.outputs)

    def run_with(hint):
        other = FileLogits(path, target.runtime, layout, threads, hint)
        return other(ref.x), other.backend

    default_mode = runtime_default_mode(target.runtime, ref.logits, tolerance, run_with)
    if default_mode:
        record["runtime_default"] = default_mode
    if not ref.trained:
        record["note"] = RANDOM_INIT_NOTE
    return Validated(record, inputs, outputs)


def precision_record(backend) -> dict[str, str]:
    """What the runtime was asked to compute float work in, and what it actually used."""
    return {"precision_hint": backend.precision_hint,
            "inference_precision": backend.inference_precision}


def runtime_default_mode(runtime: str, reference: np.ndarray, tolerance,
                         run: Callable[[str], tuple[np.ndarray, Any]]) -> dict[str, Any] | None:
    """The same comparison in the runtime's own default float precision, where on this CPU it
    is not f32 (OpenVINO: bf16 on AMX/AVX512_BF16 Xeons, f16 on some ARM cores); else None.

    An app that keeps the runtime's default gets these numbers. Recorded beside the f32
    validation and never deciding it: the file is checked in the precision it declares.
    ``run(hint)`` returns (logits, backend) for the file run with that hint."""
    from device_runners.backends import backend_class

    if backend_class(runtime).default_precision() == "f32":
        return None
    out, backend = run("auto")
    backend.close()
    r = compare(reference, out, tolerance)
    keep = ("max_abs_diff", "max_rel_diff", "cosine_min", "cosine_mean", "top1_agreement",
            "failures")
    return {**precision_record(backend), "within_tolerance": r["status"] == "passed",
            **{k: r[k] for k in keep if k in r}}


def compare(reference: np.ndarray, candidate: np.ndarray, tolerance) -> dict[str, Any]:
    """Metrics of ``candidate`` against ``reference`` and whether they meet ``tolerance``."""
    result: dict[str, Any] = {"reference_shape": list(reference.shape),
                              "output_shape": list(candidate.shape),
                              "tolerance": tolerance.to_dict()}
    failures = []
    if reference.shape != candidate.shape:
        failures.append(f"output shape {list(candidate.shape)} differs from the parent's "
                        f"{list(reference.shape)}")
        result.update(status="failed", failures=failures)
        return result
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    ref2 = reference.reshape(len(reference), -1).astype(np.float64)
    can2 = candidate.reshape(len(candidate), -1).astype(np.float64)
    nr, nc = np.linalg.norm(ref2, axis=1), np.linalg.norm(can2, axis=1)
    norms = nr * nc
    # two zero vectors agree; one zero vector agrees with nothing (cosine 0, not 1)
    cosine = np.where(norms > 0, np.sum(ref2 * can2, axis=1) / np.maximum(norms, 1e-300),
                      np.where((nr == 0) & (nc == 0), 1.0, 0.0))
    agree = ref2.argmax(1) == can2.argmax(1)
    top1 = float(np.mean(agree))
    # A flip between two classes whose parent logits differ by less than twice the allowed
    # |dlogit| is within tolerance (random-init nets have such near-ties); any other flip fails.
    top2 = np.sort(ref2, axis=1)[:, -2:] if ref2.shape[1] > 1 else np.zeros((len(ref2), 2))
    margin = top2[:, 1] - top2[:, 0]
    scale = float(np.abs(ref2).max()) if ref2.size else 0.0
    max_abs = tolerance.max_abs
    if max_abs is not None:  # relative to the parent's logits when they are small
        max_abs = min(max_abs, RELATIVE_MAX_ABS * scale)
        result["effective_max_abs"] = max_abs
    tied = (margin <= 2 * max_abs) if max_abs is not None else np.zeros(len(ref2), bool)
    decisive = float(np.mean(agree | tied))
    result.update(
        max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
        # relative to the largest logit: tiny random-init logits make absolute numbers small
        max_rel_diff=float(diff.max() / max(float(np.abs(reference).max()), 1e-30)),
        logit_range=[float(reference.min()), float(reference.max())],
        cosine_min=float(cosine.min()), cosine_mean=float(cosine.mean()),
        top1_agreement=top1, near_ties=int(np.sum(tied & ~agree)),
    )
    if scale < DEGENERATE_SCALE:
        result["degenerate_parent"] = True
        failures.append(f"degenerate parent: its logits are at most {scale:.2g} in magnitude, "
                        f"so any output would pass a comparison with them (is the checkpoint's "
                        f"classifier zeroed?)")
    elif max_abs is not None and max_abs < tolerance.max_abs:
        result["note_scale"] = (f"parent logits at most {scale:.2g}: |dlogit| limit scaled to "
                                f"{max_abs:.2g} ({RELATIVE_MAX_ABS:g} x max|logit|)")
    if not np.all(np.isfinite(candidate)):
        failures.append("the exported model produced NaN or infinite outputs")
    if max_abs is not None and result["max_abs_diff"] > max_abs:
        failures.append(f"max |dlogit| {result['max_abs_diff']:.3g} > {max_abs:.3g}"
                        + ("" if max_abs == tolerance.max_abs else
                           f" ({RELATIVE_MAX_ABS:g} x the parent's max|logit| {scale:.2g})"))
    if decisive < tolerance.min_top1:
        failures.append(f"top-1 agreement {top1:.1%} < {tolerance.min_top1:.0%}")
    if tolerance.min_cosine is not None and result["cosine_min"] < tolerance.min_cosine:
        failures.append(f"worst cosine {result['cosine_min']:.6f} < {tolerance.min_cosine:g}")
    result["status"] = "failed" if failures else "passed"
    if failures:
        result["failures"] = failures
    return result


def summary_line(v: dict[str, Any]) -> str:
    """One line for the screen: status and the metrics that decided it."""
    if "max_abs_diff" not in v:
        return f"{v['status']}: {'; '.join(v.get('failures', []))}"
    line = (f"{v['status']} on {v.get('images', '?')} images of {v.get('data', '?')}: "
            f"max|dlogit| {v['max_abs_diff']:.2e}, worst cosine {v['cosine_min']:.6f}, "
            f"top-1 agreement {v['top1_agreement']:.1%}"
            + (f", run in {v['inference_precision']}" if "inference_precision" in v else ""))
    if v.get("note_scale"):
        line += f" ({v['note_scale']})"
    if v.get("failures"):
        line += " -- " + "; ".join(v["failures"])
    return line


def runtime_default_line(v: dict[str, Any]) -> str | None:
    """A second line where the runtime's default precision on this CPU is not f32."""
    d = v.get("runtime_default")
    if not d:
        return None
    return (f"runtime default on this CPU computes in {d['inference_precision']}: "
            f"max|dlogit| {d['max_abs_diff']:.2e}, worst cosine {d['cosine_min']:.6f}, "
            f"top-1 agreement {d['top1_agreement']:.1%} "
            f"({'within' if d['within_tolerance'] else 'OUTSIDE'} the fp32 tolerance; "
            f"runners use f32 unless --precision-hint auto)")
