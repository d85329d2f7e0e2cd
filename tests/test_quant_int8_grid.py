"""quant.int8_grid: a layer's input rounded onto the int8 grid in PyTorch (bias correction and
the sensitivity ranking simulate an int8 file with it)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from quant.int8_grid import inputs_on_grid, round_onto_grid  # noqa: E402


def test_values_go_to_the_nearest_level_and_clamp_to_the_range():
    grid = (0.5, 10, 0, 255)  # uint8, levels -5.0, -4.5, ..., 122.5
    x = torch.tensor([-10.0, -5.2, 0.26, 1.0, 3.74, 200.0])
    got = round_onto_grid(x, grid)
    assert got.tolist() == [-5.0, -5.0, 0.5, 1.0, 3.5, 122.5]
    signed = round_onto_grid(torch.tensor([-1.0, 0.3, 3.0]), (1 / 64, 0, -128, 127))
    assert signed.tolist() == [-1.0, 19 / 64, 127 / 64]


def test_layers_read_rounded_inputs_only_inside_and_only_where_a_grid_is_given():
    torch.manual_seed(0)
    layers = {"conv": torch.nn.Conv2d(3, 4, 3), "fc": torch.nn.Linear(8, 2)}
    x_conv, x_fc = torch.randn(2, 3, 8, 8), torch.randn(2, 8)
    grid = (0.25, 0, -128, 127)
    grids = {"conv": grid, "fc": None}
    with torch.no_grad():
        float_conv, float_fc = layers["conv"](x_conv), layers["fc"](x_fc)
        want = layers["conv"](round_onto_grid(x_conv, grid))
        assert not torch.equal(want, float_conv)
        with inputs_on_grid(layers, grids.get):
            assert torch.equal(layers["conv"](x_conv), want)
            assert torch.equal(layers["fc"](x_fc), float_fc)  # no grid: stays float
            grids["conv"] = None  # asked at every call: a layer can go back to float
            assert torch.equal(layers["conv"](x_conv), float_conv)
            grids["conv"] = grid
            assert torch.equal(layers["conv"](x_conv), want)
        assert torch.equal(layers["conv"](x_conv), float_conv)  # hooks gone on leaving
        with pytest.raises(RuntimeError), inputs_on_grid(layers, grids.get):
            raise RuntimeError
        assert torch.equal(layers["conv"](x_conv), float_conv)  # also when it raised
