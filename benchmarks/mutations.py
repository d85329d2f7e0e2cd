"""Deterministic mutations of model files, manifests and containers, for fuzzing the runner.

Byte-level mutations (``mutate``) reach every format's parser; the structure-aware ones keep a
file parseable and change one value, so that checks past the parser see hostile content:
``mutate_json`` (manifests), ``mutate_xml`` (OpenVINO IR attributes, e.g. shapes and the byte
offsets into the .bin) and ``mutate_edc`` (the Deep Compression container's JSON header,
re-compressed so that it still reads). Every function takes a ``random.Random``: the same seed
gives the same bytes.
"""
from __future__ import annotations

import json
import random
import re
import struct
import zlib

KINDS = ("truncate", "bitflip", "overwrite", "zero", "head")


def mutate(data: bytes, rng: random.Random, kind: str) -> bytes:
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[:rng.randrange(len(b))])
    if kind == "bitflip":
        for _ in range(rng.randint(1, 32)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 64)] = rng.randbytes(rng.randint(1, 64))
    elif kind == "zero":
        i = rng.randrange(len(b))
        n = rng.randint(4, 4096)
        b[i:i + n] = bytes(len(b[i:i + n]))
    elif kind == "head":  # the structure lives near the start of every format
        i = rng.randrange(min(len(b), 512))
        b[i] = rng.randrange(256)
    else:
        raise ValueError(f"unknown mutation {kind!r}; valid: {', '.join(KINDS)}")
    return bytes(b)


# values that break assumptions: wrong types, signs, sizes, paths out of the folder
HOSTILE = (None, True, 0, -1, 1, 3, 255, 2 ** 31, -2 ** 31, 2 ** 63, 1 << 40, 1e308, -0.0,
           float("nan"), float("inf"), "", "x", "../../etc/passwd", "/etc/passwd", "a\\b",
           "C:x", "%s%n", "\u00e9\u4e2d", "A" * 10000, [], [0], [-1, 3, 32, 32], [1 << 20] * 4,
           {}, {"path": "../x"})


def _nodes(obj, path=()):
    """Every (container, key) pair inside a JSON document, depth first."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield obj, k
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield obj, i
            yield from _nodes(v, path + (i,))


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """One value replaced by a hostile one, one key deleted, or one list emptied or doubled."""
    doc = json.loads(data)
    nodes = list(_nodes(doc))
    if not nodes:
        return json.dumps(rng.choice(HOSTILE)).encode()
    parent, key = rng.choice(nodes)
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[key]
    elif action == 1 and isinstance(parent[key], list):
        parent[key] = parent[key] * 2 if rng.random() < 0.5 else []
    elif action == 2 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = rng.choice((-1, 0, -parent[key], parent[key] * 1000003, 2 ** 62))
    else:
        parent[key] = rng.choice(HOSTILE)
    return json.dumps(doc).encode()  # NaN and Infinity as Python writes them: valid to Python


_ATTR = re.compile(rb'(\w+)="([^"]*)"')
XML_VALUES = (b"", b"-1", b"0", b"1", b"4294967296", b"18446744073709551615",
              b"1,1048576,32,32", b"-1,-1", b"f64", b"u1", b"string", b"?", b"1e400",
              b"../../x.bin", b"&amp;", b"9" * 40)


def mutate_xml(data: bytes, rng: random.Random) -> bytes:
    """One attribute value (a shape, element type, offset, size, version...) replaced."""
    attrs = list(_ATTR.finditer(data))
    m = rng.choice(attrs)
    start, end = m.span(2)
    value = rng.choice(XML_VALUES)
    if rng.random() < 0.3 and m.group(2).isdigit():  # a nearby number: off-by-some offsets
        value = str(max(0, int(m.group(2)) + rng.choice((-4, -1, 1, 4, 4096)))).encode()
    return data[:start] + value + data[end:]


def mutate_edc(data: bytes, rng: random.Random) -> bytes:
    """The container's JSON header mutated (``mutate_json``), re-compressed, lengths fixed up:
    the container still opens, so the decoder meets the hostile value itself."""
    version, length = struct.unpack_from("<HI", data, 4)
    header = zlib.decompress(data[10:10 + length])
    new = zlib.compress(mutate_json(header, rng))
    return data[:4] + struct.pack("<HI", version, len(new)) + new + data[10 + length:]
