"""PyTorch -> ExecuTorch program (``.pte``) with the XNNPACK delegate.

``torch.export.export`` -> ``executorch.exir.to_edge_transform_and_lower(ep,
partitioner=[XnnpackPartitioner()])`` -> ``.to_executorch()``; the program's bytes are written
to a temporary file beside ``path`` and renamed over it, so a failed export never leaves a
finished-looking ``.pte``. The input keeps PyTorch's NCHW float layout and the example's
static shape (ExecuTorch plans its memory for that shape; it refuses another batch at run time).

What XNNPACK does not take stays in the program as portable (non-delegated) kernels; the graph
facts say which. Measured on the CIFAR-10 ShuffleNetV2 x0.5 (torch 2.13, executorch 1.5.1):
the 13 channel splits (``split_with_sizes_copy``) and the global ``mean`` without kept dims
run outside the delegate, which cuts the network into 15 XNNPACK subgraphs.

``lower`` is shared with ``quant.executorch_ptq``, which lowers a PT2E-quantized graph the
same way.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from edgebase.errors import ConfigError, MissingDependencyError
from edgebase.executorch_logs import quiet_torchao_import
from exporters.common import Conversion, ConversionError, first_line, graph_summary, quiet

SUFFIX = ".pte"
DELEGATE = "XnnpackBackend"
# nodes of a lowered graph that only route values: not operations of the network
_NOT_OPS = {"getitem", "alloc", "executorch_call_delegate", "output", "placeholder"}


def _exir():
    quiet_torchao_import()
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        raise MissingDependencyError("executorch (ExecuTorch export)", "executorch") from None
    return to_edge_transform_and_lower, XnnpackPartitioner


def torch_to_executorch(model, example, path: str | Path, *,
                        precision: str = "fp32") -> Conversion:
    """Export ``model`` (eval mode) at ``example``'s shape and write the ``.pte`` at ``path``."""
    import torch

    if precision != "fp32":
        raise ConfigError(f"executorch does not offer {precision} here; valid: fp32 "
                          f"(int8 is quant.executorch_ptq)")
    path = Path(path)
    if path.suffix != SUFFIX:
        raise ConfigError(f"an ExecuTorch program must end in {SUFFIX}, not {path.name}")
    _exir()  # a missing executorch is a one-line error before any work
    details: dict[str, Any] = {"tool": "executorch.exir (XNNPACK delegate)"}
    t0 = time.perf_counter()
    with quiet() as log:
        try:
            with torch.no_grad():
                program = torch.export.export(model.eval(), (example,))
        except Exception as err:
            raise ConversionError(f"torch.export could not export the model: "
                                  f"{first_line(err)}", log=log.text()) from err
    details["export_seconds"] = round(time.perf_counter() - t0, 3)
    graph, seconds = lower(program, path)
    details["lower_seconds"] = seconds
    return Conversion(file=path, details=details, graph=graph)


def lower(program, path: str | Path) -> tuple[dict[str, Any], float]:
    """Lower an ``ExportedProgram`` with XNNPACK and write it atomically to ``path``.

    Returns (graph facts, seconds spent lowering and serialising)."""
    from edgebase.files import atomic_path

    to_edge_transform_and_lower, XnnpackPartitioner = _exir()
    t0 = time.perf_counter()
    with quiet() as log:
        try:
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            graph = delegation_facts(edge.exported_program().graph_module)
            data = edge.to_executorch().buffer
        except Exception as err:
            raise ConversionError(f"ExecuTorch could not lower the model with XNNPACK: "
                                  f"{first_line(err)}", log=log.text()) from err
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return graph, round(time.perf_counter() - t0, 3)


def op_name(node) -> str:
    """``aten.convolution`` / ``aten.mean.dim`` style names for edge and aten ops; ``getitem`` for routing."""
    target = node.target
    if getattr(target, "__name__", "") == "getitem":
        return "getitem"
    op = getattr(target, "_op", target)  # EdgeOpOverload wraps the aten OpOverload
    name = getattr(op, "name", None)
    if callable(name):  # OpOverload.name() -> "aten::convolution.default"
        return name().replace("::", ".")
    return getattr(target, "__name__", str(target))


def delegation_facts(graph_module) -> dict[str, Any]:
    """What runs inside the XNNPACK delegate and what stays in portable kernels.

    ``op_histogram`` counts the network's operations wherever they run (routing nodes left
    out); ``non_delegated_ops`` are those outside XNNPACK (the ``float_ops`` of an int8 file:
    with the quantize/dequantize pairs inside the delegates, values cross between subgraphs
    in float)."""
    inside, outside = Counter(), Counter()
    subgraphs = 0

    def walk(gm, counter, top: bool):
        nonlocal subgraphs
        for node in gm.graph.nodes:
            if node.op != "call_function":
                continue
            name = op_name(node)
            if name == "executorch_call_delegate" or "call_delegate" in name:
                if top:
                    subgraphs += 1
                lowered = getattr(gm, node.args[0].target)
                walk(lowered.original_module.graph_module, inside, top=False)
                continue
            if name not in _NOT_OPS:
                counter[name] += 1

    walk(graph_module, outside, top=True)
    summary = graph_summary((inside + outside).elements(), transpose="aten.permute_copy")
    return {**summary, "delegate": DELEGATE, "delegated_subgraphs": subgraphs,
            "delegated_op_count": sum(inside.values()),
            "non_delegated_op_count": sum(outside.values()),
            "non_delegated_ops": dict(sorted(outside.items()))}
