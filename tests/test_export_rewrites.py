"""The export-only NHWC rewrites: same outputs, same state dict, the patterns they target."""
from __future__ import annotations

import pytest
import torch

import zoo
from exporters.tflite_rewrites import nhwc_friendly
from tests.export_helpers import nontrivial_

aten = torch.ops.aten


def _ops(gm) -> list:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize("name, shuffles, kind", [
    # V2: every block ends in shuffle(cat(a, b)); 3 + 7 + 3 blocks at x0.5 + 3 downsampling
    ("shufflenet_v2_x0_5", 16, "concat_shuffle"),
    # V1 g3: one shuffle per unit after its first grouped 1x1 conv (4 + 8 + 4 units), except
    # stage 2's first unit whose 1x1 conv is not grouped (the paper's choice)
    ("shufflenet_v1_g3", 15, "channel_shuffle"),
])
def test_shuffles_are_rewritten_and_outputs_unchanged(name, shuffles, kind):
    torch.manual_seed(0)
    model, _ = zoo.create_model(name, num_classes=10, input_size=64)
    nontrivial_(model)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    gm, counts = nhwc_friendly(model, x)
    assert counts[kind] == shuffles and counts["global_mean"] == 1
    assert aten.transpose.int not in _ops(gm), "no NCHW 5-D transpose may remain"
    with torch.no_grad():
        want, got = model(x), gm(x)
    assert want.shape == got.shape == (1, 10) and want.abs().max() > 1e-2
    assert torch.allclose(want, got, rtol=0, atol=1e-6)
    # the PyTorch model itself is untouched
    assert model.state_dict().keys() == keys.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in keys.items())


def test_models_without_shuffle_only_get_the_mean_rewrite():
    model, _ = zoo.create_model("mobilenet_v2", num_classes=10, input_size=64)
    gm, counts = nhwc_friendly(model.eval(), torch.randn(1, 3, 64, 64))
    assert counts["channel_shuffle"] == counts["concat_shuffle"] == 0
    means = [n for n in gm.graph.nodes if n.op == "call_function" and n.target == aten.mean.dim]
    assert all(n.args[2] is True for n in means)


def test_a_shuffle_whose_intermediate_is_reused_is_left_alone():
    class Peek(torch.nn.Module):
        """A 5-D view that is also read elsewhere: rewriting it would change the graph."""

        def forward(self, x):
            n, c, h, w = x.shape
            v = x.view(n, 2, c // 2, h, w)
            y = v.transpose(1, 2).reshape(n, c, h, w)
            return y + v.sum(1).repeat(1, 2, 1, 1)

    m = Peek().eval()
    x = torch.randn(1, 8, 4, 4)
    gm, counts = nhwc_friendly(m, x)
    assert counts["channel_shuffle"] == counts["concat_shuffle"] == 0
    assert torch.equal(gm(x), m(x))
