"""Canonical Huffman coding of small-alphabet symbol streams (numpy and the standard library).

A code is fully described by the bit length of each symbol's codeword (canonical order:
shorter codes first, then by symbol), so a container stores only those lengths. Codewords
are packed most-significant bit first. Decoding walks a lookup table indexed by the next
``max_len`` bits, one symbol per step.
"""
from __future__ import annotations

import heapq

import numpy as np

MAX_LEN = 24  # longest codeword allowed; streams here have at most a few million symbols


class HuffmanError(ValueError):
    """A damaged code table or stream."""


def code_lengths(counts: np.ndarray) -> np.ndarray:
    """Codeword length per symbol (0 for symbols that never occur) from symbol counts."""
    counts = np.asarray(counts, np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(len(counts), np.int64)
    if len(used) == 1:
        lengths[used[0]] = 1
        return lengths
    # heap of (weight, tie-break, symbols in the subtree)
    heap = [(int(counts[s]), i, [int(s)]) for i, s in enumerate(used)]
    heapq.heapify(heap)
    tick = len(heap)
    while len(heap) > 1:
        w1, _, a = heapq.heappop(heap)
        w2, _, b = heapq.heappop(heap)
        for s in a + b:
            lengths[s] += 1
        heapq.heappush(heap, (w1 + w2, tick, a + b))
        tick += 1
    if lengths.max(initial=0) > MAX_LEN:
        raise HuffmanError(f"codeword of {lengths.max()} bits exceeds {MAX_LEN}")
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical codeword (an integer of ``lengths[s]`` bits) of every symbol."""
    lengths = np.asarray(lengths, np.int64)
    if np.any(lengths < 0) or lengths.max(initial=0) > MAX_LEN:
        raise HuffmanError("code lengths out of range")
    order = sorted((int(n), s) for s, n in enumerate(lengths) if n > 0)
    codes = np.zeros(len(lengths), np.int64)
    code, prev = 0, 0
    for n, s in order:
        code <<= n - prev
        codes[s] = code
        code += 1
        prev = n
    if order and code > (1 << prev):  # Kraft inequality violated: not a prefix code
        raise HuffmanError("code lengths do not form a prefix code")
    return codes


def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Pack ``symbols`` with the canonical code of ``lengths``."""
    symbols = np.asarray(symbols, np.int64)
    if len(symbols) == 0:
        return b""
    codes = canonical_codes(lengths)
    n = np.asarray(lengths, np.int64)[symbols]
    if np.any(n == 0):
        raise HuffmanError("a symbol without a codeword")
    total = int(n.sum())
    # bit i of the stream, MSB-first per codeword: expand each codeword into its bits
    ends = np.cumsum(n)
    starts = ends - n
    owner = np.repeat(np.arange(len(symbols)), n)
    offset = np.arange(total) - starts[owner]
    bits = (codes[symbols][owner] >> (n[owner] - 1 - offset)) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes()


def decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """``count`` symbols from ``data`` packed with the canonical code of ``lengths``."""
    lengths = np.asarray(lengths, np.int64)
    if count == 0:
        return np.zeros(0, np.int64)
    if count > 8 * len(data):  # every symbol takes at least one bit: refuse before allocating
        raise HuffmanError(f"{count} symbols cannot fit in a stream of {len(data)} bytes")
    codes = canonical_codes(lengths)
    width = int(lengths.max(initial=0))
    if width == 0:
        raise HuffmanError("empty code table for a non-empty stream")
    # table[next `width` bits] -> (symbol, its length); unused slots keep length 0
    table_sym = np.zeros(1 << width, np.int64)
    table_len = np.zeros(1 << width, np.int64)
    for s in np.flatnonzero(lengths):
        n = int(lengths[s])
        lo = int(codes[s]) << (width - n)
        table_sym[lo:lo + (1 << (width - n))] = s
        table_len[lo:lo + (1 << (width - n))] = n
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    # the integer value of every `width`-bit window, for each starting bit (zero-padded tail)
    padded = np.concatenate([bits, np.zeros(width, np.uint8)]).astype(np.int64)
    windows = np.zeros(len(bits), np.int64)
    for k in range(width):
        windows = (windows << 1) | padded[k:k + len(bits)]
    out = [0] * count
    sym_of, len_of = table_sym[windows].tolist(), table_len[windows].tolist()  # fast to index
    pos, limit = 0, len(bits)
    for i in range(count):
        if pos >= limit:
            raise HuffmanError(f"stream ends after {i} of {count} symbols")
        n = len_of[pos]
        if n == 0:
            raise HuffmanError(f"invalid codeword at bit {pos}")
        out[i] = sym_of[pos]
        pos += n
    if pos > limit:
        raise HuffmanError("stream ends inside a codeword")
    return np.asarray(out, np.int64)
