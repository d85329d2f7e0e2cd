"""SqueezeNet 1.0 / 1.1 (Iandola et al., 2016) with torchvision's keys, and 1.0 with simple bypass.

The simple-bypass variant adds identity shortcuts around the Fire modules whose input and
output widths match (the paper's fire3, fire5, fire7, fire9); it has the same parameters and
keys as squeezenet1_0, so squeezenet1_0 weights load into it (they were not trained with it).
"""
from __future__ import annotations

import torch
from torch import nn

from zoo.models._common import SMALL_INPUT, Add, Concat, add_entry

SMALL_INPUT["squeezenet"] = ("conv1 stride 2->1, max-pools kept (32x32 input, 3x3 final map); "
                             "classifier conv bias initialised to 1")


class Fire(nn.Module):
    def __init__(self, c_in: int, squeeze: int, expand1x1: int, expand3x3: int, bypass: bool = False):
        super().__init__()
        self.squeeze = nn.Conv2d(c_in, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.concat = Concat()
        self.bypass = bypass
        if bypass:
            if c_in != expand1x1 + expand3x3:
                raise ValueError("a simple bypass needs equal input and output widths")
            self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_activation(self.squeeze(x))
        out = self.concat(self.expand1x1_activation(self.expand1x1(s)),
                          self.expand3x3_activation(self.expand3x3(s)))
        return self.add(x, out) if self.bypass else out


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class SqueezeNet(nn.Module):
    def __init__(self, *, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5,
                 bypass: bool = False, small_input: bool = False):
        super().__init__()
        self.num_classes = num_classes
        stride = 1 if small_input else 2
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=stride), nn.ReLU(inplace=True), _pool(),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64, bypass),
                Fire(128, 32, 128, 128), _pool(),
                Fire(256, 32, 128, 128, bypass),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192, bypass),
                Fire(384, 64, 256, 256), _pool(),
                Fire(512, 64, 256, 256, bypass),
            )
        elif version == "1_1":
            if bypass:
                raise ValueError("the simple bypass variant is defined for SqueezeNet 1.0")
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=stride), nn.ReLU(inplace=True), _pool(),
                Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), _pool(),
                Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), _pool(),
                Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"unsupported SqueezeNet version {version!r}; valid: 1_0, 1_1")
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is final_conv:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
        if small_input:
            # A ReLU follows the classifier conv. From a zero bias, SGD drove every class score
            # to zero within the first CIFAR-10 epoch and training stalled at loss ln(10)
            # (measured at lr 0.01, 0.04 and 0.1); from 1 it learns at lr 0.04 (0.1 still stalls).
            nn.init.constant_(final_conv.bias, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


def squeezenet1_0(*, num_classes: int = 1000, dropout: float = 0.5, small_input: bool = False) -> SqueezeNet:
    return SqueezeNet(version="1_0", num_classes=num_classes, dropout=dropout, small_input=small_input)


def squeezenet1_1(*, num_classes: int = 1000, dropout: float = 0.5, small_input: bool = False) -> SqueezeNet:
    return SqueezeNet(version="1_1", num_classes=num_classes, dropout=dropout, small_input=small_input)


def squeezenet1_0_bypass(*, num_classes: int = 1000, dropout: float = 0.5,
                         small_input: bool = False) -> SqueezeNet:
    return SqueezeNet(version="1_0", num_classes=num_classes, dropout=dropout, bypass=True,
                      small_input=small_input)


add_entry("squeezenet1_0", squeezenet1_0,
          doc="SqueezeNet 1.0 (7x7 stem, 96 channels); torchvision keys; no width option.")
add_entry("squeezenet1_1", squeezenet1_1,
          doc="SqueezeNet 1.1 (3x3 stem, earlier pooling, ~2.4x fewer MACs than 1.0); torchvision keys.")
add_entry("squeezenet1_0_bypass", squeezenet1_0_bypass,
          doc="SqueezeNet 1.0 with simple bypass around fire3/5/7/9; squeezenet1_0's keys.")
