"""Cheap structural checks on a model file before any runtime parses it.

They catch the common cases (empty, truncated, wrong format or suffix, missing or short
OpenVINO weights) with a precise message; whatever gets past them and still crashes a runtime
is caught by loading in a child process (``device_runners.isolation``).
"""
from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from edgebase.errors import ModelFileError

_HINT = {"tflite": ".tflite (--runtime litert)", "openvino-xml": ".xml (--runtime openvino)",
         "onnx": ".onnx (--runtime onnxruntime)", "zip": "a zip archive (unpack it first)"}


def sniff(head: bytes) -> str | None:
    """The format a file's first bytes look like, or None when unsure."""
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    text = head.lstrip()[:200]
    if text.startswith(b"<?xml") or text.startswith(b"<net"):
        return "openvino-xml"
    # ONNX ModelProto: field 1 ir_version (varint, tag 0x08) is written first by onnx
    if len(head) >= 2 and head[0] == 0x08 and head[1] < 0x80:
        return "onnx"
    return None


def check_file(path: Path, runtime: str) -> None:
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise ModelFileError(f"{path}: empty file (0 bytes)")
    suffix = path.suffix.lower()
    looks = sniff(head)
    if suffix == ".tflite":
        _check_tflite(path, head, size, looks)
    elif suffix == ".xml":
        _check_ir(path, looks)
    elif suffix == ".onnx":
        if looks is not None and looks != "onnx":
            raise ModelFileError(f"{path}: not an ONNX file; it looks like {_HINT[looks]}")


def _check_tflite(path: Path, head: bytes, size: int, looks: str | None) -> None:
    if looks != "tflite":
        what = f"; it looks like {_HINT[looks]}" if looks else ""
        raise ModelFileError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier){what}")
    root = struct.unpack_from("<I", head, 0)[0]
    if root + 4 > size:
        raise ModelFileError(f"{path}: truncated TFLite file (root table at byte {root}, "
                             f"file has {size} bytes)")


def _check_ir(path: Path, looks: str | None) -> None:
    if looks != "openvino-xml":
        what = f"; it looks like {_HINT[looks]}" if looks else ""
        raise ModelFileError(f"{path}: not an OpenVINO IR .xml file{what}")
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, UnicodeDecodeError, ValueError) as e:
        raise ModelFileError(f"{path}: malformed XML ({e})") from None
    if root.tag != "net":
        raise ModelFileError(f"{path}: XML root is <{root.tag}>, an OpenVINO IR has <net>")
    bin_path = path.with_suffix(".bin")
    if bin_path.exists() and not bin_path.is_file():
        raise ModelFileError(f"{path}: {bin_path.name} is not a file")
    consts = [layer.find("data") for layer in root.iter("layer") if layer.get("type") == "Const"]
    if not consts:
        return
    if not bin_path.exists():
        raise ModelFileError(f"{path}: its weights file {bin_path.name} is missing")
    bin_size = bin_path.stat().st_size
    for data in consts:
        if data is None or data.get("offset") is None:
            continue
        try:
            end = int(data.get("offset")) + int(data.get("size", 0))
        except ValueError:
            raise ModelFileError(f"{path}: a Const layer has a malformed offset/size "
                                 f"({data.get('offset')!r}, {data.get('size')!r})") from None
        if end > bin_size:
            raise ModelFileError(f"{path}: weights reach byte {end} but {bin_path.name} has "
                                 f"{bin_size} bytes (truncated or mismatched .bin)")
