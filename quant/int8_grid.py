"""A layer's input on the int8 grid, simulated in PyTorch: what a target's quantizer does to
the activations a conv/linear layer reads, for the PyTorch copies of an int8 file that bias
correction (``quant.bias_correction``) and the sensitivity ranking (``quant.sensitivity``) run.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

# affine quantization of a tensor: (scale, zero point, qmin, qmax)
Grid = tuple[float, int, int, int]


def round_onto_grid(x, grid: Grid):
    """``x`` rounded to the nearest level of ``grid`` (clamped to its range), back in float."""
    import torch

    scale, zero_point, qmin, qmax = grid
    q = torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale


@contextmanager
def inputs_on_grid(layers: Mapping[str, Any], grid_of: Callable[[str], Grid | None]
                   ) -> Iterator[None]:
    """While open, each of ``layers`` (name -> module) reads its first input rounded onto
    ``grid_of(name)``, asked at every call (None: the input stays float, e.g. a layer put back
    in float)."""

    def round_input(name: str, inputs: tuple):
        grid = grid_of(name)
        if grid is None:
            return None
        return (round_onto_grid(inputs[0], grid),) + tuple(inputs[1:])

    handles = [m.register_forward_pre_hook(lambda _, i, n=n: round_input(n, i))
               for n, m in layers.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
