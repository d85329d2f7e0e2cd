"""ShuffleNet V2 (Ma et al., 2018) with torchvision's module layout and state-dict keys."""
from __future__ import annotations

import torch
from torch import nn

from zoo.models._common import (
    SMALL_INPUT, ChannelShuffle, Concat, GlobalAvgPool, Split, add_entry, check_choice, set_stride,
)

SMALL_INPUT["shufflenet_v2"] = (
    "conv1 stride 2->1, max-pool removed (32x32 input, total stride 8, 4x4 final map)"
)

REPEATS = (4, 8, 4)
# width -> channels of conv1, stage2..4, conv5 (torchvision's table)
CHANNELS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def _depthwise(c: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(c, c, 3, stride, 1, bias=False, groups=c)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        branch = c_out // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(c_in, stride), nn.BatchNorm2d(c_in),
                nn.Conv2d(c_in, branch, 1, 1, 0, bias=False), nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
            self.split = Split()
        self.branch2 = nn.Sequential(
            nn.Conv2d(c_in if stride > 1 else branch, branch, 1, 1, 0, bias=False),
            nn.BatchNorm2d(branch), nn.ReLU(inplace=True),
            _depthwise(branch, stride), nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1, 1, 0, bias=False), nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )
        self.concat = Concat()
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = self.split(x)
            out = self.concat(x1, self.branch2(x2))
        else:
            out = self.concat(self.branch1(x), self.branch2(x))
        return self.shuffle(out)


class ShuffleNetV2(nn.Module):
    def __init__(self, *, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.0,
                 small_input: bool = False):
        super().__init__()
        check_choice("width", width, sorted(CHANNELS))
        channels = CHANNELS[width]
        c_in = channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, c_in, 3, 2, 1, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, c_out in zip(("stage2", "stage3", "stage4"), REPEATS, channels[1:4]):
            blocks = [InvertedResidual(c_in, c_out, 2)]
            blocks += [InvertedResidual(c_out, c_out, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*blocks))
            c_in = c_out
        self.conv5 = nn.Sequential(
            nn.Conv2d(c_in, channels[-1], 1, 1, 0, bias=False), nn.BatchNorm2d(channels[-1]),
            nn.ReLU(inplace=True),
        )
        self.pool = GlobalAvgPool()
        # torchvision has no dropout here; the module is parameter-free so keys are unchanged
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels[-1], num_classes)
        if small_input:
            # a 2x2 final map capped CIFAR-10 top-1 near 75 % at 10 epochs; the pool has no
            # parameters, so the state-dict keys stay torchvision's
            set_stride(self.conv1[0], 1)
            self.maxpool = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.pool(self.conv5(x))
        return self.fc(self.dropout(x))


def shufflenet_v2(*, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.0,
                  small_input: bool = False) -> ShuffleNetV2:
    return ShuffleNetV2(num_classes=num_classes, width=width, dropout=dropout,
                        small_input=small_input)


for _w in sorted(CHANNELS):
    _tag = f"x{_w:.1f}".replace(".", "_")
    add_entry(
        f"shufflenet_v2_{_tag}", shufflenet_v2, width_kwarg="width", width=_w,
        doc=f"ShuffleNet V2 {_w}x (stage channels {CHANNELS[_w][1:4]}); torchvision keys; "
            f"--width picks another of {sorted(CHANNELS)}.",
    )
