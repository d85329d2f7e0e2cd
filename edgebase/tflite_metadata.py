"""TFLite Support metadata inside a ``.tflite``: what Android's image-classification libraries read.

The format is TFLite Support's ``metadata_schema.fbs`` (tensorflow/tflite-support, schema 1.5.0,
Apache-2.0); Google's ``mobilenet_v1_0.25_224_float_with_metadata.tflite`` is an example:

* a ``ModelMetadata`` flatbuffer (file identifier ``M001``) is stored as one model ``Buffer``
  and named ``TFLITE_METADATA`` in the model's ``metadata`` list;
* associated files (``labels.txt``) are appended to the end of the model file as an
  uncompressed zip, which the TFLite interpreter never reads.

The maintained writer (``tflite-support`` 0.4.4, last released 2023) pins protobuf < 4, which
conflicts with onnx and ai-edge-litert here, so the metadata flatbuffer is built and read
directly with ``flatbuffers``. Only schema 1.0.0 fields are written, hence
``min_parser_version`` "1.0.0". The model itself is unpacked and re-packed with the TFLite schema
classes that ai-edge-litert ships; weights are copied unchanged, 16-byte aligned as the schema
asks (``force_align: 16``).
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from typing import Any, Sequence

import numpy as np

from edgebase.errors import ConfigError, DeployError, MissingDependencyError, ModelFileError

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
TFLITE_IDENTIFIER = b"TFL3"
MIN_PARSER_VERSION = "1.0.0"
LABELS_FILE = "labels.txt"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same inputs give the same bytes

# Field slots (declaration order; a union takes two slots, its type then its value).
ASSOCIATED_FILE = {"name": 0, "description": 1, "type": 2, "locale": 3, "version": 4}
IMAGE_PROPERTIES = {"color_space": 0, "default_size": 1}
CONTENT = {"properties_type": 0, "properties": 1, "range": 2}
NORMALIZATION = {"mean": 0, "std": 1}
PROCESS_UNIT = {"options_type": 0, "options": 1}
STATS = {"max": 0, "min": 1}
TENSOR = {"name": 0, "description": 1, "dimension_names": 2, "content": 3, "process_units": 4,
          "stats": 5, "associated_files": 6}
SUBGRAPH = {"name": 0, "description": 1, "inputs": 2, "outputs": 3, "associated_files": 4}
MODEL = {"name": 0, "description": 1, "version": 2, "subgraphs": 3, "author": 4, "license": 5,
         "associated_files": 6, "min_parser_version": 7}
NUM_SLOTS = {"AssociatedFile": 5, "ImageProperties": 2, "FeatureProperties": 0, "Content": 3,
             "NormalizationOptions": 2, "ProcessUnit": 2, "Stats": 2, "TensorMetadata": 7,
             "SubGraphMetadata": 10, "ModelMetadata": 8}
# enum and union values
FILE_TYPES = {0: "UNKNOWN", 1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS",
              4: "TENSOR_AXIS_SCORE_CALIBRATION", 5: "VOCABULARY", 6: "SCANN_INDEX_FILE"}
COLOR_SPACES = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}
CONTENT_TYPES = {0: "NONE", 1: "FeatureProperties", 2: "ImageProperties",
                 3: "BoundingBoxProperties", 4: "AudioProperties"}
PROCESS_UNIT_TYPES = {0: "NONE", 1: "NormalizationOptions", 2: "ScoreCalibrationOptions",
                      3: "ScoreThresholdingOptions", 4: "BertTokenizerOptions",
                      5: "SentencePieceTokenizerOptions", 6: "RegexTokenizerOptions"}
_ID = {table: {v: k for k, v in names.items()} for table, names in
       (("file", FILE_TYPES), ("color", COLOR_SPACES), ("content", CONTENT_TYPES),
        ("unit", PROCESS_UNIT_TYPES))}


def _flatbuffers():
    try:
        import flatbuffers
    except ImportError:
        raise MissingDependencyError("flatbuffers (TFLite metadata)", "litert") from None
    return flatbuffers


def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        raise MissingDependencyError("ai_edge_litert (TFLite schema)", "litert") from None
    return schema_py_generated


# ---- writing ------------------------------------------------------------------------------
class _Writer:
    """Builds tables bottom-up: children (strings, vectors, tables) before their parent."""

    def __init__(self):
        self.b = _flatbuffers().Builder(1024)

    def string(self, s: str | None):
        return None if s is None else self.b.CreateString(s)

    def floats(self, values: Sequence[float]):
        return self.b.CreateNumpyVector(np.asarray(values, dtype="<f4"))

    def offsets(self, offs: Sequence[int]):
        self.b.StartVector(4, len(offs), 4)
        for off in reversed(offs):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def table(self, kind: str, fields: dict[int, tuple[str, Any]]) -> int:
        """fields: slot -> ("offset", int) | ("byte", int); None values are left out."""
        b = self.b
        b.StartObject(NUM_SLOTS[kind])
        for slot in sorted(fields):
            how, value = fields[slot]
            if value is None:
                continue
            if how == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            else:  # int8/uint8 enums and union types; 0 is the schema default
                b.PrependUint8Slot(slot, value, 0)
        return b.EndObject()

    def associated_file(self, name: str, description: str, ftype: str) -> int:
        n, d = self.string(name), self.string(description)
        return self.table("AssociatedFile", {
            ASSOCIATED_FILE["name"]: ("offset", n), ASSOCIATED_FILE["description"]: ("offset", d),
            ASSOCIATED_FILE["type"]: ("byte", _ID["file"][ftype])})

    def stats(self, lo: Sequence[float], hi: Sequence[float]) -> int:
        mx, mn = self.floats(hi), self.floats(lo)
        return self.table("Stats", {STATS["max"]: ("offset", mx), STATS["min"]: ("offset", mn)})

    def tensor(self, name, description, content_type, content, units=(), stats=None, files=()):
        n, d = self.string(name), self.string(description)
        u = self.offsets(units) if units else None
        f = self.offsets(files) if files else None
        c = self.table("Content", {CONTENT["properties_type"]: ("byte", _ID["content"][content_type]),
                                   CONTENT["properties"]: ("offset", content)})
        return self.table("TensorMetadata", {
            TENSOR["name"]: ("offset", n), TENSOR["description"]: ("offset", d),
            TENSOR["content"]: ("offset", c), TENSOR["process_units"]: ("offset", u),
            TENSOR["stats"]: ("offset", stats), TENSOR["associated_files"]: ("offset", f)})


def build_metadata(*, name: str, description: str, version: str | None, mean: Sequence[float],
                   std: Sequence[float], input_stats: tuple[Sequence[float], Sequence[float]] | None,
                   input_name: str, input_description: str, output_name: str,
                   output_description: str, labels_description: str, author: str | None = None,
                   license: str | None = None) -> bytes:
    """The ModelMetadata flatbuffer of an image classifier (one image in, one score vector out)."""
    w = _Writer()
    mean_v, std_v = w.floats(mean), w.floats(std)
    norm = w.table("NormalizationOptions", {NORMALIZATION["mean"]: ("offset", mean_v),
                                            NORMALIZATION["std"]: ("offset", std_v)})
    unit = w.table("ProcessUnit", {PROCESS_UNIT["options_type"]: ("byte", _ID["unit"]["NormalizationOptions"]),
                                   PROCESS_UNIT["options"]: ("offset", norm)})
    image = w.table("ImageProperties", {IMAGE_PROPERTIES["color_space"]: ("byte", _ID["color"]["RGB"])})
    in_stats = w.stats(*input_stats) if input_stats else None
    inp = w.tensor(input_name, input_description, "ImageProperties", image, [unit], in_stats)
    labels = w.associated_file(LABELS_FILE, labels_description, "TENSOR_AXIS_LABELS")
    feature = w.table("FeatureProperties", {})
    out = w.tensor(output_name, output_description, "FeatureProperties", feature, files=[labels])
    ins, outs = w.offsets([inp]), w.offsets([out])
    subgraph = w.table("SubGraphMetadata", {SUBGRAPH["inputs"]: ("offset", ins),
                                            SUBGRAPH["outputs"]: ("offset", outs)})
    subgraphs = w.offsets([subgraph])
    strings = {k: w.string(v) for k, v in (("name", name), ("description", description),
               ("version", version), ("author", author), ("license", license),
               ("min_parser_version", MIN_PARSER_VERSION))}
    root = w.table("ModelMetadata", {MODEL["subgraphs"]: ("offset", subgraphs),
                                     **{MODEL[k]: ("offset", v) for k, v in strings.items()}})
    w.b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(w.b.Output())


def _image_input(model) -> tuple[tuple[int, ...], int]:
    """Shape and TensorType of the one input of subgraph 0 (after checking it is an image)."""
    sg = model.subgraphs[0]
    if len(sg.inputs) != 1 or len(sg.outputs) != 1:
        raise ConfigError(f"image-classifier metadata needs 1 input and 1 output; the model has "
                          f"{len(sg.inputs)} and {len(sg.outputs)}")
    t = sg.tensors[sg.inputs[0]]
    return tuple(int(d) for d in t.shape), int(t.type)


def write_metadata(tflite_bytes: bytes, *, name: str, description: str, labels: Sequence[str],
                   mean: Sequence[float], std: Sequence[float], version: str | None = None,
                   input_description: str = "RGB image", output_description: str = "class scores",
                   input_name: str = "image", output_name: str = "scores",
                   author: str | None = None, license: str | None = None) -> bytes:
    """Return ``tflite_bytes`` with image-classifier metadata and ``labels.txt`` packed inside.

    ``mean``/``std`` are in pixel units (0..255) as NormalizationOptions defines them: the app
    feeds (pixel - mean) / std. Per channel (3 values) or one shared value.
    """
    if tflite_bytes[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError("not a TFLite flatbuffer (file identifier is not TFL3)")
    schema = _schema()
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_bytes))
    shape, ttype = _image_input(model)
    channels = shape[-1] if shape[-1] in (1, 3) else shape[1] if len(shape) == 4 else None
    if len(mean) != len(std) or len(mean) not in (1, channels):
        raise ConfigError(f"mean/std need 1 or {channels} values each; got {len(mean)} and {len(std)}")
    if any(s <= 0 for s in std):
        raise ConfigError(f"std must be positive; got {list(std)}")
    out = model.subgraphs[0].tensors[model.subgraphs[0].outputs[0]]
    if int(out.shape[-1]) != len(labels):
        raise ConfigError(f"{len(labels)} labels for an output of {int(out.shape[-1])} classes")
    if any("\n" in label or not label for label in labels):
        raise ConfigError("labels must be non-empty single lines")
    float_input = ttype == schema.TensorType.FLOAT32
    # value range of a normalised 0..255 pixel, as Google's image-classifier writer records it
    stats = ([(0 - m) / s for m, s in zip(mean, std)], [(255 - m) / s for m, s in zip(mean, std)]) \
        if float_input else None
    meta = build_metadata(
        name=name, description=description, version=version, mean=mean, std=std,
        input_stats=stats, input_name=input_name, input_description=input_description,
        output_name=output_name, output_description=output_description,
        labels_description="Labels of the output scores, one per line, in output order.",
        author=author, license=license)
    _set_metadata_buffer(model, schema, meta)
    packed = _pack(model, schema)
    return packed + _zip({LABELS_FILE: ("\n".join(labels) + "\n").encode()}, len(packed))


def _set_metadata_buffer(model, schema, data: bytes) -> None:
    entry = next((m for m in model.metadata or [] if _name(m.name) == METADATA_NAME), None)
    buf = schema.BufferT()
    buf.data = np.frombuffer(data, np.uint8)
    if entry is None:
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        model.metadata = list(model.metadata or []) + [entry]
        entry.buffer = len(model.buffers)
        model.buffers.append(buf)
    else:
        model.buffers[entry.buffer] = buf


def _name(raw) -> str:
    return raw.decode() if isinstance(raw, (bytes, bytearray)) else str(raw)


def _pack(model, schema) -> bytes:
    flatbuffers = _flatbuffers()

    class AlignedBuffer(schema.BufferT):
        """The generated Pack ignores the schema's ``force_align: 16`` on Buffer.data."""

        def Pack(self, builder):  # noqa: N802 (generated-code name)
            data = None
            if self.data is not None:
                payload = np.asarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head -= len(payload)
                builder.Bytes[builder.head:builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    for i, old in enumerate(model.buffers):
        new = AlignedBuffer()
        new.data, new.offset, new.size = old.data, old.offset, old.size
        model.buffers[i] = new
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _zip(files: dict[str, bytes], offset: int) -> bytes:
    """An uncompressed zip to append at ``offset`` (its central directory holds file offsets)."""
    out = io.BytesIO()
    out.write(b"\0" * offset)  # so the recorded offsets are those of the whole file
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return out.getvalue()[offset:]


# ---- reading ------------------------------------------------------------------------------
class _Table:
    def __init__(self, buf: bytes, pos: int):
        fb = _flatbuffers()
        self._fb = fb
        self.t = fb.table.Table(buf, pos)

    def _off(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._off(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def byte(self, slot: int) -> int:
        o = self._off(slot)
        return self.t.Get(self._fb.number_types.Uint8Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> "_Table | None":
        o = self._off(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Table"]:
        o = self._off(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, slot: int) -> list[float] | None:
        o = self._off(slot)
        if not o:
            return None
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return np.frombuffer(bytes(self.t.Bytes[start:start + 4 * n]), "<f4").astype(float).tolist()


def parse_metadata(data: bytes) -> dict[str, Any]:
    """Decode a ModelMetadata flatbuffer into plain data (the fields images classifiers use)."""
    if data[4:8] != METADATA_IDENTIFIER:
        raise ModelFileError("TFLITE_METADATA buffer is not a metadata flatbuffer (identifier M001)")
    fb = _flatbuffers()
    root = _Table(data, fb.encode.Get(fb.packer.uoffset, data, 0))
    out = {k: root.string(MODEL[k]) for k in ("name", "description", "version", "author",
                                              "license", "min_parser_version")}
    out["associated_files"] = [_file(f) for f in root.tables(MODEL["associated_files"])]
    out["subgraphs"] = []
    for sg in root.tables(MODEL["subgraphs"]):
        out["subgraphs"].append({
            "inputs": [_tensor(t) for t in sg.tables(SUBGRAPH["inputs"])],
            "outputs": [_tensor(t) for t in sg.tables(SUBGRAPH["outputs"])],
            "associated_files": [_file(f) for f in sg.tables(SUBGRAPH["associated_files"])],
        })
    return out


def _file(t: _Table) -> dict[str, Any]:
    return {"name": t.string(ASSOCIATED_FILE["name"]),
            "description": t.string(ASSOCIATED_FILE["description"]),
            "type": FILE_TYPES.get(t.byte(ASSOCIATED_FILE["type"]), "UNKNOWN")}


def _tensor(t: _Table) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.string(TENSOR["name"]),
                         "description": t.string(TENSOR["description"])}
    content = t.table(TENSOR["content"])
    if content is not None:
        kind = CONTENT_TYPES.get(content.byte(CONTENT["properties_type"]), "UNKNOWN")
        d["content"] = kind
        props = content.table(CONTENT["properties"])
        if kind == "ImageProperties" and props is not None:
            d["color_space"] = COLOR_SPACES.get(props.byte(IMAGE_PROPERTIES["color_space"]), "UNKNOWN")
    for unit in t.tables(TENSOR["process_units"]):
        if PROCESS_UNIT_TYPES.get(unit.byte(PROCESS_UNIT["options_type"])) == "NormalizationOptions":
            opts = unit.table(PROCESS_UNIT["options"])
            d["normalization"] = {"mean": opts.floats(NORMALIZATION["mean"]),
                                  "std": opts.floats(NORMALIZATION["std"])}
    stats = t.table(TENSOR["stats"])
    if stats is not None:
        d["stats"] = {"min": stats.floats(STATS["min"]), "max": stats.floats(STATS["max"])}
    d["associated_files"] = [_file(f) for f in t.tables(TENSOR["associated_files"])]
    return d


def metadata_buffer(tflite_bytes: bytes) -> bytes | None:
    """The raw TFLITE_METADATA flatbuffer of a model, or None when it has none."""
    if tflite_bytes[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError("not a TFLite flatbuffer (file identifier is not TFL3)")
    model = _schema().Model.GetRootAs(tflite_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == METADATA_NAME:
            buf = model.Buffers(entry.Buffer())
            if buf.Offset() > 1:  # stored after the flatbuffer (models > 2 GB)
                return bytes(tflite_bytes[buf.Offset():buf.Offset() + buf.Size()])
            data = buf.DataAsNumpy()
            if isinstance(data, int):  # flatbuffers' answer for an absent vector
                raise ModelFileError(f"the {METADATA_NAME} entry points at buffer "
                                     f"{entry.Buffer()}, which holds no data")
            return data.tobytes()
    return None


def associated_files(tflite_bytes: bytes) -> dict[str, bytes]:
    """Files packed in the zip appended to the model (empty when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(tflite_bytes)) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    except zipfile.BadZipFile:
        return {}


def read_metadata(path: str | os.PathLike | bytes) -> dict[str, Any]:
    """Metadata of a ``.tflite``: the parsed flatbuffer plus ``labels`` and input ``mean``/``std``.

    ``labels`` come from the TENSOR_AXIS_LABELS file of the first output; ``mean``/``std``
    from the first input's NormalizationOptions (pixel units). Raises ModelFileError when the
    model has no metadata or names a packed file that is not there.
    """
    data = bytes(path) if isinstance(path, (bytes, bytearray)) else _read(path)
    where = "model" if isinstance(path, (bytes, bytearray)) else str(path)
    try:
        return _read_metadata(data, where)
    except (ValueError, IndexError, TypeError, KeyError, struct.error, zlib.error, EOFError,
            NotImplementedError, RuntimeError) as e:  # zipfile: unknown method, encrypted
        if isinstance(e, DeployError):
            raise
        # a damaged flatbuffer fails wherever the first bad offset or string is read
        raise ModelFileError(f"{where}: damaged TFLite metadata ({type(e).__name__}: "
                             f"{e})") from None


def _read_metadata(data: bytes, where: str) -> dict[str, Any]:
    raw = metadata_buffer(data)
    if raw is None:
        raise ModelFileError(f"{where}: has no {METADATA_NAME} metadata")
    meta = parse_metadata(raw)
    files = associated_files(data)
    meta["packed_files"] = sorted(files)
    meta["labels"], meta["mean"], meta["std"] = None, None, None
    if meta["subgraphs"]:
        sg = meta["subgraphs"][0]
        if sg["inputs"] and "normalization" in sg["inputs"][0]:
            meta["mean"] = sg["inputs"][0]["normalization"]["mean"]
            meta["std"] = sg["inputs"][0]["normalization"]["std"]
        label_files = [f["name"] for t in sg["outputs"][:1] for f in t["associated_files"]
                       if f["type"] == "TENSOR_AXIS_LABELS"]
        if label_files:
            if label_files[0] not in files:
                raise ModelFileError(f"{where}: metadata names {label_files[0]!r} but it is not "
                                     f"packed in the model (packed: {', '.join(sorted(files)) or 'none'})")
            meta["labels"] = files[label_files[0]].decode("utf-8").splitlines()
    return meta


def _read(path) -> bytes:
    try:
        return open(path, "rb").read()
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror})") from None
