"""BatchNorm folded into the convolution it follows, found on the model's traced graph.

``torch.fx.experimental.optimization.fuse`` traces into every module outside ``torch.nn`` and
fuses only modules whose type *is* ``nn.Conv2d``: a Conv2d subclass with its own forward (the
TF "SAME" padding of Google's MobileNetV1, whose forward reads the input's shape) either breaks
the trace or is skipped. Here every Conv2d (subclasses too) and BatchNorm2d is a leaf of the
trace, the folded weights go into the conv module itself (its class and forward stay) and the
BatchNorm becomes Identity, so the copy keeps every module name of the original.
"""
from __future__ import annotations

import collections
import copy


def fold_batchnorm_graph(model, *, untraceable: str = "raise"):
    """A copy of ``model`` in eval mode with every BatchNorm2d whose input is a Conv2d's output
    (and that conv's only use) folded into the conv; a conv or BatchNorm module called at more
    than one place in the forward is left as it is. A model whose forward cannot be traced:
    ``untraceable="raise"`` raises what tracing raised; ``"sequential"`` folds the pairs that
    sit next to each other in an ``nn.Sequential`` instead."""
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    model = copy.deepcopy(model).eval()
    try:
        pairs = _traced_pairs(model)
    except Exception:  # noqa: BLE001 - tracing fails on data-dependent control flow
        if untraceable != "sequential":
            raise
        pairs = _sequential_pairs(model)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = modules[conv_name], modules[bn_name]
            if not bn.track_running_stats or bn.running_mean is None:
                continue  # batch statistics at inference: nothing fixed to fold
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                                bn.running_var, bn.eps, bn.weight, bn.bias)
            conv.weight, conv.bias = weight, bias
            parent, _, leaf = bn_name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, nn.Identity())
    return model


def _traced_pairs(model) -> list[tuple[str, str]]:
    from torch import fx, nn

    class _Tracer(fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return (isinstance(m, (nn.Conv2d, nn.BatchNorm2d))
                    or super().is_leaf_module(m, qualname))

    graph = _Tracer().trace(model)
    modules = dict(model.named_modules())
    calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d):
            continue
        src = node.args[0]
        # folding changes the modules themselves: only where each is called once
        if (isinstance(src, fx.Node) and src.op == "call_module"
                and isinstance(modules[src.target], nn.Conv2d) and len(src.users) == 1
                and calls[src.target] == 1 and calls[node.target] == 1):
            pairs.append((src.target, node.target))
    return pairs


def _sequential_pairs(model) -> list[tuple[str, str]]:
    from torch import nn

    pairs = []
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                if (isinstance(module._modules[a], nn.Conv2d)
                        and isinstance(module._modules[b], nn.BatchNorm2d)):
                    dot = f"{prefix}." if prefix else ""
                    pairs.append((dot + a, dot + b))
    return pairs
