"""Per-layer sensitivity and accuracy-aware fall-back of the worst layers to float.

Runs when ``--max-drop D`` is given and the measured top-1 drop is above D.

Ranking (every target): the int8 file's weights and input quantization are loaded into a
PyTorch copy of the parent (as for bias correction, ``quant.bias_correction``); for each
layer, the logit error against fp32 on calibration inputs is measured with that one layer back
in float. The layers whose return to float removes the most error rank first. One forward pass
per layer, no re-quantization: cheap enough for every layer.

Fall-back: the target's own quantizer runs again with the top-k layers excluded (k = 1, 2, 4,
... then bisected), each result evaluated on the held-out images, until the drop is within D
or a quarter of the layers are float. On OpenVINO the excluded layers go to NNCF's
``ignored_scope``, so the fall-back keeps the same ranges and bias correction as plain
``--int8`` (NNCF's ``quantize_with_accuracy_control`` would quantize with its own).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from quant import progress
from quant.bias_correction import _layers, fold_batchnorm, match_layers
from quant.int8_grid import inputs_on_grid

MAX_FLOAT_SHARE = 0.25
RANK_IMAGES = 32


def rank_layers(parent, targets, calib: np.ndarray) -> list[dict[str, Any]]:
    """[{"layer": parent module name, "target": name in the file, "gain": error removed}]."""
    import torch

    folded = fold_batchnorm(parent)
    matched, _ = match_layers(folded, targets)
    x = torch.from_numpy(np.ascontiguousarray(calib[:RANK_IMAGES]))
    with torch.no_grad():
        reference = folded(x)
    sim = copy.deepcopy(folded)
    layers = _layers(sim)
    weights = {n: layers[n].weight.data.clone() for n in matched}
    floated: set[str] = set()

    def set_quantized(name: str, quantized: bool) -> None:
        t, m = matched[name], layers[name]
        # weights only: the file's bias may hold constants folded in by the converter
        if quantized:
            m.weight.data = torch.from_numpy(t.weight.astype(np.float32))
            floated.discard(name)
        else:
            m.weight.data = weights[name]
            floated.add(name)

    def input_grid(name: str):  # a layer back in float reads float inputs too
        return None if name in floated else matched[name].input_quant

    with inputs_on_grid({n: layers[n] for n in matched}, input_grid):
        for n in matched:
            set_quantized(n, True)

        def error() -> float:
            with torch.no_grad():
                return float(((sim(x) - reference) ** 2).mean())

        base = error()
        ranking = []
        for n in matched:
            set_quantized(n, False)
            ranking.append({"layer": n, "target": matched[n].name,
                            "gain": round(base - error(), 8)})
            set_quantized(n, True)
    ranking.sort(key=lambda r: -r["gain"])
    return ranking


def fall_back(ptq, fp32_path: Path, int8_path: Path, calib, options, source, config, int8,
              evaluation, log: Callable[[str], None] = progress):
    """Re-quantize with the most sensitive layers in float until the drop is within
    ``int8.max_drop`` (``config``: the export stage's target and threads); returns (sensitivity record, facts, accuracy) and leaves the chosen
    file at ``int8_path``."""
    import dataclasses

    from device_runners.file_logits import FileLogits

    target = config.target_entry
    t0 = time.perf_counter()
    ranking = rank_layers(source.model, ptq.target_layers(int8_path), calib.inputs)
    log(f"sensitivity: ranked {len(ranking)} layers in {time.perf_counter() - t0:.0f} s; most "
        f"sensitive: {', '.join(r['layer'] for r in ranking[:5])}")
    budget = max(1, int(len(ranking) * MAX_FLOAT_SHARE))
    base_size = _size(int8_path, target)
    steps: list[dict[str, Any]] = []
    results: dict[int, tuple[Path, dict, dict]] = {}
    work = int8_path.parent

    def attempt(k: int):
        if k in results:
            return results[k]
        exclude = tuple(r["target"] for r in ranking[:k])
        out = work / f"k{k}" / int8_path.name
        out.parent.mkdir(exist_ok=True)
        opts = dataclasses.replace(options, exclude=exclude)
        facts = ptq.quantize(fp32_path, out, calib, opts, parent=source.model)
        with FileLogits(out, target.runtime, target.input_layout, config.threads) as logits:
            acc = evaluation.compare(evaluation.ref_logits, evaluation.logits(logits)).to_dict()
        steps.append({"float_layers": k, "top1_drop": acc["top1_drop"],
                      "agreement": acc["agreement"], "size_bytes": _size(out, target)})
        log(f"sensitivity: {k} layer(s) in float -> top-1 drop {acc['top1_drop']:.2f}")
        results[k] = (out, facts, acc)
        return results[k]

    # doubling until the drop holds (or the budget ends), then bisect down to the fewest
    k, good, bad = 1, None, 0
    while k <= budget:
        if attempt(k)[2]["top1_drop"] <= int8.max_drop:
            good = k
            break
        bad, k = k, min(k * 2, budget) if k < budget else budget + 1
    if good is not None:
        while good - bad > 1:
            mid = (good + bad) // 2
            if attempt(mid)[2]["top1_drop"] <= int8.max_drop:
                good = mid
            else:
                bad = mid
        chosen = good
    else:  # not reachable within the budget: keep the best attempt, report it as such
        chosen = min(results, key=lambda j: (results[j][2]["top1_drop"], j))
    out, facts, acc = results[chosen]
    _move(out, int8_path, target)
    record = {"max_drop": int8.max_drop, "reached": acc["top1_drop"] <= int8.max_drop,
              "ranking_method": "per-layer logit error with that layer in float (PyTorch "
                                "simulation of the int8 file, calibration inputs)",
              "ranking": ranking,
              "float_layers": [r["layer"] for r in ranking[:chosen]],
              "float_layers_in_file": [r["target"] for r in ranking[:chosen]],
              "steps": steps, "size_bytes_before": base_size,
              "size_bytes_after": _size(int8_path, target)}
    return record, facts, {**acc, "data": str(int8.eval_data)}


def _size(path: Path, target) -> int:
    return sum(p.stat().st_size for p in [path] + [path.with_suffix(s) for s in target.companions]
               if p.exists())


def _move(src: Path, dst: Path, target) -> None:
    import os

    for s in target.companions:
        if src.with_suffix(s).exists():
            os.replace(src.with_suffix(s), dst.with_suffix(s))
    os.replace(src, dst)
