"""OpenVINO's performance counters (PERF_COUNT) joined with the PyTorch layers of an IR.

The CPU plugin executes a graph of its own (fused nodes, inserted reorders); each executed
node lists the IR operations it absorbed (runtime model ``originalLayersNames``). IR
operations converted from PyTorch are named ``__module.<layer path>/aten::...`` except where
the converter folded BatchNorm into the convolution (then ``Multiply_<n>``): those, and every
other unnamed operation, are matched in execution order by kind and weight shape
(``device_runners.layer_match``). A reorder (layout change) is charged to the node it serves,
as data movement. Wall time per inference is measured around ``infer()``.
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from device_runners.layer_match import OP_KINDS, match_in_order, result

_SKIP = {"Parameter", "Result", "Constant", "Convert"}


def _module_path(name: str, names: set[str]) -> str | None:
    if not name.startswith("__module."):
        return None
    path = name[len("__module."):].split("/", 1)[0]
    while path and path not in names:  # a submodule's op: charge the nearest known layer
        path = path.rpartition(".")[0]
    return path or None


def ir_layers(model, layers: list[dict[str, Any]]) -> dict[str, str]:
    """{IR operation friendly name: layer name}."""
    names = {l["name"] for l in layers}
    out: dict[str, str] = {}
    pending = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in _SKIP:
            continue
        name = op.get_friendly_name()
        family = OP_KINDS.get(kind.lower())
        path = _module_path(name, names)
        if path is not None:
            out[name] = path
            continue
        if family is None:
            continue
        shape = None
        if family in ("conv", "linear") and op.get_input_size() > 1:
            pshape = op.input(1).get_partial_shape()
            if pshape.is_static:
                dims = [d for d in pshape.to_shape()]
                # GroupConvolution weights are [G, O/G, I/G, kh, kw]: as PyTorch's [O, I/G, ..]
                shape = tuple([dims[0] * dims[1], *dims[2:]] if kind == "GroupConvolution"
                              else dims)
        pending.append((name, family, shape))
    out.update(match_in_order(pending, layers, set(out.values())))
    return out


def profile_layers(path: str | Path, layers: list[dict[str, Any]], threads: int = 1,
                   runs: int = 20, warmup: int = 3) -> dict[str, Any]:
    import numpy as np
    import openvino as ov

    from device_runners.backends.openvino import OpenVINOBackend

    path = Path(path)
    core = ov.Core()
    model = core.read_model(str(path))
    ir = ir_layers(model, layers)
    compiled = core.compile_model(model, "CPU", {"PERF_COUNT": True,
                                                 "INFERENCE_NUM_THREADS": threads,
                                                 "INFERENCE_PRECISION_HINT": ov.Type.f32})
    node_layer, node_type = {}, {}
    ir_names = sorted(ir, key=len, reverse=True)
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        name = op.get_friendly_name()
        node_type[name] = rt["layerType"].astype(str) if "layerType" in rt else ""
        origin = rt["originalLayersNames"].astype(str) if "originalLayersNames" in rt else ""
        hits = [ir[o] for o in origin.split(",") if o in ir]
        if not hits and node_type[name] == "Reorder":  # "x_abcd_acdb_Multiply_27484", or
            # "<op>_acdb_abcd_Result_1033": the layout change of the operation it names
            hits = [ir[n] for n in ir_names if n in name][:1]
        if hits:
            node_layer[name] = hits[0]
    feeds = OpenVINOBackend(path, threads=threads).example(batch=1)
    request = compiled.create_infer_request()
    for i, x in enumerate(feeds.values()):
        request.set_input_tensor(i, ov.Tensor(x))
    for _ in range(warmup):
        request.infer()
    totals: dict[str, float] = defaultdict(float)
    types: dict[str, str] = {}
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        request.infer()
        walls.append(time.perf_counter() - t0)
        for info in request.profiling_info:
            if str(info.status).endswith("EXECUTED"):
                totals[info.node_name] += info.real_time.total_seconds()
                types[info.node_name] = info.node_type
    ops = [{"name": n, "type": types[n], "ms": s * 1e3 / runs, "layer": node_layer.get(n),
            "layout": types[n] == "Reorder"} for n, s in totals.items()]
    return result(ops, float(np.mean(walls)) * 1e3, runs, threads,
                  "OpenVINO performance counters (PERF_COUNT, real time per executed node)")
