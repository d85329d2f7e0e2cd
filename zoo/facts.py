"""Model facts: parameters, multiply-accumulates and memory access cost, total and per layer.

Counted by forward hooks on every leaf module during one batch-1 forward pass. The zoo's
element-wise ops (residual add, SE multiply, concat, channel split and shuffle, pooling) are
leaf modules too (zoo.models._common), so their traffic is seen without tracing.

Conventions (all counts are in elements; multiply by the bytes per element for bytes):
- MACs: convolutions and linear layers only, ``out_h * out_w * c_out * (c_in / groups) * k_h * k_w``
  (what papers call FLOPs or mult-adds). Bias adds, BN, activations and pooling count 0.
- MAC cost (ShuffleNet V2's "memory access cost"): for a conv or linear layer, input elements +
  output elements + parameters (``h*w*(c_in + c_out) + weights`` for a 1x1 conv). Element-wise
  and data-movement ops are charged what they read plus what they write: add and multiply
  (both operands + result), concat (inputs + output), split (input + outputs), channel shuffle
  (input + output), pooling (input + output).
- BatchNorm and activations are assumed fused into the preceding conv, as every deployment
  runtime here does (``fused=True``, cost 0). ``fused=False`` charges them input + output
  (+ BN's four per-channel vectors), which is the eager-PyTorch view.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from edgebase.errors import ShapeError
from zoo.models._common import Add, ChannelShuffle, Concat, GlobalAvgPool, Mul, Split

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.SiLU, nn.Tanh,
                nn.GELU, nn.LeakyReLU, nn.PReLU)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, GlobalAvgPool)
_ELEMENTWISE = {Add: "add", Mul: "mul", Concat: "concat", Split: "split", ChannelShuffle: "shuffle"}
_NO_OPS = (nn.Identity, nn.Dropout, nn.Flatten)


@dataclass(frozen=True)
class LayerFacts:
    name: str  # module path, e.g. "stage2.0.branch2.3"
    kind: str  # conv | group conv | depthwise | pointwise | group pointwise | linear | pool | ...
    op: str  # module class name
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    mac_cost: int


@dataclass(frozen=True)
class ModelFacts:
    input_shape: tuple[int, ...]
    params: int
    macs: int
    mac_cost: int
    layers: tuple[LayerFacts, ...]
    fused: bool = True

    def by_kind(self) -> dict[str, dict[str, Any]]:
        """Per layer kind: count, params, MACs, MAC cost and their shares of the totals."""
        out: dict[str, dict[str, Any]] = {}
        for layer in self.layers:
            row = out.setdefault(layer.kind, {"count": 0, "params": 0, "macs": 0, "mac_cost": 0})
            row["count"] += 1
            row["params"] += layer.params
            row["macs"] += layer.macs
            row["mac_cost"] += layer.mac_cost
        for row in out.values():
            row["macs_share"] = row["macs"] / self.macs if self.macs else 0.0
            row["mac_cost_share"] = row["mac_cost"] / self.mac_cost if self.mac_cost else 0.0
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["macs"]))

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "input_shape": list(self.input_shape), "params": self.params, "macs": self.macs,
            "mac_cost": self.mac_cost, "fused": self.fused, "by_kind": self.by_kind(),
        }
        if layers:
            d["layers"] = [
                {**asdict(l), "input_shape": list(l.input_shape), "output_shape": list(l.output_shape)}
                for l in self.layers
            ]
        return d


def _numel(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (tuple, list)):
        return sum(_numel(t) for t in x)
    return 0


def _shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)) and x:
        return _shape(x[0])
    return ()


def conv_kind(m: nn.Conv2d) -> str:
    k = math.prod(m.kernel_size)
    if m.groups > 1 and m.groups == m.in_channels:
        return "depthwise"
    if k == 1:
        return "pointwise" if m.groups == 1 else "group pointwise"
    return "conv" if m.groups == 1 else "group conv"


def _layer(name: str, m: nn.Module, inputs: tuple, output: Any, fused: bool,
           counted: set[int]) -> LayerFacts | None:
    if isinstance(m, _NO_OPS):
        return None
    params = 0 if id(m) in counted else sum(p.numel() for p in m.parameters(recurse=False))
    counted.add(id(m))
    n_in, n_out = _numel(inputs), _numel(output)
    macs, cost = 0, n_in + n_out
    if isinstance(m, nn.Conv2d):
        kind = conv_kind(m)
        macs = n_out * (m.in_channels // m.groups) * math.prod(m.kernel_size)
        cost += params
    elif isinstance(m, nn.Linear):
        kind = "linear"
        macs = n_out * m.in_features
        cost += params
    elif isinstance(m, _POOLS):
        kind = "pool"
    elif type(m) in _ELEMENTWISE:
        kind = _ELEMENTWISE[type(m)]
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        kind = "batchnorm"  # unfused it reads scale, shift and the running statistics
        stats = sum(b.numel() for b in (m.running_mean, m.running_var) if b is not None)
        cost = 0 if fused else cost + params + stats
    elif isinstance(m, _ACTIVATIONS):
        kind = "activation"
        cost = 0 if fused else cost
    else:  # an op this module does not know: charge its traffic, say what it is
        kind = type(m).__name__.lower()
    return LayerFacts(name, kind, type(m).__name__, _shape(inputs), _shape(output), params, macs, cost)


def model_facts(model: nn.Module, input_size: int | tuple[int, int] = 224, *,
                in_channels: int = 3, fused: bool = True) -> ModelFacts:
    """Count ``model`` on one (1, C, H, W) input on the model's device (``meta`` works)."""
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    names = {m: n for n, m in model.named_modules()}
    records: list[LayerFacts] = []
    counted: set[int] = set()

    def hook(m: nn.Module, inputs: tuple, output: Any) -> None:
        rec = _layer(names[m], m, inputs, output, fused, counted)
        if rec is not None:
            records.append(rec)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if next(m.children(), None) is None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, h, w, device=device))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ShapeError(f"a {h}x{w} input does not fit this model ({first}); try a larger "
                         f"--input-size") from err
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return ModelFacts(
        input_shape=(1, in_channels, h, w), params=params,
        macs=sum(r.macs for r in records), mac_cost=sum(r.mac_cost for r in records),
        layers=tuple(records), fused=fused,
    )


def entry_facts(entry, *, fused: bool = True) -> ModelFacts:
    """Facts of a registry entry at its input size (random weights: counts do not need them).

    Built and run on the CPU: a meta-device forward pass was measured 3-10x slower here."""
    return model_facts(entry.builder(**entry.kwargs), entry.input_size, fused=fused)
