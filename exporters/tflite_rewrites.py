"""Export-only graph rewrites that let litert-torch keep a whole CNN in NHWC.

litert-torch runs convolutions in NHWC and inserts a TRANSPOSE pair wherever an op has no NHWC
form. Two ops of compact nets have none as PyTorch writes them:

* channel shuffle, ``view(n, g, c/g, h, w) -> transpose(1, 2) -> view(n, c, h, w)``: a 5-D
  view in NCHW order. Rewritten as the same permutation in NHWC order,
  ``permute(0,2,3,1) -> reshape(n, h, w, g, c/g) -> transpose(3, 4) -> reshape(n, h, w, c)
  -> permute(0,3,1,2)``; the outer permutes cancel against the converter's own layout
  transposes, leaving RESHAPE, one innermost-axes TRANSPOSE (the shuffle itself), RESHAPE.
* global average pooling ``mean([2, 3])`` straight to (N, C): the 2-D result has no layout,
  so the 4-D input is transposed back to NCHW first. Rewritten as ``mean([2, 3],
  keepdim=True)`` then a view to (N, C); the (N, 1, 1, C) view is a plain RESHAPE.

When the shuffled tensor is a concatenation of ``groups`` equal parts (ShuffleNet V2's
``shuffle(cat(x1, branch(x2)))``), the shuffle just interleaves the parts, so concat and
shuffle become one ``stack`` on a new innermost axis (TFLite PACK) and a RESHAPE: no
TRANSPOSE at all.

Both are pure data movement or the same reduction, so the outputs are the PyTorch model's
(validation checks that on every export). The rewrites work on the graph of
``torch.export``, not on the modules, so the model's state-dict keys never change and any
model written this way benefits, not only the zoo's classes.
"""
from __future__ import annotations

from typing import Any

import torch

aten = torch.ops.aten
_VIEWS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
_COPIES = {aten.contiguous.default, aten.clone.default}


def _shape(node) -> tuple[int, ...] | None:
    val = node.meta.get("val") if hasattr(node, "meta") else None
    return tuple(int(d) for d in val.shape) if hasattr(val, "shape") else None


def _is(node, targets) -> bool:
    return isinstance(node, torch.fx.Node) and node.op == "call_function" and node.target in targets


def _match_shuffle(end) -> tuple[Any, ...] | None:
    """For the final view of a channel shuffle, return (x, nodes to drop, groups)."""
    if not _is(end, _VIEWS):
        return None
    src, copy = end.args[0], None
    if _is(src, _COPIES):
        copy, src = src, src.args[0]
    if _is(src, {aten.transpose.int}):
        if sorted(d % 5 for d in src.args[1:3]) != [1, 2]:
            return None
    elif _is(src, {aten.permute.default}):
        if [d % 5 for d in src.args[1]] != [0, 2, 1, 3, 4]:
            return None
    else:
        return None
    split = src.args[0]
    if not _is(split, _VIEWS):
        return None
    x = split.args[0]
    xs, ss, es = _shape(x), _shape(split), _shape(end)
    if xs is None or ss is None or len(xs) != 4 or len(ss) != 5 or es != xs:
        return None
    n, c, h, w = xs
    if ss[0] != n or ss[3:] != (h, w) or ss[1] * ss[2] != c:
        return None
    # the intermediate nodes must feed nothing else, or dropping them would change the graph
    chain = [n_ for n_ in (copy, src, split) if n_ is not None]
    if any(len(node.users) != 1 for node in chain):
        return None
    return x, (end, *chain), ss[1]


def _interleavable(x, groups) -> list | None:
    """The inputs of ``x = cat(inputs, dim=1)`` when shuffling ``x`` just interleaves them."""
    if not _is(x, {aten.cat.default}) or len(x.users) != 1:
        return None
    parts = list(x.args[0])
    dim = x.args[1] if len(x.args) > 1 else x.kwargs.get("dim", 0)
    shapes = [_shape(p) for p in parts]
    if dim % 4 != 1 or len(parts) != groups or None in shapes or len(set(shapes)) != 1:
        return None
    return parts


def _rewrite_shuffle(graph, end, x, dropped, groups) -> str:
    n, c, h, w = _shape(x)
    parts = _interleavable(x, groups)
    with graph.inserting_before(end):
        if parts is not None:
            # shuffle(cat(a, b)) interleaves a and b: one PACK on the channel axis replaces
            # CONCATENATION + RESHAPE + TRANSPOSE + RESHAPE
            nhwc = [graph.call_function(aten.permute.default, (p, [0, 2, 3, 1])) for p in parts]
            y = graph.call_function(aten.stack.default, (nhwc, 4))
            kind = "concat_shuffle"
        else:
            y = graph.call_function(aten.permute.default, (x, [0, 2, 3, 1]))
            y = graph.call_function(aten.reshape.default, (y, [n, h, w, groups, c // groups]))
            y = graph.call_function(aten.permute.default, (y, [0, 1, 2, 4, 3]))
            kind = "channel_shuffle"
        y = graph.call_function(aten.reshape.default, (y, [n, h, w, c]))
        y = graph.call_function(aten.permute.default, (y, [0, 3, 1, 2]))
    y.meta["val"] = end.meta["val"]
    end.replace_all_uses_with(y)
    for node in dropped:  # end first, then its now unused producers
        graph.erase_node(node)
    if parts is not None:
        graph.erase_node(x)
    return kind


def _rewrite_mean(graph, node) -> bool:
    if not _is(node, {aten.mean.dim}):
        return False
    shape = _shape(node.args[0])
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if shape is None or len(shape) != 4 or keepdim or node.kwargs.get("dtype") is not None:
        return False
    if sorted(d % 4 for d in node.args[1]) != [2, 3]:
        return False
    with graph.inserting_before(node):
        kept = graph.call_function(aten.mean.dim, (node.args[0], [2, 3], True))
        flat = graph.call_function(aten.view.default, (kept, [shape[0], shape[1]]))
    flat.meta["val"] = node.meta["val"]
    node.replace_all_uses_with(flat)
    graph.erase_node(node)
    return True


def nhwc_friendly(model: torch.nn.Module, example: torch.Tensor) -> tuple[torch.nn.Module, dict]:
    """A graph module computing ``model`` with the rewrites above, and what was rewritten."""
    program = torch.export.export(model, (example,))
    gm = program.module()
    graph = gm.graph
    counts = {"channel_shuffle": 0, "concat_shuffle": 0, "global_mean": 0}
    for node in list(graph.nodes):
        match = _match_shuffle(node)
        if match is not None:
            counts[_rewrite_shuffle(graph, node, *match)] += 1
        elif _rewrite_mean(graph, node):
            counts["global_mean"] += 1
    graph.lint()
    gm.recompile()
    # the exported graph already holds eval-mode semantics (BatchNorm with running stats);
    # mark it so (its eval() is not implemented) so converters do not warn about training mode
    for module in gm.modules():
        module.training = False
    return gm, counts
