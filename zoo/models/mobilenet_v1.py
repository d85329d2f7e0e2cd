"""MobileNet V1 (Howard et al., 2017), width multiplier alpha, any resolution.

torchvision has no MobileNet V1, so the keys are chosen to map one-to-one onto the TF-slim
reference layers: ``features.0`` is Conv2d_0 (3x3, stride 2), then each depthwise-separable
block is two entries, ``features.{2i-1}`` = Conv2d_i_depthwise and ``features.{2i}`` =
Conv2d_i_pointwise (i = 1..13); inside each, ``.0`` conv (no bias), ``.1`` BN, ``.2`` ReLU6.
The head is ``classifier.1`` (Linear after Dropout), as MobileNet V2's.

Channels follow TF-slim: ``max(int(c * alpha), 8)``. ``tf_padding=True`` reproduces TF's
'SAME' padding (for stride 2 on even sizes it pads only bottom/right) and TF's BN epsilon
1e-3, so TF/TFLite weights imported into this module compute the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.models._common import SMALL_INPUT, add_entry, check_positive, set_stride
from zoo.models.mobilenet_v2 import init_mobilenet

SMALL_INPUT["mobilenet_v1"] = "stem conv stride 2->1 (32x32 input, total stride 16, 2x2 final map)"

# (stride, output channels) of the 13 depthwise-separable blocks
BLOCKS = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
          (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024)]
WIDTHS = (1.0, 0.75, 0.5, 0.25)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size at run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1],
                                 self.dilation[::-1]):
            # a Python int: TorchScript tracing (openvino.convert_model) would otherwise record
            # the shape arithmetic as ~40 ops per conv instead of folding constant pads
            size = int(size)
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation,
                        self.groups)


def _layer(c_in: int, c_out: int, k: int, stride: int, groups: int, tf_padding: bool) -> nn.Sequential:
    if tf_padding:
        conv = Conv2dSame(c_in, c_out, k, stride, 0, groups=groups, bias=False)
    else:
        conv = nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False)
    bn = nn.BatchNorm2d(c_out, eps=1e-3 if tf_padding else 1e-5)
    return nn.Sequential(conv, bn, nn.ReLU6(inplace=True))


class MobileNetV1(nn.Module):
    def __init__(self, *, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 small_input: bool = False, tf_padding: bool = False, min_depth: int = 8):
        super().__init__()
        check_positive("width_mult", width_mult)

        def depth(c: int) -> int:
            return max(int(c * width_mult), min_depth)

        c_in = depth(32)
        layers = [_layer(3, c_in, 3, 2, 1, tf_padding)]
        for stride, c in BLOCKS:
            c_out = depth(c)
            layers.append(_layer(c_in, c_in, 3, stride, c_in, tf_padding))  # depthwise
            layers.append(_layer(c_in, c_out, 1, 1, 1, tf_padding))  # pointwise
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.last_channel = c_in
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(c_in, num_classes))
        if small_input:
            set_stride(self.features[0][0], 1)
        init_mobilenet(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)


def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 small_input: bool = False, tf_padding: bool = False) -> MobileNetV1:
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, dropout=dropout,
                       small_input=small_input, tf_padding=tf_padding)


for _w in WIDTHS:
    _tag = f"x{_w:g}".replace(".", "_") if _w != 1.0 else "x1_0"
    add_entry(
        f"mobilenet_v1_{_tag}", mobilenet_v1, width_kwarg="width_mult", width_mult=_w,
        doc=f"MobileNet V1, width multiplier alpha={_w} (--width sets width_mult, any > 0); "
            "ReLU6, PyTorch padding unless tf_padding=True.",
    )
