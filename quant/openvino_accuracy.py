"""Accuracy-aware int8 for OpenVINO: NNCF's own ``quantize_with_accuracy_control``.

NNCF quantizes, measures the metric on the validation images, ranks the quantized layers by
their effect and reverts the worst to float until the drop is within ``max_drop`` (absolute,
top-1 here) or it runs out of iterations. The same held-out images as the report are used.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from quant import progress

MAX_ITERATIONS = 8


def accuracy_control(fp32_path: Path, int8_path: Path, calib, source, config, evaluation,
                     log: Callable[[str], None] = progress):
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import (AdvancedAccuracyRestorerParameters,
                                                       AdvancedQuantizationParameters)

    from exporters.common import quiet
    from quant.accuracy import Runner, label_offset
    from quant.openvino_ptq import (_save, default_overflow_fix, float_weight_layers,
                                    overflow_enum, unquantized_layers)

    offset = label_offset(evaluation.ref_logits.shape[1], evaluation.num_classes, evaluation.path)
    items = [(evaluation.x[i:i + 1], int(evaluation.labels[i]) + offset)
             for i in range(len(evaluation.labels))]

    def validate(compiled, data) -> tuple[float, list[float]]:
        hits = [float(np.argmax(compiled(x)[0]) == y) for x, y in data]
        return float(np.mean(hits)), hits

    # what plain quantize skipped (SE blocks): kept weight-only int8 below, not counted as
    # reverted; the file at int8_path is still plain quantize's
    skipped = set(unquantized_layers(ov.Core().read_model(str(int8_path))))
    overflow, _ = default_overflow_fix()
    t0 = time.perf_counter()
    log(f"sensitivity: NNCF accuracy control on {len(items)} images (max drop "
        f"{config.max_drop} points)")
    with quiet():
        model = nncf.quantize_with_accuracy_control(
            ov.Core().read_model(str(fp32_path)), nncf.Dataset(list(calib.batches(1))),
            nncf.Dataset(items, lambda item: item[0]), validate,
            max_drop=config.max_drop / 100.0, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(calib), fast_bias_correction=False,
            preset=nncf.QuantizationPreset.PERFORMANCE,
            advanced_quantization_parameters=AdvancedQuantizationParameters(
                overflow_fix=overflow_enum(overflow)),
            advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                max_num_iterations=MAX_ITERATIONS))
        reverted = [n for n in unquantized_layers(model) if n not in skipped]
        weight_only = [n for n in float_weight_layers(model) if n in skipped]
        if weight_only:  # reverted layers keep f32 weights: that is what NNCF measured
            model = nncf.compress_weights(
                model, mode=nncf.CompressWeightsMode.INT8_SYM,
                ignored_scope=nncf.IgnoredScope(names=reverted) if reverted else None)
    before = _size(int8_path)
    _save(ov, model, int8_path)
    float_layers = float_weight_layers(model)  # after _save: the names in the written file
    runner = Runner(int8_path, config.target_entry.runtime, config.target_entry.input_layout,
                    config.threads)
    acc = evaluation.compare(evaluation.ref_logits, evaluation.logits(runner)).to_dict()
    runner.close()
    log(f"sensitivity: {len(float_layers)} layer(s) in float -> top-1 drop "
        f"{acc['top1_drop']:.2f} ({time.perf_counter() - t0:.0f} s)")
    record: dict[str, Any] = {
        "max_drop": config.max_drop, "reached": acc["top1_drop"] <= config.max_drop,
        "ranking_method": "NNCF quantize_with_accuracy_control (its own layer ranking)",
        "float_layers": float_layers, "size_bytes_before": before,
        "size_bytes_after": _size(int8_path)}
    ops = Counter(op.get_type_name() for op in model.get_ops())
    facts = {"quantizer": "nncf.quantize_with_accuracy_control", "preset": "performance",
             "fast_bias_correction": False, "overflow_fix": overflow,
             "max_iterations": MAX_ITERATIONS, "fake_quantize_count": ops.get("FakeQuantize", 0),
             "weight_only_int8": weight_only,
             "op_histogram": dict(sorted(ops.items()))}
    return record, facts, {**acc, "data": str(config.eval_data)}


def _size(xml: Path) -> int:
    return sum(p.stat().st_size for p in (xml, xml.with_suffix(".bin")) if p.exists())
