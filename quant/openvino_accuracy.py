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
    from quant.openvino_ptq import _save, default_overflow_fix, overflow_enum

    offset = label_offset(evaluation.ref_logits.shape[1], evaluation.num_classes, evaluation.path)
    items = [(evaluation.x[i:i + 1], int(evaluation.labels[i]) + offset)
             for i in range(len(evaluation.labels))]

    def validate(compiled, data) -> tuple[float, list[float]]:
        hits = [float(np.argmax(compiled(x)[0]) == y) for x, y in data]
        return float(np.mean(hits)), hits

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
    before = _size(int8_path)
    _save(ov, model, int8_path)
    runner = Runner(int8_path, config.target_entry.runtime, config.target_entry.input_layout,
                    config.threads)
    acc = evaluation.compare(evaluation.ref_logits, evaluation.logits(runner)).to_dict()
    runner.close()
    float_layers = _float_layers(model)
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
             "op_histogram": dict(sorted(ops.items()))}
    return record, facts, {**acc, "data": str(config.eval_data)}


def _float_layers(model) -> list[str]:
    """Convolution/MatMul nodes whose weight input is not fed by a FakeQuantize."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        src = op.input_value(1).get_node()
        while src.get_type_name() in ("Convert", "Reshape", "Multiply", "Subtract"):
            src = src.input_value(0).get_node()
        if src.get_type_name() == "Constant" and \
                op.input_value(0).get_node().get_type_name() != "FakeQuantize":
            names.append(op.get_friendly_name())
    return names


def _size(xml: Path) -> int:
    return sum(p.stat().st_size for p in (xml, xml.with_suffix(".bin")) if p.exists())
