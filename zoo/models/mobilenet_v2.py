"""MobileNet V2 (Sandler et al., 2018) with torchvision's module layout and state-dict keys."""
from __future__ import annotations

import torch
from torch import nn

from zoo.models._common import (
    SMALL_INPUT, Add, add_entry, check_positive, conv_bn_act, make_divisible, set_stride,
)

SMALL_INPUT["mobilenet_v2"] = "stem conv stride 2->1 (32x32 input, total stride 16, 2x2 final map)"

# t (expansion), c (channels), n (repeats), s (first stride)
SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(c_in * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_act(c_in, hidden, kernel_size=1))
        layers += [
            conv_bn_act(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = c_out
        if self.use_res_connect:
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return self.add(x, self.conv(x))
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 small_input: bool = False, round_nearest: int = 8):
        super().__init__()
        check_positive("width_mult", width_mult)
        c_in = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [conv_bn_act(3, c_in, stride=2)]
        for t, c, n, s in SETTING:
            c_out = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(c_in, c_out, s if i == 0 else 1, t))
                c_in = c_out
        features.append(conv_bn_act(c_in, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        if small_input:
            set_stride(self.features[0][0], 1)
        init_mobilenet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


def init_mobilenet(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 small_input: bool = False) -> MobileNetV2:
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout,
                       small_input=small_input)


add_entry(
    "mobilenet_v2", mobilenet_v2, width_kwarg="width_mult", width_mult=1.0,
    doc="MobileNet V2, width multiplier 1.0 by default (--width sets width_mult); torchvision keys.",
)
