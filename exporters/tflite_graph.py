"""Read a .tflite flatbuffer's operators without running it: op histogram, TRANSPOSE count.

Uses the flatbuffer schema bindings that ``ai-edge-litert`` ships, so it needs no TensorFlow.
"""
from __future__ import annotations

import os
from typing import Any

from edgebase.errors import MissingDependencyError, ModelFileError
from exporters.common import graph_summary


def load_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise MissingDependencyError("ai-edge-litert (TFLite schema)", "litert") from None
    return schema


def builtin_names() -> dict[int, str]:
    """Builtin operator code -> name (``CONV_2D`` ...)."""
    return {v: k for k, v in vars(load_schema().BuiltinOperator).items() if not k.startswith("_")}


def opcode(model, op) -> int:
    """Builtin code of ``op`` in an object-API ``ModelT``: codes above 127 live only in
    builtinCode, older files fill only the deprecated byte."""
    c = model.operatorCodes[op.opcodeIndex]
    return max(c.builtinCode, c.deprecatedBuiltinCode)


def operators(path: str | os.PathLike) -> list[str]:
    """Builtin operator names of every subgraph, in graph order (custom ops by their code)."""
    schema = load_schema()
    data = open(path, "rb").read()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{path}: not a TFLite flatbuffer")
    names = builtin_names()
    model = schema.Model.GetRootAsModel(data, 0)
    ops = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            code = model.OperatorCodes(graph.Operators(i).OpcodeIndex())
            # builtin codes above 127 live in BuiltinCode; older files use the deprecated byte
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            if builtin == schema.BuiltinOperator.CUSTOM:
                ops.append("CUSTOM:" + (code.CustomCode() or b"?").decode())
            else:
                ops.append(names.get(builtin, str(builtin)))
    return ops


def summary(path: str | os.PathLike) -> dict[str, Any]:
    return graph_summary(operators(path), transpose="TRANSPOSE")
