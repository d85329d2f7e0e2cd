"""MobileNet V3 small and large (Howard et al., 2019) with torchvision's layout and keys.

As torchvision: BN eps 1e-3, SE squeeze width ``make_divisible(expanded // 4, 8)`` with ReLU
then hard-sigmoid, SE after the depthwise conv, hard-swish in the late blocks and the head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zoo.models._common import (
    SMALL_INPUT, Add, Mul, add_entry, check_positive, conv_bn_act, make_divisible, set_stride,
)
from zoo.models.mobilenet_v2 import init_mobilenet

SMALL_INPUT["mobilenet_v3"] = "stem conv stride 2->1 (32x32 input, total stride 16, 2x2 final map)"

# input, kernel, expanded, output, SE, activation (RE = ReLU, HS = hard-swish), stride
LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]
LAST_CHANNEL = {"large": 1280, "small": 1024}
BN = dict(bn_eps=0.001, bn_momentum=0.01)


@dataclass(frozen=True)
class BlockConfig:
    c_in: int
    kernel: int
    expanded: int
    c_out: int
    use_se: bool
    use_hs: bool
    stride: int


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with hard-sigmoid gating."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()
        self.mul = Mul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return self.mul(scale, x)


class InvertedResidual(nn.Module):
    def __init__(self, cnf: BlockConfig):
        super().__init__()
        self.use_res_connect = cnf.stride == 1 and cnf.c_in == cnf.c_out
        act = nn.Hardswish if cnf.use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded != cnf.c_in:
            layers.append(conv_bn_act(cnf.c_in, cnf.expanded, 1, act=act, **BN))
        layers.append(conv_bn_act(cnf.expanded, cnf.expanded, cnf.kernel, cnf.stride,
                                  groups=cnf.expanded, act=act, **BN))
        if cnf.use_se:
            layers.append(SqueezeExcitation(cnf.expanded, make_divisible(cnf.expanded // 4, 8)))
        layers.append(conv_bn_act(cnf.expanded, cnf.c_out, 1, act=None, **BN))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.c_out
        if self.use_res_connect:
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.add(out, x) if self.use_res_connect else out


class MobileNetV3(nn.Module):
    def __init__(self, *, variant: str, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2, small_input: bool = False):
        super().__init__()
        check_positive("width_mult", width_mult)

        def adjust(c: int) -> int:
            return make_divisible(c * width_mult, 8)

        table = {"large": LARGE, "small": SMALL}[variant]
        cnfs = [BlockConfig(adjust(i), k, adjust(e), adjust(o), se, act == "HS", s)
                for i, k, e, o, se, act, s in table]
        layers: list[nn.Module] = [conv_bn_act(3, cnfs[0].c_in, 3, 2, act=nn.Hardswish, **BN)]
        layers += [InvertedResidual(c) for c in cnfs]
        last_conv = 6 * cnfs[-1].c_out
        layers.append(conv_bn_act(cnfs[-1].c_out, last_conv, 1, act=nn.Hardswish, **BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_channel = adjust(LAST_CHANNEL[variant])
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        if small_input:
            set_stride(self.features[0][0], 1)
        init_mobilenet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def mobilenet_v3_large(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                       small_input: bool = False) -> MobileNetV3:
    return MobileNetV3(variant="large", num_classes=num_classes, width_mult=width_mult,
                       dropout=dropout, small_input=small_input)


def mobilenet_v3_small(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                       small_input: bool = False) -> MobileNetV3:
    return MobileNetV3(variant="small", num_classes=num_classes, width_mult=width_mult,
                       dropout=dropout, small_input=small_input)


add_entry("mobilenet_v3_large", mobilenet_v3_large, width_kwarg="width_mult", width_mult=1.0,
          doc="MobileNet V3 large, width multiplier 1.0 (--width sets width_mult); torchvision keys.")
add_entry("mobilenet_v3_small", mobilenet_v3_small, width_kwarg="width_mult", width_mult=1.0,
          doc="MobileNet V3 small, width multiplier 1.0 (--width sets width_mult); torchvision keys.")
