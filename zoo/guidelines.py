"""The four controlled micro-benchmarks of ShuffleNet V2's design guidelines (Ma et al., ECCV
2018, Section 2, Tables 1-4), as small PyTorch modules, with the paper's measured speeds.

Every network takes one 56x56 feature map (the paper's input size for all four tables) and
stacks a block 10 times. Widths are the paper's: its ARM column (Snapdragon 810, one thread,
images/s) at scale x1, x2, x4 (channels doubled per step; its GPU column, GTX 1080Ti, batches
of 8 per second, used 4x the ARM widths for Tables 1 and 2 and 2x for Table 3). Blocks hold
only what the paper names: G1-G3 are bare 1x1 convolutions, G4 the ResNet bottleneck with
its ReLUs and shortcut switched on and off. No BatchNorm: every deployment runtime folds it
into the convolution.

Where a table gives only the 1-fragment width (Table 3), the other widths are derived here so
that FLOPs stay equal, as its caption says: k convolutions in series are c/sqrt(k) wide
(rounded: 2-fragment-series is within 1.2 % of the 1-fragment FLOPs, 4-fragment exact); k in
parallel each read the block input and write c/k channels, concatenated (Inception-style), so
FLOPs equal the 1-fragment's exactly. Table 2's ARM x1 row g=8 prints c=180, which 8 groups
do not divide; 184 is used (FLOPs +3.3 % against g=1; 176 would be -5.5 %). Table 4's "c channels in the unit" is read as ResNet's
bottleneck: c in and out, c/4 inside (the only reading under which the paper's ARM speeds stay
below that CPU's peak).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from zoo.models._common import Add, Concat

FEATURE = 56  # the feature-map side of every table
BLOCKS = 10  # "stacking 10 building blocks repeatedly"
SCALES = (1, 2, 4)  # the tables' x1 x2 x4 (Tables 3-4: the three c columns)
GUIDELINES = ("G1", "G2", "G3", "G4")
CLAIMS = {
    "G1": "equal input/output channel widths minimise memory access cost (fixed FLOPs)",
    "G2": "group convolution with many groups raises memory access cost (fixed FLOPs)",
    "G3": "network fragmentation (several small convolutions) reduces parallelism (fixed FLOPs)",
    "G4": "element-wise ops (ReLU, shortcut add) are not negligible",
}
PAPER = "Ma et al., ShuffleNet V2, ECCV 2018 (arXiv 1807.11164), Tables 1-4"


@dataclass(frozen=True)
class Variant:
    """One row of one table at one scale."""

    guideline: str
    label: str  # the paper's row label
    scale: int  # 1, 2 or 4
    widths: dict[str, int]  # the channel widths this module uses
    in_channels: int
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    paper_arm: float  # images/s on the paper's ARM at this scale
    paper_gpu: float  # batches of 8 per second on the paper's GPU at this scale
    paper_gpu_widths: str  # the GPU column's widths (the GPU ran wider networks)
    stated: bool  # True: the widths are printed in the table; False: derived (see module doc)
    baseline: bool = False  # the row the guideline recommends (plots divide by it)

    @property
    def key(self) -> str:
        slug = (self.label.replace(":", "-").replace(" ", "").replace(",", "_")
                .replace("=", "").replace("/", "-"))
        return f"{self.guideline.lower()}_{slug.lower()}_x{self.scale}"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_channels, FEATURE, FEATURE)


def conv1x1(c_in: int, c_out: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False)


# ---- G1: two 1x1 convolutions per block, c1 -> c2 -> c1 ---------------------------------
class PairBlock(nn.Sequential):
    def __init__(self, c1: int, c2: int):
        super().__init__(conv1x1(c1, c2), conv1x1(c2, c1))


def g1_net(c1: int, c2: int) -> nn.Module:
    return nn.Sequential(*(PairBlock(c1, c2) for _ in range(BLOCKS)))


# ---- G2: 10 pointwise group convolutions, c -> c ----------------------------------------
def g2_net(c: int, groups: int) -> nn.Module:
    return nn.Sequential(*(conv1x1(c, c, groups) for _ in range(BLOCKS)))


# ---- G3: 1 to 4 1x1 convolutions per block, in series or in parallel --------------------
class ParallelBlock(nn.Module):
    """``k`` branches read the block input; their outputs are concatenated."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.branches = nn.ModuleList(conv1x1(c, c // k) for _ in range(k))
        self.concat = Concat()

    def forward(self, x):
        return self.concat(*(b(x) for b in self.branches))


def g3_net(c: int, k: int, parallel: bool) -> nn.Module:
    if parallel:
        return nn.Sequential(*(ParallelBlock(c, k) for _ in range(BLOCKS)))
    return nn.Sequential(*(nn.Sequential(*(conv1x1(c, c) for _ in range(k)))
                           for _ in range(BLOCKS)))


def series_width(c: int, k: int) -> int:
    """Width of k series convolutions with the FLOPs of one c x c convolution."""
    return round(c / math.sqrt(k))


# ---- G4: ResNet bottleneck, ReLU and shortcut on or off ---------------------------------
class Bottleneck(nn.Module):
    """1x1 (c -> c/4), 3x3 (c/4 -> c/4), 1x1 (c/4 -> c); ReLUs after each; shortcut add."""

    def __init__(self, c: int, relu: bool, shortcut: bool):
        super().__init__()
        mid = c // 4
        self.conv1 = nn.Conv2d(c, mid, 1, bias=False)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(mid, c, 1, bias=False)
        act = nn.ReLU if relu else nn.Identity
        self.relu1, self.relu2, self.relu3 = act(), act(), act()
        self.add = Add() if shortcut else None

    def forward(self, x):
        y = self.relu1(self.conv1(x))
        y = self.relu2(self.conv2(y))
        y = self.conv3(y)
        if self.add is not None:
            y = self.add(y, x)
        return self.relu3(y)


def g4_net(c: int, relu: bool, shortcut: bool) -> nn.Module:
    return nn.Sequential(*(Bottleneck(c, relu, shortcut) for _ in range(BLOCKS)))


# ---- the tables -------------------------------------------------------------------------
# Table 1: c1:c2, (c1, c2) at x1 on ARM, ARM images/s x1 x2 x4, GPU (c1, c2) x1, GPU x1 x2 x4
_T1 = (("1:1", (32, 32), (76.2, 21.7, 5.3), (128, 128), (1480, 723, 232)),
       ("1:2", (22, 44), (72.9, 20.5, 5.1), (90, 180), (1296, 586, 206)),
       ("1:6", (13, 78), (69.1, 17.9, 4.6), (52, 312), (876, 489, 189)),
       ("1:12", (9, 108), (57.6, 15.1, 4.4), (36, 432), (748, 392, 163)))
# Table 2: g, c at x1 on ARM, ARM x1 x2 x4, GPU c at x1, GPU x1 x2 x4
_T2 = ((1, 64, (40.0, 10.2, 2.3), 128, (2451, 1289, 437)),
       (2, 90, (35.0, 9.5, 2.2), 180, (1725, 873, 341)),
       (4, 128, (32.9, 8.7, 2.1), 256, (1026, 644, 338)),
       (8, 180, (27.8, 7.5, 1.8), 360, (634, 445, 230)))
# Table 3: fragments, parallel?, ARM at c = 64 128 256, GPU at c = 128 256 512
_T3_C = 64
_T3 = ((1, False, (40.2, 10.1, 2.3), (2446, 1274, 434)),
       (2, False, (38.6, 10.1, 2.2), (1790, 909, 336)),
       (4, False, (38.4, 10.1, 2.3), (752, 745, 349)),
       (2, True, (33.4, 9.1, 2.2), (1537, 803, 320)),
       (4, True, (35.0, 8.4, 2.1), (691, 572, 292)))
# Table 4: ReLU, shortcut, ARM at c = 32 64 128, GPU at the same c
_T4_C = 32
_T4 = ((True, True, (56.7, 16.9, 5.0), (2427, 2066, 1436)),
       (True, False, (61.9, 18.8, 5.2), (2647, 2256, 1735)),
       (False, True, (57.3, 18.2, 5.1), (2672, 2121, 1458)),
       (False, False, (66.3, 20.2, 5.4), (2842, 2376, 1782)))


def _index(scale: int) -> int:
    if scale not in SCALES:
        from edgebase.errors import ConfigError
        raise ConfigError(f"scale x{scale}; valid: {', '.join(f'x{s}' for s in SCALES)}")
    return SCALES.index(scale)


def g1(scale: int) -> list[Variant]:
    i = _index(scale)
    out = []
    for label, (a, b), arm, (ga, gb), gpu in _T1:
        c1, c2 = a * scale, b * scale
        out.append(Variant("G1", label, scale, {"c1": c1, "c2": c2}, c1,
                           lambda c1=c1, c2=c2: g1_net(c1, c2), arm[i], gpu[i],
                           f"({ga * scale},{gb * scale})", True, baseline=label == "1:1"))
    return out


def g2(scale: int) -> list[Variant]:
    i = _index(scale)
    out = []
    budget = _T2[0][1] * scale  # the dense (g=1) width sets the FLOPs
    for g, c0, arm, gc, gpu in _T2:
        c, stated = c0 * scale, True
        if c % g:  # the ARM x1 row g=8, c=180: not divisible; the multiple of g closest in FLOPs
            c = min((c - c % g, c - c % g + g), key=lambda w: abs(w * w / g - budget ** 2))
            stated = False
        out.append(Variant("G2", f"g={g}", scale, {"c": c, "groups": g}, c,
                           lambda c=c, g=g: g2_net(c, g), arm[i], gpu[i], str(gc * scale),
                           stated, baseline=g == 1))
    return out


def g3(scale: int) -> list[Variant]:
    i = _index(scale)
    c = _T3_C * scale
    out = []
    for k, parallel, arm, gpu in _T3:
        if k == 1:
            label, widths, stated = "1-fragment", {"c": c}, True
        elif parallel:
            label, widths, stated = f"{k}-fragment-parallel", {"c": c, "branch_out": c // k}, False
        else:
            label, widths, stated = f"{k}-fragment-series", {"c": series_width(c, k)}, False
        out.append(Variant("G3", label, scale, widths, widths["c"],
                           lambda c=widths["c"], k=k, p=parallel: g3_net(c, k, p), arm[i],
                           gpu[i], f"c={2 * c} (1-fragment)", stated, baseline=k == 1))
    return out


def g4(scale: int) -> list[Variant]:
    i = _index(scale)
    c = _T4_C * scale
    out = []
    for relu, shortcut, arm, gpu in _T4:
        label = f"ReLU {'yes' if relu else 'no'}, shortcut {'yes' if shortcut else 'no'}"
        out.append(Variant("G4", label, scale, {"c": c, "mid": c // 4}, c,
                           lambda c=c, r=relu, s=shortcut: g4_net(c, r, s), arm[i], gpu[i],
                           f"c={c}", True, baseline=not relu and not shortcut))
    return out


BUILDERS = {"G1": g1, "G2": g2, "G3": g3, "G4": g4}


def variants(guidelines=GUIDELINES, scales=(2,)) -> list[Variant]:
    from edgebase.errors import UnknownNameError

    out = []
    for name in guidelines:
        if name.upper() not in BUILDERS:
            raise UnknownNameError("guideline", name, BUILDERS)
        for s in scales:
            out.extend(BUILDERS[name.upper()](s))
    return out


def paper_flops(v: Variant) -> int:
    """The multiply-accumulates the paper's widths give (the tables' fixed-FLOPs budget),
    from the formulas of its Section 2, independent of the module code."""
    hw = FEATURE * FEATURE
    w = v.widths
    if v.guideline == "G1":
        return BLOCKS * 2 * hw * w["c1"] * w["c2"]
    if v.guideline == "G2":
        return BLOCKS * hw * w["c"] * w["c"] // w["groups"]
    if v.guideline == "G3":
        k = int(v.label[0])
        if "parallel" in v.label:
            return BLOCKS * k * hw * w["c"] * w["branch_out"]
        return BLOCKS * k * hw * w["c"] * w["c"]
    c, m = w["c"], w["mid"]
    return BLOCKS * hw * (c * m + 9 * m * m + m * c)
