"""OpenVINO's performance counters (PERF_COUNT) joined with the PyTorch layers of an IR.

The CPU plugin executes a graph of its own (fused nodes, inserted reorders); each executed
node lists the IR operations it absorbed (runtime model ``originalLayersNames``). IR
operations converted from PyTorch are named ``__module.<layer path>/aten::...`` except where
the converter folded BatchNorm into the convolution (then ``Multiply_<n>``): those, and every
other unnamed operation, are matched in execution order by kind and weight shape
(``device_runners.layer_match``). A reorder (layout change) is charged to the node it serves,
as data movement.

The plugin's counter of a node is the running mean since compilation, in whole microseconds
per run (each run's time rounded down): read after the first run it would carry that run's
one-time work, and any read carries the warm-up. So the counters are read after the warm-up
and after the timed runs, and a node's time over the timed runs is the difference of the two
totals (mean x runs so far), taken at its lower bound: rounding never adds time to a layer.
Wall time per inference is the request's own ``latency`` of each timed ``infer()`` (the C++
call, without building the Python result), averaged over the same runs.

CPU pinning is off here: by default the plugin pins the calling thread to one core for each
inference (sched_setaffinity), and on a host whose cores are shared the thread then waits for
that core, between operators, whenever other work holds it (benchmarks/openvino_pinning.py
measures both settings side by side). That wait is no layer's time, and a device running
only the model does not wait.
"""
from __future__ import annotations

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

    from device_runners.backends.openvino import OpenVINOBackend, counters, window_total_us

    path = Path(path)
    core = ov.Core()
    model = core.read_model(str(path))
    ir = ir_layers(model, layers)
    compiled = core.compile_model(model, "CPU", {"PERF_COUNT": True,
                                                 "INFERENCE_NUM_THREADS": threads,
                                                 "INFERENCE_PRECISION_HINT": ov.Type.f32,
                                                 "ENABLE_CPU_PINNING": False})
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
    before = counters(request)
    walls = []
    for _ in range(runs):
        request.infer()
        walls.append(request.latency)
    after = counters(request)
    ops = []
    for name, (mean_us, kind) in after.items():
        us = window_total_us(before.get(name, (0, kind))[0], warmup, mean_us, warmup + runs)
        if us > 0:
            ops.append({"name": name, "type": kind, "ms": us / 1e3 / runs,
                        "layer": node_layer.get(name), "layout": kind == "Reorder"})
    return result(ops, float(np.mean(walls)), runs, threads,
                  "OpenVINO performance counters (PERF_COUNT) over the timed runs, "
                  "wall = the request's latency, CPU pinning off")

