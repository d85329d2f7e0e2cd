"""Per-operator time of a ``.tflite`` file from single-operator sub-graphs, joined with the
PyTorch layers.

LiteRT's Python interpreter has no per-operator timer (benchmark_model's
``--enable_op_profiling`` is C++ only). So each operator of the main graph is cut out into a
model of its own (the operator, its tensors, its constant buffers; its variable inputs become
the model's inputs), run through the same interpreter and delegate (XNNPACK) with random
inputs, and timed. Isolated operators miss what the whole graph shares (operator fusion in the
delegate, caches warm from the previous operator, one dispatch), so their sum is reported
beside the whole graph's wall time rather than scaled to it.

Layers: litert-torch names tensors after its wrapper, not the PyTorch modules, so convolutions
and fully-connected layers are matched in execution order by weight shape, the other kinds in
order by kind (``device_runners.layer_match``); a PAD serves the operator that reads it, an
activation or reshape belongs to the layer that produced its input.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np

from device_runners.layer_match import OP_KINDS, match_in_order, result


def _op_names():
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _constant(model, tensor) -> bool:
    b = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    return b is not None and b.data is not None and len(b.data) > 0


def single_op_model(model, index: int) -> bytes:
    """A flatbuffer holding operator ``index`` of the main graph alone."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    sg = model.subgraphs[0]
    op = sg.operators[index]
    used = list(dict.fromkeys(i for i in [*op.inputs, *op.outputs] if i >= 0))
    remap, tensors, buffers = {}, [], [schema.BufferT()]
    for i in used:
        t = copy.copy(sg.tensors[i])
        if _constant(model, sg.tensors[i]):
            buffers.append(model.buffers[t.buffer])
            t.buffer = len(buffers) - 1
        else:
            t.buffer = 0
        remap[i] = len(tensors)
        tensors.append(t)
    new_op = copy.copy(op)
    new_op.inputs = [remap[i] if i >= 0 else -1 for i in op.inputs]
    new_op.outputs = [remap[i] for i in op.outputs]
    sub = schema.SubGraphT()
    sub.tensors, sub.operators, sub.name = tensors, [new_op], sg.name
    sub.inputs = [remap[i] for i in dict.fromkeys(op.inputs)
                  if i >= 0 and not _constant(model, sg.tensors[i])]
    sub.outputs = [remap[i] for i in op.outputs]
    out = copy.copy(model)
    out.subgraphs, out.buffers = [sub], buffers
    out.signatureDefs, out.metadata, out.metadataBuffer = [], [], []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(out))


def _time(interpreter_cls, content: bytes | None, path: Path | None, threads: int, runs: int,
          warmup: int) -> float:
    from device_runners.backends.litert import quiet_stderr

    with quiet_stderr():
        it = interpreter_cls(model_content=content, num_threads=threads) if content else \
            interpreter_cls(model_path=str(path), num_threads=threads)
        it.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in it.get_input_details():
        dt = np.dtype(d["dtype"])
        x = (rng.integers(-128, 127, size=d["shape"]).astype(dt) if dt.kind in "iu"
             else rng.standard_normal(d["shape"]).astype(dt))
        it.set_tensor(d["index"], x)
    for _ in range(warmup):
        it.invoke()
    t0 = time.perf_counter()
    for _ in range(runs):
        it.invoke()
    return (time.perf_counter() - t0) / runs * 1e3


def op_layers(model, layers: list[dict[str, Any]], names: dict[int, str]) -> dict[int, str]:
    """{operator index: layer name}; see the module docstring."""
    sg = model.subgraphs[0]
    types = []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        types.append(names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?").lower())
    pending = []
    for i, (op, t) in enumerate(zip(sg.operators, types)):
        family = OP_KINDS.get(t)
        if family is None:
            continue
        shape = (tuple(sg.tensors[op.inputs[1]].shape) if family in ("conv", "linear")
                 and len(op.inputs) > 1 else None)
        pending.append((i, family, shape))
    out = match_in_order(pending, layers, set())
    producer = {o: i for i, op in enumerate(sg.operators) for o in op.outputs}
    consumer: dict[int, int] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            consumer.setdefault(t, i)
    for _ in range(3):
        for i, op in enumerate(sg.operators):
            if i in out:
                continue
            nxt = consumer.get(op.outputs[0]) if len(op.outputs) else None
            prev = producer.get(op.inputs[0]) if len(op.inputs) else None
            if types[i] in ("pad", "padv2") and nxt in out:
                out[i] = out[nxt]
            elif prev in out:
                out[i] = out[prev]
            elif nxt in out:
                out[i] = out[nxt]
    return out


def profile_layers(path: str | Path, layers: list[dict[str, Any]], threads: int = 1,
                   runs: int = 20, warmup: int = 3) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    model = flatbuffer_utils.read_model(str(path))
    names = _op_names()
    layer_of = op_layers(model, layers, names)
    ops = []
    for i, op in enumerate(model.subgraphs[0].operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        ms = _time(Interpreter, single_op_model(model, i), None, threads, runs, warmup)
        ops.append({"name": f"{i}:{kind}", "type": kind, "ms": ms, "layer": layer_of.get(i),
                    "layout": False})
    wall = _time(Interpreter, None, path, threads, runs, warmup)
    return result(ops, wall, runs, threads,
                  "single-operator sub-graphs timed in the LiteRT interpreter (XNNPACK)",
                  note="operators timed in isolation: their sum is not the whole graph's time")
