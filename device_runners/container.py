"""The Deep Compression container (``.edc``) and its decoder: numpy and the standard library.

A container carries a model file (and its companions, e.g. OpenVINO's ``.bin``) with the
weight tensors of the compressed layers cut out, and those weights as Deep Compression
stores them: per layer a codebook of at most 256 values (entry 0 is 0.0), the codebook index
of every stored entry and the relative position of each entry in the flattened tensor, both
streams Huffman-coded. Decoding rebuilds every tensor, splices its bytes back where they were
cut, and checks each file's sha256: the result is the exact file the host exported, in any
format, because the cuts are byte ranges, not format-specific edits.

Layout (little-endian)::

    b"EDCZ" | u16 version | u32 header length | header (zlib of UTF-8 JSON) | blob

The header lists the ``files`` (name, size, sha256, the zlib-compressed skeleton's place in
the blob, the ``holes`` cut from it: offset in the file and layer index) and the ``layers``
(name, shape as stored, ``perm`` from PyTorch's axes to it, count of stored entries, the
Huffman code lengths, and the places in the blob of the codebook and streams). A codebook
holds 0.0 and the layer's distinct non-zero values in ascending order (a channel-scaled
layer's: its shared values before scaling, in any order; at most 256 entries;
version 1 padded every codebook to 256 entries, version 2 stores only those in use). Positions are
"sparse" -- ``gap`` = zeros skipped before an entry, ``gap_bits`` wide; a run of zeros longer
than the widest gap is bridged by stored entries of code 0 (value 0.0), as in Han et al. -- or
"dense" for layers pruning left mostly dense: a code for every weight and no gap stream.
Version 3 adds channel-scaled layers: ``scales`` (the place in the blob of one float16 per
output channel) and ``scale_axis`` (that axis in the stored shape); each weight is then
``codebook[code] * scale`` in float32, the codebook holding the shared values before scaling. It
also adds ``"dtype": "int8"`` layers, the weights of an int8 file: an int8 codebook (entry 0
is 0) and no scales (the file keeps its own quantization scales).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgebase.errors import ModelFileError
from edgebase.files import atomic_path
from device_runners import huffman

MAGIC = b"EDCZ"
VERSION = 2
VERSION_3 = 3  # written only by containers that have channel-scaled or int8 layers
# version 1 always stored 256 codebook entries; 2 stores the entries in use; 3 adds
# channel-scaled and int8 layers
READS = (1, 2, 3)
SUFFIX = ".edc"
CODEBOOK = 256  # most entries a codebook may have (8-bit codes)
# what a container may make the runner allocate: its files decoded at most MAX_RATIO times its
# own size (Deep Compression reaches 5-50x) and MAX_DECODED_BYTES in all
MAX_RATIO = 1024
MAX_DECODED_BYTES = 1 << 31
DTYPES = {"float32": np.dtype("<f4"), "int8": np.dtype("i1")}  # a layer's "dtype", as stored
# what a damaged header's values raise when used (a missing key, a list for a number, ...)
HEADER_ERRORS = (KeyError, TypeError, ValueError, OverflowError, AttributeError, IndexError)


@dataclass(frozen=True)
class Container:
    path: Path
    header: dict[str, Any]
    blob: bytes

    def piece(self, where: dict[str, int]) -> bytes:
        start, length = int(where["at"]), int(where["bytes"])
        if start < 0 or length < 0 or start + length > len(self.blob):
            raise ModelFileError(f"{self.path}: a stream lies outside the container "
                                 f"(truncated or damaged)")
        return self.blob[start:start + length]


def read(path: str | os.PathLike) -> Container:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) < 10 or data[:4] != MAGIC:
        raise ModelFileError(f"{path}: not an edgedeploy Deep Compression container "
                             f"(no {MAGIC.decode()} magic)")
    version, length = struct.unpack_from("<HI", data, 4)
    if version not in READS:
        raise ModelFileError(f"{path}: container version {version}; this runner reads "
                             f"versions {', '.join(map(str, READS))}")
    if 10 + length > len(data):
        raise ModelFileError(f"{path}: truncated container (header of {length} bytes)")
    try:
        header = json.loads(zlib.decompress(data[10:10 + length]).decode("utf-8"))
        files, layers = header["files"], header["layers"]
        if not isinstance(files, list) or not isinstance(layers, list):
            raise ValueError("files and layers must be lists")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, zlib.error) as e:
        raise ModelFileError(f"{path}: damaged container header ({e})") from None
    return Container(path, header, data[10 + length:])


def decode_layer(c: Container, layer: dict[str, Any]) -> np.ndarray:
    """The dense tensor of one layer (float32, or int8), shaped and ordered as its bytes lie
    in the file
    (``perm`` says how that order relates to PyTorch's axes)."""
    try:
        shape = tuple(int(d) for d in layer["shape"])
        perm = tuple(int(a) for a in layer["perm"])
        count, dense = int(layer["count"]), layer["positions"] == "dense"
        size = math.prod(shape)
        if sorted(perm) != list(range(len(shape))) or min(shape, default=1) < 0 \
                or not 0 <= count <= size or (dense and count != size):
            raise ValueError("bad shape, perm or count")
        largest = max(int(f["size"]) for f in c.header["files"])
        dtype = layer_dtype(layer)
        if dtype.itemsize * size > largest:  # its bytes are spliced into one of the files
            raise ValueError(f"{size} values do not fit in a file of {largest} bytes")
        codebook = np.frombuffer(c.piece(layer["codebook"]), dtype)
        code_len = np.asarray(layer["code_lengths"], np.int64)
        if not 1 <= len(codebook) <= CODEBOOK or len(code_len) != len(codebook):
            raise ValueError("codebook or code table of the wrong size")
        codes = huffman.decode(c.piece(layer["codes"]), code_len, count)
        if dense:
            positions = np.arange(size)
        else:
            gap_bits = int(layer["gap_bits"])
            gap_len = np.asarray(layer["gap_lengths"], np.int64)
            if not 1 <= gap_bits <= 16 or len(gap_len) != 1 << gap_bits:
                raise ValueError("gap table of the wrong size")
            gaps = huffman.decode(c.piece(layer["gaps"]), gap_len, count)
            positions = np.cumsum(gaps + 1) - 1
        scales = _scales(c, layer, shape)
    except HEADER_ERRORS as e:  # HuffmanError is a ValueError
        name = layer.get("name", "?") if isinstance(layer, dict) else "?"
        raise ModelFileError(f"{c.path}: layer {name!r} cannot be decoded ({e})") from None
    if count and positions[-1] >= size:
        raise ModelFileError(f"{c.path}: layer {layer['name']!r} places a weight past its "
                             f"{size} values")
    flat = np.zeros(size, dtype)
    flat[positions] = codebook[codes]
    if scales is None:
        return flat.reshape(shape)
    return (flat.reshape(shape) * scales).astype(np.float32)


def layer_dtype(layer: dict[str, Any]) -> np.dtype:
    name = layer.get("dtype", "float32")
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}; this runner reads {', '.join(DTYPES)}")
    return DTYPES[name]


def _scales(c: Container, layer: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray | None:
    """A channel-scaled layer's scales, shaped to multiply its stored tensor (or None)."""
    if "scales" not in layer:
        return None
    if layer.get("dtype", "float32") != "float32":
        raise ValueError("scales on a layer that is not float32")
    axis = int(layer["scale_axis"])
    if not 0 <= axis < len(shape):
        raise ValueError(f"scale axis {axis} of a {len(shape)}-D tensor")
    scales = np.frombuffer(c.piece(layer["scales"]), "<f2").astype(np.float32)
    if len(scales) != shape[axis] or not np.isfinite(scales).all():
        raise ValueError(f"{len(scales)} scales (finite) for {shape[axis]} channels expected")
    return scales.reshape([-1 if a == axis else 1 for a in range(len(shape))])


def unpack(path: str | os.PathLike | Container, out_dir: str | os.PathLike) -> list[Path]:
    """Materialise the container's files in ``out_dir``; each is checked against its sha256
    before it appears under its name (written to a temporary name, then renamed)."""
    c = path if isinstance(path, Container) else read(path)
    try:
        return _unpack(c, Path(out_dir))
    except HEADER_ERRORS as e:
        raise ModelFileError(f"{c.path}: damaged container header ({type(e).__name__}: "
                             f"{e})") from None


def _check_sizes(c: Container) -> None:
    """Refuse, before allocating, a header that claims more than the container can hold."""
    sizes = [int(f["size"]) for f in c.header["files"]]
    limit = min(MAX_DECODED_BYTES, MAX_RATIO * max(len(c.blob), 1))
    if min(sizes, default=0) < 0 or sum(sizes) > limit:
        raise ModelFileError(f"{c.path}: its files would decode to {sum(sizes):,} bytes, more "
                             f"than this runner accepts from a {len(c.blob):,}-byte container "
                             f"({limit:,}); the container is damaged")
    try:
        weights = sum(layer_dtype(layer).itemsize * math.prod(int(d) for d in layer["shape"])
                      for layer in c.header["layers"])
    except ValueError as e:
        raise ModelFileError(f"{c.path}: {e}") from None
    if weights > sum(sizes):
        raise ModelFileError(f"{c.path}: its layers hold {weights:,} bytes of weights, more "
                             f"than its files' {sum(sizes):,} bytes; the container is damaged")


def _unpack(c: Container, out_dir: Path) -> list[Path]:
    _check_sizes(c)
    tensors = [decode_layer(c, layer).tobytes() for layer in c.header["layers"]]
    written = []
    for f in c.header["files"]:
        name = Path(str(f.get("name", "")))
        if name.name != str(name) or name.name in ("", ".", ".."):
            raise ModelFileError(f"{c.path}: unsafe file name {str(name)!r} in the container")
        size = int(f["size"])
        try:  # never inflate past the file's own size (a zlib stream can expand 1000-fold)
            skeleton = zlib.decompressobj().decompress(c.piece(f["skeleton"]), size + 1)
        except zlib.error as e:
            raise ModelFileError(f"{c.path}: damaged skeleton of {name} ({e})") from None
        if len(skeleton) > size:
            raise ModelFileError(f"{c.path}: the skeleton of {name} is larger than the file "
                                 f"({size:,} bytes); the container is damaged")
        holes = []
        for hole in sorted(f["holes"], key=lambda h: int(h["offset"])):
            i, offset = int(hole["layer"]), int(hole["offset"])
            if not 0 <= i < len(tensors):
                raise ModelFileError(f"{c.path}: {name} refers to layer {i}, which is missing")
            holes.append((offset, tensors[i]))
        data = _splice(skeleton, holes, c.path, name)
        if len(data) != size or hashlib.sha256(data).hexdigest() != f["sha256"]:
            raise ModelFileError(f"{c.path}: {name} does not match its sha256 after decoding "
                                 f"(damaged container)")
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / name
        with atomic_path(target) as tmp:
            Path(tmp).write_bytes(data)
        written.append(target)
    return written


def _splice(skeleton: bytes, holes: list[tuple[int, bytes]], where: Path, name) -> bytes:
    """Put each tensor's bytes back at its offset of the original file."""
    out, read_at, file_at = [], 0, 0
    for offset, tensor in holes:
        gap = offset - file_at
        if gap < 0 or read_at + gap > len(skeleton):
            raise ModelFileError(f"{where}: holes of {name} overlap or lie past its end")
        out.append(skeleton[read_at:read_at + gap])
        out.append(tensor)
        read_at += gap
        file_at = offset + len(tensor)
    out.append(skeleton[read_at:])
    return b"".join(out)


def describe(path: str | os.PathLike | Container) -> dict[str, Any]:
    """Sizes and layers, without decoding: what ``runner`` reports beside its timings."""
    c = path if isinstance(path, Container) else read(path)
    return {"container_bytes": c.path.stat().st_size,
            "files": [{"name": f["name"], "size_bytes": f["size"], "sha256": f["sha256"]}
                      for f in c.header["files"]],
            "decoded_bytes": sum(int(f["size"]) for f in c.header["files"]),
            "layers": len(c.header["layers"]),
            "stored_entries": sum(int(layer["count"]) for layer in c.header["layers"])}


@contextlib.contextmanager
def materialized(path: str | os.PathLike):
    """Yield (model file, container facts): for a container, its files decoded into a private
    temporary folder for the duration (facts: sizes and decode time); any other file as is,
    with facts None. ``runner bench`` and ``runner eval`` take containers through this."""
    path = Path(path)
    if path.suffix.lower() != SUFFIX:
        yield path, None
        return
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".edc-") as tmp:
        c = read(path)  # once: decoded and described from the same bytes
        files = unpack(c, tmp)
        facts = {**describe(c), "decode_ms": (time.perf_counter() - t0) * 1e3}
        yield files[0], facts

