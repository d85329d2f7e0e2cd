"""Pieces shared by the family modules: torchvision-style blocks and parameter-free op modules.

The element-wise ops (add, multiply, concat, split, channel shuffle, global pooling) are small
modules rather than inline expressions so that ``zoo.facts`` sees them through forward hooks
and can charge their memory traffic. They hold no parameters, so state-dict keys stay exactly
torchvision's.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from edgebase.errors import ConfigError
from zoo.registry import IMAGENET, ModelEntry, register

# What `small_input=True` does, per family; recorded as ModelEntry.adaptation by the
# registrations of 32x32 (CIFAR) variants. Every adaptation keeps the state-dict keys.
SMALL_INPUT: dict[str, str] = {}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision/TF rounding: nearest multiple of ``divisor``, never below 90 % of ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_bn_act(
    c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
    act: Callable[..., nn.Module] | None = nn.ReLU6, bn_eps: float = 1e-5,
    bn_momentum: float = 0.1, dilation: int = 1,
) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: keys ``.0`` conv (no bias), ``.1`` BN, ``.2`` act."""
    padding = (kernel_size - 1) // 2 * dilation
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel_size, stride, padding, dilation=dilation, groups=groups,
                  bias=False),
        nn.BatchNorm2d(c_out, eps=bn_eps, momentum=bn_momentum),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def set_stride(conv: nn.Conv2d, stride: int) -> None:
    """Change a conv's stride in place (CIFAR adaptations); weights and keys are untouched."""
    conv.stride = (stride, stride)


class Add(nn.Module):
    """Residual addition ``a + b``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Mul(nn.Module):
    """Broadcast multiply (squeeze-and-excitation scaling)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Concat(nn.Module):
    """Channel concatenation."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=1)


class Split(nn.Module):
    """Split the channels in two halves (ShuffleNet V2's channel split)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return x.chunk(2, dim=1)


class ChannelShuffle(nn.Module):
    """(N, g*c, H, W) -> view (N, g, c, H, W) -> transpose -> (N, c*g, H, W), as torchvision."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.size()
        x = x.view(n, self.groups, c // self.groups, h, w)
        x = torch.transpose(x, 1, 2).contiguous()
        return x.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class GlobalAvgPool(nn.Module):
    """``x.mean([2, 3])``: global average pooling straight to (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean([2, 3])


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def check_choice(name: str, value: Any, valid) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value} is not supported; valid: {', '.join(map(str, valid))}")


def add_entry(
    name: str, builder: Callable[..., nn.Module], *, doc: str, width_kwarg: str | None = None,
    **kwargs: Any,
) -> ModelEntry:
    """Register an ImageNet-shaped (1000 classes, 224x224) random-init entry."""
    return register(ModelEntry(
        name=name, arch=name, builder=builder, kwargs={"num_classes": 1000, **kwargs},
        preprocess=IMAGENET, labels="imagenet", weights=None, width_kwarg=width_kwarg, doc=doc,
    ))
