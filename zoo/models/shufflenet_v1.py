"""ShuffleNet V1 (Zhang et al., 2018): groups g in {1, 2, 3, 4, 8}, scale s in {0.25 .. 2.0}.

torchvision has no ShuffleNet V1; keys mirror ShuffleNet V2's: ``conv1.{0,1}``,
``stage{2,3,4}.N.branch.{0..8}``, ``fc``. A unit's branch is
1x1 group conv (g) -> BN -> ReLU -> channel shuffle (g) -> 3x3 depthwise (stride) -> BN ->
1x1 group conv (g) -> BN; stride 1 adds the input, stride 2 concatenates a 3x3/2 average pool
of the input; ReLU follows either. Bottleneck width is 1/4 of the stage's output (Table 1).
The first unit of stage 2 uses an ungrouped first conv (its input has only 24 channels) and so
no shuffle after it (it would only permute channels).

Scaling ("ShuffleNet s x"): stage widths are ``c * s`` rounded to the nearest multiple of
``4 * g`` (so the bottleneck divides into g groups); conv1 stays at 24 channels for every s.
Names are ``shufflenet_v1_g{g}`` with ``width`` (s) = 1.0; ``--width`` picks another scale.
"""
from __future__ import annotations

import torch
from torch import nn

from zoo.models._common import (
    SMALL_INPUT, Add, ChannelShuffle, Concat, GlobalAvgPool, add_entry, check_choice, set_stride,
)

SMALL_INPUT["shufflenet_v1"] = (
    "conv1 stride 2->1, max-pool kept (32x32 input, total stride 16, 2x2 final map)"
)

GROUPS = (1, 2, 3, 4, 8)
SCALES = (0.25, 0.5, 1.0, 1.5, 2.0)
REPEATS = (4, 8, 4)
STEM = 24
# groups -> output channels of stages 2..4 at scale 1.0 (paper, Table 1)
CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960),
            4: (272, 544, 1088), 8: (384, 768, 1536)}


def stage_channels(groups: int, scale: float) -> tuple[int, ...]:
    q = 4 * groups
    return tuple(max(q, int(c * scale / q + 0.5) * q) for c in CHANNELS[groups])


class ShuffleUnit(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, first_groups: int):
        super().__init__()
        self.stride = stride
        mid = c_out // 4
        branch_out = c_out - c_in if stride == 2 else c_out
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, mid, 1, bias=False, groups=first_groups),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            ChannelShuffle(groups) if first_groups > 1 else nn.Identity(),
            nn.Conv2d(mid, mid, 3, stride, 1, bias=False, groups=mid), nn.BatchNorm2d(mid),
            nn.Conv2d(mid, branch_out, 1, bias=False, groups=groups), nn.BatchNorm2d(branch_out),
        ]
        self.branch = nn.Sequential(*layers)
        if stride == 2:
            self.shortcut = nn.AvgPool2d(3, 2, 1)
            self.merge = Concat()
        else:
            self.merge = Add()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            out = self.merge(self.shortcut(x), self.branch(x))
        else:
            out = self.merge(x, self.branch(x))
        return self.relu(out)


class ShuffleNetV1(nn.Module):
    def __init__(self, *, groups: int = 3, num_classes: int = 1000, width: float = 1.0,
                 dropout: float = 0.0, small_input: bool = False):
        super().__init__()
        check_choice("groups", groups, GROUPS)
        check_choice("width", width, SCALES)
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, STEM, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM), nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = STEM
        for i, (repeats, c_out) in enumerate(zip(REPEATS, stage_channels(groups, width))):
            units = [ShuffleUnit(c_in, c_out, 2, groups, 1 if i == 0 else groups)]
            units += [ShuffleUnit(c_out, c_out, 1, groups, groups) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            c_in = c_out
        self.pool = GlobalAvgPool()
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        if small_input:
            set_stride(self.conv1[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(self.dropout(self.pool(x)))


def shufflenet_v1(*, groups: int = 3, num_classes: int = 1000, width: float = 1.0,
                  dropout: float = 0.0, small_input: bool = False) -> ShuffleNetV1:
    return ShuffleNetV1(groups=groups, num_classes=num_classes, width=width, dropout=dropout,
                        small_input=small_input)


for _g in GROUPS:
    add_entry(
        f"shufflenet_v1_g{_g}", shufflenet_v1, width_kwarg="width", groups=_g, width=1.0,
        doc=f"ShuffleNet V1 g={_g}, scale 1.0 (stage channels {CHANNELS[_g]}); "
            f"--width picks a scale in {list(SCALES)}.",
    )
