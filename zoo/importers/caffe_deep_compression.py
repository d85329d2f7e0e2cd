"""Import Song Han's Deep Compression SqueezeNet 1.0 (``squeezenet_v1.0_deep_compression.net``).

The file (the SqueezeNet and Deep Compression papers' 660 KB model; its authors' ``decode.py``
defines it) holds, for the 26 convolutions in Caffe prototxt order (conv1; fire2..fire9 each
squeeze 1x1, expand 1x1, expand 3x3; conv_final):
  * 26 little-endian uint32 counts ``n`` of stored entries, all first; then per convolution
  * a 256-entry float32 codebook (entry 0 is 0.0), the float32 biases,
  * ``n`` uint8 codes, and ``ceil(n / 2)`` bytes of 4-bit relative position gaps (low nibble
    first): position = cumulative sum of (gap + 1) - 1; a gap over 15 is bridged by a stored
    entry with code 0 (a zero filler).
Weight layout is Caffe's (out, in, kh, kw), the same as PyTorch's. Every byte must be consumed,
every position must fall inside its layer, and every shape must fit torchvision's
``squeezenet1_0``: otherwise a one-line ``WeightsError``. numpy only; nothing is executed.

Caffe's ``conv_final`` has ``pad: 1``, torchvision's ``classifier.1`` none. The 1x1 conv's
padded border only adds a ring of ReLU(bias) values to the 13x13 map before the average pool;
on imagenet-sample-1k that moves top-1 by 0.1 point (the data folder's README: 62.4 % without
the padding, 62.5 % with it; this import in PyTorch: 62.5 % / 83.3 % top-5). The import keeps
torchvision's layer, so every exporter sees the standard graph, and records the fact.

Preprocessing is Caffe's: BGR, mean 104/117/123 in pixel units, no std, resize the short side
to 256, centre crop 227. It travels in the manifest, so ``runner eval`` needs no flags.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebase.errors import WeightsError
from edgebase.manifest import Preprocess

CODEBOOK = 256
# pixel units / 255 = the 0..1 units of Preprocess; std 1/255 undoes the x/255
CAFFE_PREPROCESS = Preprocess(resize=256, crop=227, mean=(104 / 255, 117 / 255, 123 / 255),
                              std=(1 / 255, 1 / 255, 1 / 255), interpolation="bilinear",
                              color="BGR")
SUFFIX = ".net"


@dataclass(frozen=True)
class SharedLayer:
    """One convolution as stored: codebook, biases, codes and the positions they fill."""

    codebook: np.ndarray  # float32 [256]
    bias: np.ndarray  # float32 [out]
    codes: np.ndarray  # uint8 [n]
    positions: np.ndarray  # int64 [n], indices into the flattened weight
    size: int  # weights in the layer (out * in * kh * kw)

    def weights(self) -> np.ndarray:
        flat = np.zeros(self.size, np.float32)
        flat[self.positions] = self.codebook[self.codes]
        return flat


def conv_layers(model) -> list[tuple[str, tuple[int, ...]]]:
    """(state-dict prefix, weight shape) of squeezenet1_0's convolutions in prototxt order."""
    import torch.nn as nn

    convs = [(name, tuple(m.weight.shape)) for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d)]
    # torchvision registers each Fire's squeeze, expand1x1, expand3x3 in that order, which is
    # the prototxt's conv1x1_1, conv1x1_2, conv3x3_2
    return convs


def read_layers(path: str | os.PathLike, shapes: list[tuple[int, ...]]) -> list[SharedLayer]:
    """Decode the file against the expected weight ``shapes`` (prototxt order)."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read ({e.strerror or e})") from None
    k = len(shapes)
    if len(buf) < 4 * k:
        raise WeightsError(f"{path}: {len(buf)} bytes, too short for {k} layer counts")
    counts = np.frombuffer(buf, "<u4", count=k).astype(np.int64)
    at, layers = 4 * k, []
    for i, shape in enumerate(shapes):
        out, size, n = shape[0], int(np.prod(shape)), int(counts[i])
        need = 4 * CODEBOOK + 4 * out + n + (n + 1) // 2
        if n > size or at + need > len(buf):
            raise WeightsError(f"{path}: layer {i + 1} of {k} (weights {shape}) claims {n} "
                               f"entries; the file ends or the layer holds only {size}")
        codebook = np.frombuffer(buf, "<f4", CODEBOOK, at).copy()
        at += 4 * CODEBOOK
        bias = np.frombuffer(buf, "<f4", out, at).copy()
        at += 4 * out
        codes = np.frombuffer(buf, np.uint8, n, at).copy()
        at += n
        packed = np.frombuffer(buf, np.uint8, (n + 1) // 2, at)
        at += (n + 1) // 2
        gaps = np.empty(2 * len(packed), np.int64)
        gaps[0::2], gaps[1::2] = packed & 0x0F, packed >> 4
        positions = np.cumsum(gaps[:n] + 1) - 1
        if n and positions[-1] >= size:
            raise WeightsError(f"{path}: layer {i + 1} of {k} places a weight at {positions[-1]}, "
                               f"past its {size} weights")
        if not np.all(np.isfinite(codebook)) or not np.all(np.isfinite(bias)):
            raise WeightsError(f"{path}: layer {i + 1} of {k} has non-finite codebook or biases")
        layers.append(SharedLayer(codebook, bias, codes, positions, size))
    if at != len(buf):
        raise WeightsError(f"{path}: {len(buf) - at} bytes left after {k} layers: not "
                           f"SqueezeNet 1.0's Deep Compression file")
    return layers


def load_into(model, path: str | os.PathLike) -> dict:
    """Fill torchvision-keyed ``squeezenet1_0`` from the file; returns facts for the manifest."""
    import torch

    convs = conv_layers(model)
    if len(convs) != 26:
        raise WeightsError(f"{Path(path).name} holds SqueezeNet 1.0's 26 convolutions; the "
                           f"model has {len(convs)}")
    layers = read_layers(path, [shape for _, shape in convs])
    state = {}
    for (name, shape), layer in zip(convs, layers):
        state[f"{name}.weight"] = torch.from_numpy(layer.weights().reshape(shape))
        state[f"{name}.bias"] = torch.from_numpy(layer.bias)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise WeightsError(f"{Path(path).name}: keys do not fit the model (missing "
                           f"{sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    total = sum(layer.size for layer in layers)
    stored = sum(len(layer.codes) for layer in layers)
    nonzero = sum(int(np.count_nonzero(layer.weights())) for layer in layers)
    return {"format": "caffe deep compression (8-bit shared weights, 4-bit sparse positions)",
            "layers": len(layers), "weights": total, "stored_entries": stored,
            "nonzero_weights": nonzero, "density": round(nonzero / total, 4),
            "conv_final_padding": "Caffe pads conv_final by 1, torchvision's classifier.1 "
                                  "by 0; kept 0 (0.1 point top-1 on imagenet-sample-1k)"}


def _register() -> None:
    from zoo.weights import register_importer

    register_importer("squeezenet1_0", SUFFIX, load_into,
                      entry_overrides={"preprocess": CAFFE_PREPROCESS, "labels": "imagenet"})


_register()
