"""onnxruntime's per-node profile joined with the PyTorch layers of an exported ``.onnx``.

Kernel time per node comes from onnxruntime's own profiler ("Node" events); the graph it ran
is the session's optimized graph (saved with ``optimized_model_filepath``), whose nodes carry
other names than the file's (fused Conv+ReLU, NCHWc convolutions named after their output,
inserted layout reorders). Each optimized node is traced back to a tensor of the exported
file, and each tensor of the file to a layer: convolutions and Gemm by their weight's name
(the PyTorch parameter name), activations to the layer that produced their input, the other
ops in execution order by kind (``device_runners.layer_match``). Wall time per inference is the
profiler's ``model_run`` duration.

The executor spends time between kernels (building the next kernel's context, releasing
inputs, recording the profile). In each run's timeline, a gap between two consecutive kernels
of the same layer is charged to that layer (an ``executor`` record): on one thread the runtime
did nothing else then. Gaps between kernels of different layers, and the time before the first
kernel and after the last (feeds, fetches), belong to no layer and stay unattributed.
"""
from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from device_runners.layer_match import EXECUTOR, OP_KINDS, match_in_order, result

_FOLLOW_PRODUCER = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh",
                    "Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze", "Cast"}
_REORDERS = ("ReorderInput", "ReorderOutput")


def file_layers(proto, layers: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """({tensor name of the exported graph: layer name}, {node name: layer name})."""
    names = {l["name"] for l in layers}
    init = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    node_layer: dict[str, str] = {}
    for n in proto.graph.node:  # weights named after the PyTorch parameter
        for i in n.input[1:2]:
            stem = i[: -len(".weight")] if i.endswith(".weight") else None
            if stem in names:
                node_layer[n.name] = stem
    pending = []
    for n in proto.graph.node:
        if n.name in node_layer:
            continue
        family = OP_KINDS.get(n.op_type.lower())
        shape = init.get(n.input[1]) if family in ("conv", "linear") and len(n.input) > 1 else None
        if family is not None:
            pending.append((n.name, family, shape))
    node_layer.update(match_in_order(pending, layers, set(node_layer.values())))
    # activations and reshapes belong to the layer that produced their input; a reshape that
    # feeds a transpose (channel shuffle) belongs to the transpose's layer
    consumers = defaultdict(list)
    for n in proto.graph.node:
        for i in n.input:
            consumers[i].append(n)
    for _ in range(3):
        for n in proto.graph.node:
            if n.name in node_layer or n.op_type not in _FOLLOW_PRODUCER:
                continue
            nxt = [c for o in n.output for c in consumers[o] if c.op_type == "Transpose"]
            if n.op_type == "Reshape" and nxt and nxt[0].name in node_layer:
                node_layer[n.name] = node_layer[nxt[0].name]
                continue
            src = producer.get(n.input[0]) if n.input else None
            if src is not None and src.name in node_layer:
                node_layer[n.name] = node_layer[src.name]
    return ({o: node_layer[n.name] for n in proto.graph.node if n.name in node_layer
             for o in n.output}, node_layer)


def optimized_node_layers(opt, tensor_layer: dict[str, str], node_layer: dict[str, str]
                          ) -> dict[str, str]:
    """{optimized node name: layer name}; see the module docstring."""
    out: dict[str, str] = {}
    consumers = defaultdict(list)
    for n in opt.graph.node:
        for i in n.input:
            consumers[i].append(n)
    for n in opt.graph.node:
        # a node that kept its name (its output may have been renamed, e.g. an NCHWc concat)
        hit = node_layer.get(n.name)
        if hit is None:
            hit = next((tensor_layer[o] for o in n.output if o in tensor_layer), None)
        if hit is None and n.name.endswith("_nchwc"):
            hit = tensor_layer.get(n.name[: -len("_nchwc")])
        if hit is not None:
            out[n.name] = hit
    for n in opt.graph.node:  # an input reorder serves the node that reads it
        if n.op_type == "ReorderInput" and n.name not in out:
            for c in (c for o in n.output for c in consumers[o]):
                if c.name in out:
                    out[n.name] = out[c.name]
                    break
    return out


def profile_layers(path: str | Path, layers: list[dict[str, Any]], threads: int = 1,
                   runs: int = 20, warmup: int = 3) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    from device_runners.backends.onnxruntime import OnnxRuntimeBackend

    path = Path(path)
    tensor_layer, file_node_layer = file_layers(onnx.load(str(path), load_external_data=False),
                                                layers)
    feeds = OnnxRuntimeBackend(path, threads=threads).example(batch=1)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        opt = onnx.load(so.optimized_model_filepath, load_external_data=False)
    node_layer = optimized_node_layers(opt, tensor_layer, file_node_layer)
    op_type = {n.name: n.op_type for n in opt.graph.node}
    timed = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    timed = timed[warmup:]
    kernels = sorted((e for e in events if e.get("cat") == "Node"
                      and e.get("name", "").endswith("_kernel_time")), key=lambda e: e["ts"])
    totals: dict[str, float] = defaultdict(float)
    gaps: dict[str, float] = defaultdict(float)
    ends = 0.0  # before the first kernel and after the last
    for run in timed:
        inside = [(e["name"][: -len("_kernel_time")], e["ts"], e["ts"] + e["dur"])
                  for e in kernels if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]]
        for name, t0, t1 in inside:
            totals[name] += t1 - t0
        for gap_layer, us in same_layer_gaps(inside, node_layer):
            gaps[gap_layer] += us
        if inside:
            ends += run["dur"] - (inside[-1][2] - inside[0][1])
    ops = [{"name": name, "type": op_type.get(name, ""), "ms": us / 1e3 / runs,
            "layer": node_layer.get(name),
            "layout": op_type.get(name) in _REORDERS} for name, us in totals.items()]
    ops += [{"name": f"{EXECUTOR} between operators of {layer}", "type": EXECUTOR,
             "ms": us / 1e3 / runs, "layer": layer, "layout": False}
            for layer, us in gaps.items()]
    walls = [float(e["dur"]) for e in timed]
    out = result(ops, float(np.mean(walls)) / 1e3 if walls else float("nan"), runs, threads,
                 "onnxruntime profiler (kernel time per node of the optimized graph; the "
                 "executor's gaps between two kernels of one layer charged to that layer)")
    out["ends_ms"] = ends / 1e3 / runs
    return out


def same_layer_gaps(kernels: list[tuple[str, float, float]], node_layer: dict[str, str]
                    ) -> list[tuple[str, float]]:
    """(layer, gap) for each pair of consecutive kernels (name, start, end) of one run, in
    execution order, that both belong to the same layer."""
    out = []
    for (a, _, a_end), (b, b_start, _) in zip(kernels, kernels[1:]):
        layer = node_layer.get(a)
        if layer is not None and layer == node_layer.get(b) and b_start > a_end:
            out.append((layer, b_start - a_end))
    return out
