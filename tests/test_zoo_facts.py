"""Model facts: the issue's reference numbers, hand-checked counting rules, consistency."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edgebase.errors import ShapeError
from zoo import get_entry, list_models
from zoo.facts import entry_facts, model_facts
from zoo.models._common import Add, ChannelShuffle, Concat

torch.set_num_threads(1)

# (224x224, 1000 classes): exact parameter counts and MACs in G as the issue states them
REFERENCE = {
    "squeezenet1_0": (1_248_424, 0.819),
    "squeezenet1_1": (1_235_496, 0.349),
    "mobilenet_v2": (3_504_872, 0.301),
    "mobilenet_v3_small": (2_542_856, 0.057),
    "mobilenet_v3_large": (5_483_032, 0.217),
    "shufflenet_v2_x0_5": (1_366_792, 0.040),
    "shufflenet_v2_x1_0": (2_278_604, 0.145),
    "shufflenet_v2_x1_5": (3_503_624, 0.296),
    "shufflenet_v2_x2_0": (7_393_996, 0.583),
}
# MobileNet V1 paper, Table 6: parameters in millions (rounded to 0.1 M) and MACs in millions
MOBILENET_V1 = {"x1_0": (4.2, 569), "x0_75": (2.6, 325), "x0_5": (1.3, 149), "x0_25": (0.5, 41)}
# ShuffleNet V1 paper, Table 1 (scale 1.0): MFLOPs (= MACs) per group count
SHUFFLENET_V1 = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_params_exact_and_macs_within_1_percent(name):
    params, gmacs = REFERENCE[name]
    facts = entry_facts(get_entry(name))
    assert facts.params == params
    # within 1 %, or within half a unit of the figure's last stated digit (0.0005 G) where
    # that is looser: "0.040 G" for shufflenet_v2_x0_5 is torchvision's 0.04 rounded
    tolerance = max(0.01 * gmacs, 0.0005)
    assert abs(facts.macs / 1e9 - gmacs) <= tolerance, facts.macs


@pytest.mark.parametrize("tag", sorted(MOBILENET_V1))
def test_mobilenet_v1_matches_paper_within_2_percent(tag):
    m_params, m_macs = MOBILENET_V1[tag]
    facts = entry_facts(get_entry(f"mobilenet_v1_{tag}"))
    assert round(facts.params / 1e6, 1) == m_params  # the paper rounds to 0.1 M
    assert abs(facts.macs / 1e6 - m_macs) <= 0.02 * m_macs


@pytest.mark.parametrize("groups", sorted(SHUFFLENET_V1))
def test_shufflenet_v1_matches_paper_table1_within_5_percent(groups):
    facts = entry_facts(get_entry(f"shufflenet_v1_g{groups}"))
    ref = SHUFFLENET_V1[groups]
    assert abs(facts.macs / 1e6 - ref) <= 0.05 * ref


@pytest.mark.parametrize("name", list_models())
def test_totals_are_sums_of_layers_and_shares_add_up(name):
    entry = get_entry(name).with_overrides(input_size=64)
    facts = entry_facts(entry)
    assert facts.input_shape == (1, 3, 64, 64)
    assert facts.macs == sum(l.macs for l in facts.layers) > 0
    assert facts.mac_cost == sum(l.mac_cost for l in facts.layers) > 0
    # every parameter belongs to exactly one executed leaf layer
    assert facts.params == sum(l.params for l in facts.layers)
    kinds = facts.by_kind()
    assert sum(k["macs_share"] for k in kinds.values()) == pytest.approx(1.0)
    assert sum(k["mac_cost_share"] for k in kinds.values()) == pytest.approx(1.0)
    d = facts.to_dict()
    assert d["params"] == facts.params and len(d["layers"]) == len(facts.layers)


def test_conv_and_linear_rules_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),  # 8x8 out
        nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise
        nn.Conv2d(8, 16, 1),  # pointwise with bias
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4),
    )
    f = model_facts(model, 16)
    by_name = {l.name: l for l in f.layers}
    conv, dw, pw, pool, fc = (by_name[k] for k in ("0", "3", "4", "5", "7"))
    assert (conv.kind, dw.kind, pw.kind, pool.kind, fc.kind) == (
        "conv", "depthwise", "pointwise", "pool", "linear")
    assert conv.macs == 8 * 8 * 8 * 3 * 9
    assert conv.mac_cost == 3 * 16 * 16 + 8 * 8 * 8 + 8 * 3 * 9
    assert dw.macs == 8 * 8 * 8 * 9 and dw.mac_cost == 2 * 8 * 8 * 8 + 8 * 9
    # ShuffleNet V2's 1x1 rule: h*w*(c_in + c_out) + weights (+ bias)
    assert pw.macs == 8 * 8 * 8 * 16 and pw.mac_cost == 8 * 8 * (8 + 16) + 8 * 16 + 16
    assert pool.macs == 0 and pool.mac_cost == 16 * 8 * 8 + 16
    assert fc.macs == 64 and fc.mac_cost == 16 + 4 + 68
    assert by_name["1"].mac_cost == 0 and by_name["2"].mac_cost == 0  # fused
    unfused = model_facts(model, 16, fused=False)
    assert unfused.mac_cost - f.mac_cost == (2 * 8 * 8 * 8 + 32) + 2 * 8 * 8 * 8
    assert f.params == sum(p.numel() for p in model.parameters())


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.add, self.cat, self.shuffle = Add(), Concat(), ChannelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.cat(self.add(x, x), x))


def test_elementwise_ops_charge_reads_plus_writes():
    f = model_facts(_Block(), 4, in_channels=2)  # x: 2x4x4 = 32 elements
    cost = {l.kind: l.mac_cost for l in f.layers}
    assert cost == {"add": 3 * 32, "concat": 4 * 32, "shuffle": 4 * 32}
    assert f.macs == 0


def test_shuffle_and_residual_traffic_counted_in_zoo_models():
    kinds = entry_facts(get_entry("shufflenet_v2_x0_5")).by_kind()
    assert {"shuffle", "split", "concat"} <= set(kinds) and kinds["shuffle"]["count"] == 16
    kinds = entry_facts(get_entry("mobilenet_v3_small").with_overrides(input_size=64)).by_kind()
    assert kinds["mul"]["count"] == 9 and kinds["add"]["count"] == 6  # SE blocks, residuals


def test_too_small_input_is_a_shape_error():
    with pytest.raises(ShapeError, match="16x16 input does not fit"):
        entry_facts(get_entry("squeezenet1_1").with_overrides(input_size=16))
