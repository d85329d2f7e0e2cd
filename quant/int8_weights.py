"""The int8 weight tensors of an int8 target file, read from the file itself.

An int8 file's quantizer (ONNX Runtime, LiteRT, NNCF) decides each weight's int8 value, so
the Deep Compression container takes them from the file as it was written: the target's PTQ
module (the capability table's ``Target.ptq``, for targets with ``int8_container``) lists
every int8 constant of two or more axes as stored (``int8_weights(files, model)``). Their
values are at most 255 non-zero integers per tensor, so each tensor is a codebook of its own;
weight sharing before quantization leaves few of them per output channel (a channel's 2**B
clusters become at most 2**B int8 values; pruned weights stay 0 under symmetric weight
quantization), which Huffman coding turns into a small file.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from edgebase.capabilities import TARGETS
from edgebase.errors import ConfigError


def targets() -> list[str]:
    """The targets whose int8 files a container can carry."""
    return [n for n, t in TARGETS.items() if t.int8_container]


def int8_weights(target: str, files: Mapping[str, bytes], model: str
                 ) -> tuple[dict[str, np.ndarray], list[str]]:
    """({name: int8 tensor as stored}, names left in the file): tensors whose bytes do not
    occur exactly once in ``files`` cannot be cut out, so they stay in the file's skeleton."""
    from quant import get_pass
    from quant.container_writer import locate

    if target not in targets():
        raise ConfigError(f"an int8 container for {target}: int8 files of "
                          f"{', '.join(targets())} only")
    tensors = get_pass(target).int8_weights(dict(files), model)
    if not tensors:
        raise ConfigError(f"{model}: no int8 weight tensor in the file")
    kept, left = {}, []
    for name, t in tensors.items():
        try:  # the writer's own rule: exactly one place, overlapping matches counted
            locate(files, t, name)
        except ConfigError:
            left.append(name)
        else:
            kept[name] = t
    return kept, left
