"""Joining a runtime's per-operator profile with the PyTorch model's layers.

Runtimes rename, fuse and reorder what the exporter wrote, so each runtime's own module
(``device_runners.backends.<runtime>_layers``) says which of its operators came from which
layer where it can tell by name, and falls back on ``match_in_order``: the k-th operator of a
kind and weight shape is the k-th unmatched layer of the same kind and shape, in execution
order. Layers come in as plain records ({"name", "kind", "weight_shape"}) so that this floor
needs no framework.
"""
from __future__ import annotations

from typing import Any, Iterable

# runtime operator type (lower case) -> the layer kind it realises; convolutions are told
# apart by weight shape (depthwise, group, pointwise) on the layer side
OP_KINDS = {
    "conv": "conv", "fusedconv": "conv", "convolution": "conv", "groupconvolution": "conv",
    "conv_2d": "conv", "depthwise_conv_2d": "conv",
    "gemm": "linear", "matmul": "linear", "fullyconnected": "linear", "fully_connected": "linear",
    "maxpool": "pool", "averagepool": "pool", "globalaveragepool": "pool", "reducemean": "pool",
    "pooling": "pool", "mean": "pool", "max_pool_2d": "pool", "average_pool_2d": "pool",
    "concat": "concat", "concatenation": "concat",
    "split": "split", "variadicsplit": "split", "split_v": "split",
    "transpose": "shuffle", "shufflechannels": "shuffle",
    "add": "add", "mul": "mul", "multiply": "mul",
}
CONV_KINDS = {"conv", "depthwise", "pointwise", "group conv", "group pointwise"}
# the op type of a record that is no operator but the runtime's own work between two
# operators of one layer (retiring one, launching the next), where its timeline shows it
EXECUTOR = "executor"


def layer_family(kind: str) -> str:
    """The OP_KINDS value a layer kind is matched under."""
    return "conv" if kind in CONV_KINDS else kind


def match_in_order(ops: Iterable[tuple[str, str, tuple | None]],
                   layers: list[dict[str, Any]], taken: set[str] | None = None
                   ) -> dict[str, str]:
    """{op id: layer name} for ops given as (id, family, weight shape or None) in execution
    order; a weight shape, when both sides have one, must match exactly (as a multiset of
    dimensions: layouts differ between runtimes)."""
    taken = set() if taken is None else taken
    out = {}
    for op_id, family, shape in ops:
        for layer in layers:
            if layer["name"] in taken or layer_family(layer["kind"]) != family:
                continue
            want = layer.get("weight_shape")
            if shape is not None and want is not None and sorted(shape) != sorted(want):
                continue
            out[op_id] = layer["name"]
            taken.add(layer["name"])
            break
    return out


def result(ops: list[dict[str, Any]], wall_ms: float, runs: int, threads: int,
           method: str, note: str | None = None) -> dict[str, Any]:
    """The common record: ops {"name", "type", "ms" (mean per inference), "layer" or None}."""
    return {"ops": sorted(ops, key=lambda o: -o["ms"]), "wall_ms": wall_ms, "runs": runs,
            "threads": threads, "method": method, "note": note}
