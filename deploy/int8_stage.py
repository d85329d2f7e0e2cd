"""The int8 stage: fp32 Artifact + ``Int8Config`` -> validated int8 Artifact.

``export_int8(source, config, int8)`` is what ``deploy export --int8`` (and ``deploy
benchmark`` / ``deploy release`` with precision int8) run; ``config`` is the export stage's
(target, output folder, validation images, threads), ``int8`` this stage's own options:

1. calibration data (``calibration_data``): ``--calib PATH`` (seeded, class-balanced),
   ``zeroq`` (distilled from BatchNorm statistics) or ``synthetic`` (noise: latency only);
   without it, the training images that ship with a packaged model -- said on screen and
   recorded;
2. the fp32 export (validated as always), the parent of the int8 file;
3. the target's own PTQ pass (the capability table's ``Target.ptq``) on the fp32 file;
4. validation of the int8 file against the PyTorch parent on real images (the export stage's
   images and checks, with the capability table's int8 tolerance);
5. with ``--data PATH``: fp32 file vs int8 file top-1/top-5, agreement and logit cosine on
   labelled images (calibration images left out); with ``--max-drop D``: per-layer
   sensitivity and fall-back of the worst layers to float until the drop is within D;
6. the int8 file and its manifest, written the same way the export stage writes (a failed
   check keeps the file as ``.failed`` and exits non-zero).
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgebase.errors import ConfigError, DataError, DeployError, ValidationError
from quant import progress

PRECISION = "int8"


@dataclass(frozen=True)
class Int8Config:
    """The int8 pass's options (what ``deploy export --int8`` flags set)."""

    # calibration images, "zeroq" or "synthetic" (None: the model's default, see
    # calibration_data), their count (None: the default), the range estimation method
    calib: Path | str | None = None
    calib_size: int | None = None
    calib_method: str | None = None
    io: str = "float"  # input/output type (the capability table's Target.int8_io)
    # held-out labelled images for fp32 vs int8 accuracy, their count, the allowed top-1 drop
    eval_data: Path | None = None
    eval_limit: int | None = None
    max_drop: float | None = None
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.calib, Path) and not self.calib.exists():  # before anything slow
            from quant.calibration import KEYWORDS

            raise DataError(f"--calib {self.calib}: no such file or folder (images of the "
                            f"model's domain, or {', '.join(KEYWORDS)})")
        if self.calib_size is not None and self.calib_size < 1:
            raise ConfigError(f"--calib-size must be >= 1, got {self.calib_size}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {self.eval_limit}")
        if self.max_drop is not None and self.max_drop < 0:
            raise ConfigError(f"--max-drop must be >= 0 (points of top-1), got {self.max_drop}")
        if self.max_drop is not None and self.eval_data is None:
            raise ConfigError("--max-drop needs --data PATH (labelled images to measure the drop)")
        if self.eval_limit is not None and self.eval_data is None:
            raise ConfigError("--limit needs --data PATH (the labelled images it counts)")


def input_range(preprocess) -> tuple[float, float]:
    """Exact (min, max) of preprocessed pixels: (0 - mean)/std .. (1 - mean)/std over channels."""
    lo = min((0.0 - m) / s for m, s in zip(preprocess.mean, preprocess.std))
    hi = max((1.0 - m) / s for m, s in zip(preprocess.mean, preprocess.std))
    return float(lo), float(hi)


def calibration_data(source, config: Int8Config, log: Callable[[str], None] = progress):
    """The CalibrationSet for ``config``: ``--calib PATH``, ``zeroq`` or ``synthetic``; without
    it, the packaged training images of a packaged model, ZeroQ for a trained checkpoint, and
    an error for random-init weights (synthetic ranges only when asked for)."""
    from quant.calibration import (DEFAULT_SIZE, SYNTHETIC, ZEROQ, load_calibration,
                                   packaged_calibration, synthetic)

    pre, calib, w = source.entry.preprocess, config.calib, source.weights
    if calib == SYNTHETIC:
        result = synthetic(pre, size=config.calib_size, seed=config.seed)
        log(f"calibration: WARNING: {result.describe()}")
        return result
    if calib == ZEROQ:
        return _zeroq(source, config, log, "--calib zeroq")
    if calib is not None:
        result = load_calibration(calib, pre, size=config.calib_size or DEFAULT_SIZE,
                                  seed=config.seed)
        log(f"calibration: {result.describe()}")
        return result
    if w.get("source") == "packaged":
        result = packaged_calibration(w["dataset"], pre, size=config.calib_size, seed=config.seed)
        if result is not None:
            log(f"calibration: no --calib given: {result.describe()}")
            return result
    if not w.get("trained"):
        raise ConfigError(
            f"{source.name} has random-init weights: int8 ranges need calibration inputs; pass "
            f"--calib PATH (images of its domain) or --calib synthetic (noise; the file is then "
            f"marked latency only)")
    return _zeroq(source, config, log, "no --calib given")


def _zeroq(source, config, log, why: str):
    from quant import zeroq

    n = config.calib_size or zeroq.DEFAULT_IMAGES
    log(f"calibration: {why}, distilling {n} inputs from the model's BatchNorm statistics "
        f"(ZeroQ, {zeroq.ITERATIONS} iterations); real images usually calibrate better "
        f"(--calib PATH)")
    calib = zeroq.distill(source.model, source.entry.preprocess.crop, n=n, seed=config.seed,
                          progress=log, bar=True)
    log(f"calibration: {calib.describe()} in {calib.source['seconds']:.0f} s")
    return calib


def export_int8(source, config, int8: Int8Config, fp32_stage: Callable,
                log: Callable[[str], None] = progress):
    """Quantize ``source`` for ``config.target``; returns the written int8 Artifact.

    ``fp32_stage(source, config)`` writes the validated fp32 parent (the export stage)."""
    import quant
    from deploy.overwrite import check_overwrite
    from deploy.placement import file_stem, place
    from deploy.validate import parent_reference, validate_against_parent

    target = config.target_entry
    ptq = quant.get_pass(target.name)
    options = ptq.make_options(int8.calib_method, int8.io,
                               input_range=input_range(source.entry.preprocess))
    final = config.output_dir / target.file_name(file_stem(source), PRECISION)
    # both files this writes, before anything slow (the fp32 parent is replaced too)
    check_overwrite(final, source.identity(PRECISION), config.force)
    check_overwrite(config.output_dir / target.file_name(file_stem(source), "fp32"),
                    source.identity("fp32"), config.force)
    eval_set = _eval_images(int8)  # read before anything slow: bad paths fail fast
    t0 = time.perf_counter()
    calib = calibration_data(source, int8, log)
    seconds = {"calibration": time.perf_counter() - t0}
    fp32 = fp32_stage(source, dataclasses.replace(config, precision="fp32"))
    fp32_path = config.output_dir / fp32.file
    log(f"fp32 parent: {fp32_path} ({fp32.validation['status']})")
    seconds.update({f"fp32 {k}": v for k, v in fp32.extra.get("seconds", {}).items()})
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=config.output_dir))
    try:
        log(f"quantizing with {target.name}'s quantizer")
        t0 = time.perf_counter()
        file = work / final.name
        try:
            facts = ptq.quantize(fp32_path, file, calib, options, parent=source.model)
        except DeployError as err:
            from edgebase.files import raise_if_disk_full

            raise_if_disk_full(work, final, err)
            raise
        seconds["quantization"] = time.perf_counter() - t0
        log(f"quantized with {facts['quantizer']} in {seconds['quantization']:.1f} s; "
            f"validating against the PyTorch parent")
        t0 = time.perf_counter()
        ref = parent_reference(source, config.validate_images, config.validate_data)
        checked = validate_against_parent(file, target, PRECISION, ref, threads=config.threads)
        seconds["validation"] = time.perf_counter() - t0
        accuracy, sensitivity = None, None
        if eval_set is not None:
            log("measuring fp32 vs int8 accuracy")
            t0 = time.perf_counter()
            accuracy, evaluation = _evaluate(fp32_path, file, target, config, int8, eval_set,
                                             calib, source.entry.preprocess)
            log(f"accuracy on {accuracy['images']} held-out images: fp32 top-1 "
                f"{accuracy['ref_top1']:.2f} %, int8 {accuracy['top1']:.2f} % (drop "
                f"{accuracy['top1_drop']:.2f}), agreement {accuracy['agreement']:.1f} %")
            if int8.max_drop is not None and accuracy["top1_drop"] > int8.max_drop:
                from quant.sensitivity import fall_back

                sensitivity, facts, accuracy = fall_back(
                    ptq, fp32_path, file, calib, options, source, config, int8, evaluation, log)
                checked = validate_against_parent(file, target, PRECISION, ref,
                                                  threads=config.threads)
            seconds["accuracy"] = time.perf_counter() - t0
        artifact = _artifact(source, config, fp32, file, calib, facts, seconds, checked,
                             accuracy, sensitivity)
        from exporters.common import Conversion

        companions = tuple(file.with_suffix(s) for s in target.companions)
        conversion = Conversion(file=file, companions=companions)
        backend_ok = checked.passed
        drop_ok = sensitivity is None or sensitivity.get("reached", True)
        dest, artifact = place(conversion, final, artifact, failed=not (backend_ok and drop_ok))
        disagrees = "; ".join(checked.record.get("failures", []))
        if not drop_ok:  # what the user asked for comes first; the check's verdict after it
            raise ValidationError(
                f"{final.name}: top-1 drop {accuracy['top1_drop']:.2f} is above --max-drop "
                f"{int8.max_drop} even with {len(sensitivity['float_layers'])} layers in float"
                f"{'' if backend_ok else f', and it disagrees with its PyTorch parent ({disagrees})'}"
                f" (kept as {dest.name}; see its manifest's extra.sensitivity)")
        if not backend_ok:
            raise ValidationError(f"{final.name} disagrees with its PyTorch parent: {disagrees} "
                                  f"(kept as {dest.name})")
        return artifact
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _eval_images(int8: Int8Config):
    if int8.eval_data is None:
        return None
    from edgebase.images import ImageSet

    return ImageSet(int8.eval_data, split="test")


def _evaluate(fp32_path, int8_path, target, config, int8: Int8Config, images, calib,
              preprocess):
    from device_runners.file_logits import FileLogits
    from quant.accuracy import EvalSet
    from quant.calibration import eval_indices

    indices = eval_indices(images, calib, limit=int8.eval_limit, seed=int8.seed)
    evaluation = EvalSet(images, indices, preprocess)
    with FileLogits(fp32_path, target.runtime, target.input_layout, config.threads) as ref:
        evaluation.ref_logits = evaluation.logits(ref)
    with FileLogits(int8_path, target.runtime, target.input_layout, config.threads) as cand:
        comparison = evaluation.compare(evaluation.ref_logits, evaluation.logits(cand))
    return {**comparison.to_dict(), "data": str(int8.eval_data),
            "excluded_calibration_images": len(images) - len(indices)
            if int8.eval_limit is None else None}, evaluation


def _artifact(source, config, fp32, file: Path, calib, facts, seconds, checked, accuracy,
              sensitivity):
    from edgebase.manifest import file_facts
    from deploy.toolchain import versions

    target = config.target_entry
    layout = target.input_layout
    inputs = tuple(dataclasses.replace(t, layout=layout) for t in checked.inputs)
    size = sum(f["size_bytes"] for f in [file_facts(file)] + [
        file_facts(file.with_suffix(s)) for s in target.companions])
    fp32_size = fp32.size_bytes + sum(c["size_bytes"] for c in fp32.companions)
    graph = {k: facts[k] for k in ("op_histogram", "op_count", "dequantize_count", "float_ops",
                                    "fully_integer") if k in facts}
    if "op_histogram" not in graph and "ops" in facts:
        graph["op_histogram"] = facts["ops"]
    hist = graph.setdefault("op_histogram", {})
    graph.setdefault("op_count", sum(hist.values()))
    graph["transpose_count"] = hist.get("TRANSPOSE", hist.get("Transpose", 0))
    int8_pass = {"name": "int8_ptq", "target": target.name,
                 "calibration": calib.source,
                 **{k: v for k, v in facts.items() if k not in graph and k != "ops"}}
    # conversion_seconds is the fp32 parent's converter; quantization is timed apart
    extra = {"conversion_seconds": fp32.extra.get("conversion_seconds"),
             "seconds": {k: round(v, 3) for k, v in seconds.items()},
             "input_layout": layout, **graph,
             "fp32_parent": {"file": fp32.file, "sha256": fp32.sha256,
                             "size_bytes": fp32_size},
             "size_ratio_vs_fp32": round(fp32_size / size, 3),
             "accuracy": accuracy, "sensitivity": sensitivity}
    validation = checked.record
    if calib.latency_only:  # loud in the manifest too: readers (runner) warn on it
        extra["latency_only"] = calib.source["note"]
        note = "; ".join(n for n in (validation.get("note"), calib.source["note"]) if n)
        validation = {**validation, "note": note}
    tools = tuple(dict.fromkeys(target.tools + target.ptq_tools))
    return fp32.replace(
        file=file.name, precision=PRECISION, sha256="", size_bytes=0, inputs=inputs,
        outputs=checked.outputs, passes=tuple(fp32.passes) + (int8_pass,),
        toolchain=versions(tools), validation=validation, benchmarks=(),
        companions=(), extra=extra)
