"""Write a Deep Compression container (``.edc``, format in ``device_runners.container``).

``write_container(files, layers, out)`` takes the exported model file(s) as bytes and, per
compressed layer, its dense weights (float32, or an int8 file's int8; at most 255 distinct
non-zero values) or its channel-scaled factors (``quant.weight_sharing.SharedLayer``:
codebook, codes, a float16 scale per output channel). Each layer's bytes are found in the
files by exact search, in the layouts exporters write (PyTorch's OIHW, TFLite's OHWI and
depthwise 1HWO), and cut out; the container stores the
rest of the file (zlib) and the layer as a codebook, Huffman-coded codebook indices and
Huffman-coded relative positions. ``device_runners.container.unpack`` gives back the files
bit for bit (checked by sha256).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path
from typing import Mapping

import numpy as np

from edgebase.errors import ConfigError
from edgebase.files import write_bytes_atomic
from device_runners import huffman
from device_runners.container import CODEBOOK, DTYPES, MAGIC, VERSION, VERSION_3

# byte orders a 4-D conv weight is stored in: PyTorch/ONNX/OpenVINO OIHW, TFLite OHWI,
# TFLite depthwise 1HWC (the I axis of a depthwise OIHW weight is 1)
PERMS_4D = ((0, 1, 2, 3), (0, 2, 3, 1), (1, 2, 3, 0))


def codebook_of(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codebook in ``w``'s dtype, float32 or int8: 0 then the distinct non-zero values
    ascending, code per element of ``w``)."""
    flat = np.ascontiguousarray(w).reshape(-1)
    values = np.unique(flat[flat != 0])
    if len(values) > CODEBOOK - 1:
        raise ConfigError(f"{len(values)} distinct non-zero weights; weight sharing allows "
                          f"at most {CODEBOOK - 1} per layer")
    book = np.zeros(1 + len(values), flat.dtype)
    book[1:] = values
    codes = np.zeros(len(flat), np.int64)
    nz = flat != 0
    codes[nz] = np.searchsorted(values, flat[nz]) + 1
    return book, codes


def compact(book: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codebook of the entries in use, entry 0 kept, codes renumbered to it)."""
    used = np.union1d([0], np.unique(codes))
    if len(used) > CODEBOOK:
        raise ConfigError(f"{len(used)} codebook entries in use; at most {CODEBOOK} per layer")
    return np.asarray(book, np.float32)[used], np.searchsorted(used, codes)


def sparse_entries(codes: np.ndarray, gap_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, gaps) of the stored entries: every non-zero, plus a code-0 filler wherever a
    run of zeros is longer than the widest gap."""
    widest = (1 << gap_bits) - 1
    nz = np.flatnonzero(codes)
    out_codes, out_gaps, last = [], [], -1
    for p in nz.tolist():
        gap = p - last - 1
        while gap > widest:  # a filler: value 0 at the position `widest` zeros on
            out_codes.append(0)
            out_gaps.append(widest)
            gap -= widest + 1
        out_codes.append(int(codes[p]))
        out_gaps.append(gap)
        last = p
    return np.asarray(out_codes, np.int64), np.asarray(out_gaps, np.int64)


def _cheaper_positions(codes: np.ndarray, symbols: int, gap_bits: int, put) -> dict:
    """The smaller of two encodings of a layer's codes: "sparse" (the non-zeros and their
    Huffman-coded gaps) or "dense" (a code for every weight, 0 for zero; no gap stream), which
    wins for layers that pruning left mostly dense, where a gap of 0 is nearly certain and
    costs Huffman a whole bit. Also returns how many entries the sparse form stores."""
    counts = np.bincount(codes, minlength=symbols)
    dense_len = huffman.code_lengths(counts)
    dense_bits = int((dense_len * counts).sum())
    sparse_codes, gaps = sparse_entries(codes, gap_bits)
    code_counts = np.bincount(sparse_codes, minlength=symbols)
    gap_counts = np.bincount(gaps, minlength=1 << gap_bits)
    code_len, gap_len = huffman.code_lengths(code_counts), huffman.code_lengths(gap_counts)
    sparse_bits = int((code_len * code_counts).sum() + (gap_len * gap_counts).sum())
    if dense_bits <= sparse_bits:
        return {"positions": "dense", "count": len(codes), "code_lengths": dense_len.tolist(),
                "codes": put(huffman.encode(codes, dense_len))}, len(sparse_codes)
    return {"positions": "sparse", "count": len(sparse_codes), "gap_bits": gap_bits,
            "code_lengths": code_len.tolist(), "gap_lengths": gap_len.tolist(),
            "codes": put(huffman.encode(sparse_codes, code_len)),
            "gaps": put(huffman.encode(gaps, gap_len))}, len(sparse_codes)


def fixed_width_bytes(size: int, stored: int, book: int, gap_bits: int, value_bytes: int = 4
                      ) -> tuple[float, float]:
    """What a layer would take before Huffman coding, as in the paper's table: (after pruning:
    its values (float32 or int8) with ``gap_bits`` relative positions, or all values if
    smaller; after sharing: the codebook plus fixed-width codes with those positions, or dense
    codes)."""
    code_bits = max(1, int(np.ceil(np.log2(book))))
    value_bits = 8 * value_bytes
    pruned = min(value_bits * size, (value_bits + gap_bits) * stored) / 8
    shared = value_bytes * book + min(code_bits * size, (code_bits + gap_bits) * stored) / 8
    return pruned, shared


def locate(files: Mapping[str, bytes], w: np.ndarray, name: str) -> tuple[str, int, tuple]:
    """(file name, byte offset, perm) of the one place ``w``'s bytes (float32 or int8) occur."""
    perms = PERMS_4D if w.ndim == 4 else (tuple(range(w.ndim)),)
    found = []
    for perm in perms:
        needle = np.ascontiguousarray(np.transpose(w, perm), w.dtype.newbyteorder("<")).tobytes()
        for fname, data in files.items():
            at = data.find(needle)
            while at >= 0:
                found.append((fname, at, perm))
                at = data.find(needle, at + 1)
        if found:
            break
    if len(found) != 1:
        raise ConfigError(f"layer {name}: its {w.dtype} weights occur {len(found)} times in the "
                          f"exported file(s); a container needs exactly one place")
    return found[0]


def write_container(files: Mapping[str, bytes], layers: Mapping[str, object],
                    out: str | os.PathLike, gap_bits: int = 4) -> dict:
    """Write the container; returns size facts (bytes per part) for the manifest."""
    blob = bytearray()

    def put(data: bytes) -> dict[str, int]:
        where = {"at": len(blob), "bytes": len(data)}
        blob.extend(data)
        return where

    holes: dict[str, list[dict]] = {f: [] for f in files}
    entries, sizes = [], {"codebooks": 0, "scales": 0, "codes": 0, "gaps": 0}
    before_huffman = np.zeros(2)  # layers after pruning, after sharing (fixed-width codes)
    for index, (name, layer) in enumerate(layers.items()):
        scaled = hasattr(layer, "scales")
        if scaled and not (np.isfinite(layer.scales).all() and (layer.scales > 0).all()
                           and np.array_equal(layer.scales.astype(np.float16), layer.scales)):
            raise ConfigError(f"layer {name}: channel scales must be positive float16 values")
        w = layer.weights() if scaled else np.asarray(layer)
        dtype = next((k for k, v in DTYPES.items() if v == w.dtype), None)
        if dtype is None:
            raise ConfigError(f"layer {name}: {w.dtype} weights; a container stores "
                              f"{', '.join(DTYPES)}")
        fname, offset, perm = locate(files, w, name)
        holes[fname].append({"offset": offset, "layer": index, "bytes": w.nbytes})
        stored = np.transpose(w, perm)  # the order its bytes have in the file
        if scaled:
            book, codes = compact(layer.book, np.transpose(layer.codes, perm))
            codes = codes.reshape(-1)
        else:
            book, codes = codebook_of(stored)
        # shape as stored in the file; perm maps PyTorch's axes to it (for reading, not decoding)
        entry = {"name": name, "shape": list(stored.shape), "perm": list(perm),
                 "codebook": put(book.astype(DTYPES[dtype]).tobytes())}
        if dtype != "float32":
            entry["dtype"] = dtype
        if scaled:  # the output channels (PyTorch's axis 0) lie on axis perm.index(0)
            entry["scales"] = put(np.asarray(layer.scales, "<f2").tobytes())
            entry["scale_axis"] = list(perm).index(0)
            sizes["scales"] += entry["scales"]["bytes"]
        positions, sparse_count = _cheaper_positions(codes, len(book), gap_bits, put)
        entry.update(positions)
        entries.append(entry)
        before_huffman += fixed_width_bytes(codes.size, sparse_count, len(book), gap_bits,
                                            w.dtype.itemsize)
        before_huffman[1] += entry["scales"]["bytes"] if scaled else 0
        sizes["codebooks"] += entry["codebook"]["bytes"]
        sizes["codes"] += entry["codes"]["bytes"]
        sizes["gaps"] += entry["gaps"]["bytes"] if "gaps" in entry else 0
    file_entries, sizes["skeletons"] = [], 0
    for fname, data in files.items():
        cuts = sorted(holes[fname], key=lambda h: h["offset"])
        kept, at = [], 0
        for h in cuts:
            if h["offset"] < at:
                raise ConfigError(f"{fname}: two compressed layers share bytes")
            kept.append(data[at:h["offset"]])
            at = h["offset"] + h.pop("bytes")
        kept.append(data[at:])
        skeleton = put(zlib.compress(b"".join(kept), 9))
        sizes["skeletons"] += skeleton["bytes"]
        file_entries.append({"name": fname, "size": len(data),
                             "sha256": hashlib.sha256(data).hexdigest(),
                             "skeleton": skeleton, "holes": cuts})
    header = zlib.compress(json.dumps({"format": "edgedeploy deep compression container",
                                       "files": file_entries, "layers": entries},
                                      separators=(",", ":")).encode("utf-8"), 9)
    sizes["header"] = len(header)
    # the oldest version that describes it, so that runners without scales still read it
    version = VERSION_3 if sizes["scales"] or any("dtype" in e for e in entries) else VERSION
    data = MAGIC + struct.pack("<HI", version, len(header)) + header + bytes(blob)
    write_bytes_atomic(out, data)
    sizes["total"] = len(data)
    sizes["files"] = sum(len(d) for d in files.values())
    rest = len(data) - sizes["codebooks"] - sizes["scales"] - sizes["codes"] - sizes["gaps"]
    sizes["after_pruning"] = int(round(rest + before_huffman[0]))
    sizes["after_sharing"] = int(round(rest + before_huffman[1]))
    return sizes


def read_files(model: str | os.PathLike, companions: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The model file and its companions (same stem) as {name: bytes}."""
    model = Path(model)
    paths = [model] + [model.with_suffix(s) for s in companions]
    return {p.name: p.read_bytes() for p in paths}
