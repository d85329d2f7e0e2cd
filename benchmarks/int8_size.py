"""Where an int8 file's bytes go, and the smallest file per-channel int8 weights allow.

    python benchmarks/int8_size.py DIR [DIR ...]     # e.g. out/benchmark/cifar10/*/

Each DIR holds one model's fp32 and int8 files side by side (``<stem>.onnx`` +
``<stem>.int8.onnx``, ``<stem>.tflite`` + ``<stem>.int8.tflite``, ``<stem>.xml``/``.bin`` +
``<stem>.int8.xml``/``.bin``). Every file is parsed, nothing is run. Constants are classified by
the operator input slot they feed (weights of Conv/Gemm/MatMul/FullyConnected, their biases,
the scales and zero points of those, activation quantization parameters, weights left in
float); whatever the constants do not account for (graph, names, container framing, the whole
OpenVINO .xml) is overhead. The floor is one byte per weight plus the per-output-channel
metadata the format requires, with no graph at all: fp32 size / floor is the largest ratio a
perfect encoder of that format could reach. The per-tensor column is the same file with one
scale per weight tensor instead of one per channel, graph and all: what giving up per-channel
weights could buy at most. Writes benchmarks/results/int8_size.json and .md.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
# Byte categories, in the order that wins when two roles share the same bytes.
# Per-channel weight and bias quantization metadata (the "w/b qmeta" column).
QMETA = ("w_scale", "w_zp", "b_scale", "b_zp")
CATS = ("w_int8", "w_float", "bias", "w_scale", "w_zp", "b_scale", "b_zp", "act_qparams",
        "other_consts")
TOP_FLOAT = 5  # float weights named per file
# Bytes per output channel the format needs besides the int8 weights (floor), and
# what a zero point costs when it cannot be dropped.
FLOOR = {
    # QDQ: DequantizeLinear needs a scale; the bias is int32 with its own scale
    # (input scale x weight scale, per channel); zero points are optional inputs.
    "onnx": {"w": 4, "b": 4 + 4, "zp": 1},
    # The schema keeps zero_point as int64, and the kernels want one per scale, for the
    # weight tensor and again for the int32 bias tensor.
    "tflite": {"w": 4 + 8, "b": 4 + 4 + 8, "zp": 0},
    # NNCF's compressed constant: i8 Const -> Convert -> Multiply(f32 scale); the bias stays
    # an f32 Add constant; a Subtract(zero point) only for asymmetric weights.
    "openvino": {"w": 4, "b": 4, "zp": 1},
}
# The same metadata once per weight layer instead of per channel (per-tensor weights).
PER_TENSOR = {"onnx": 4 + 4, "tflite": 4 + 8 + 4 + 8, "openvino": 4}


class Usage:
    """Bytes per category of one file, plus the weight layers the floor is built from."""

    def __init__(self, size: int):
        self.size = size
        self.bytes = collections.Counter({c: 0 for c in CATS})
        self.zero_zp = 0  # zero-point bytes whose values are all 0
        self.float_weights: list[tuple[str, int]] = []
        self.layers: list[dict] = []  # weight elements, out channels, bias?, zero point needed?

    def as_dict(self) -> dict:
        overhead = self.size - sum(self.bytes.values())
        if overhead < 0:
            raise ValueError(f"categories exceed the file by {-overhead} B (shared bytes?)")
        return {"file_bytes": self.size, **dict(self.bytes), "overhead": overhead,
                "zp_all_zero": self.zero_zp,
                "float_weights": sorted(self.float_weights, key=lambda x: -x[1]),
                "weight_layers": len(self.layers),
                "weight_elements": sum(l["elements"] for l in self.layers),
                "out_channels": sum(l["channels"] for l in self.layers)}


def per_tensor_bytes(target: str, usage: Usage) -> int:
    """The file with its per-channel weight and bias metadata replaced by per-layer scalars."""
    meta = sum(usage.bytes[c] for c in QMETA)
    return usage.size - meta + PER_TENSOR[target] * len(usage.layers)


def floor_bytes(target: str, layers: list[dict]) -> int:
    f = FLOOR[target]
    return sum(l["elements"] + l["channels"] * (f["w"] + (f["b"] if l["bias"] else 0)
                                               + (f["zp"] if l["zp_needed"] else 0))
               for l in layers)


# ---- ONNX ---------------------------------------------------------------------------------
ONNX_DATA = ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
             "uint64_data", "string_data")
ONNX_PASS = {"Transpose", "Reshape", "Identity", "Cast", "Squeeze", "Unsqueeze", "Flatten"}
# op -> (weight slot, bias slot); QLinear ops also name their weight scale and zero point.
ONNX_LAYERS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1, None),
               "QLinearConv": (3, 8), "QLinearMatMul": (3, None)}
ONNX_QLINEAR_W = {"QLinearConv": {4: "w_scale", 5: "w_zp"}, "QLinearMatMul": {4: "w_scale",
                                                                              5: "w_zp"}}


def _onnx_payload(t) -> int:
    """Bytes the tensor's values take in the file (field tags included, name excluded)."""
    from onnx import TensorProto

    bare = TensorProto()
    bare.CopyFrom(t)
    for f in ONNX_DATA:
        bare.ClearField(f)
    return t.ByteSize() - bare.ByteSize()


def onnx_usage(path: Path) -> Usage:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant"
                   for a in n.attribute if a.name == "value"})
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in consts.values()):
        raise ValueError("external tensor data is not counted; re-save with data inside")
    consumers = collections.defaultdict(list)
    producer = {}
    for n in g.node:
        for i, name in enumerate(n.input):
            consumers[name].append((n, i))
        for name in n.output:
            producer[name] = n

    def feeds(name: str, depth: int = 0) -> str | None:
        """'weight' or 'bias' when the tensor's value reaches a layer's weight or bias slot
        (through Q/DQ data inputs and reshaping ops)."""
        for n, i in consumers[name]:
            slots = ONNX_LAYERS.get(n.op_type)
            if slots and i == slots[0]:
                return "weight"
            if slots and i == slots[1]:
                return "bias"
            if depth < 8 and i == 0 and (n.op_type in ONNX_PASS
                                          or n.op_type in ("DequantizeLinear", "QuantizeLinear")):
                r = feeds(n.output[0], depth + 1)
                if r:
                    return r
        return None

    def role(name: str, arr: np.ndarray) -> str:
        for n, i in consumers[name]:
            if n.op_type in ("DequantizeLinear", "QuantizeLinear") and i in (1, 2):
                r = feeds(n.output[0])
                kind = "scale" if i == 1 else "zp"
                return {"weight": f"w_{kind}", "bias": f"b_{kind}"}.get(r, "act_qparams")
            if n.op_type in ONNX_QLINEAR_W and i in ONNX_QLINEAR_W[n.op_type]:
                return ONNX_QLINEAR_W[n.op_type][i]
            if n.op_type.startswith("QLinear") and i in (1, 2, 6, 7):
                return "act_qparams"
        r = feeds(name)
        if r == "weight":
            return "w_float" if arr.dtype.kind == "f" else "w_int8"
        return "bias" if r == "bias" else "other_consts"

    u = Usage(path.stat().st_size)
    for name, t in consts.items():
        arr = numpy_helper.to_array(t)
        r = role(name, arr)
        n = _onnx_payload(t)
        u.bytes[r] += n
        if r in ("w_zp", "b_zp") and not arr.any():
            u.zero_zp += n
        if r == "w_float":
            u.float_weights.append((name, n))

    def source(name: str, depth: int = 0):
        """(weight constant, its DequantizeLinear or None) behind a layer's weight input."""
        if name in consts or depth > 8 or name not in producer:
            return name, None
        p = producer[name]
        src, dq = source(p.input[0], depth + 1)
        return src, dq or (p if p.op_type == "DequantizeLinear" else None)

    for n in g.node:
        slots = ONNX_LAYERS.get(n.op_type)
        if not slots or len(n.input) <= slots[0]:
            continue
        w, dq = source(n.input[slots[0]])
        if w not in consts:
            continue  # weight computed at run time: not a stored layer
        shape = list(consts[w].dims)
        zp = None
        if dq is not None and len(dq.input) > 2 and dq.input[2] in consts:
            zp = numpy_helper.to_array(consts[dq.input[2]])
        elif n.op_type in ONNX_QLINEAR_W and n.input[5] in consts:
            zp = numpy_helper.to_array(consts[n.input[5]])
        u.layers.append({"elements": int(np.prod(shape)),
                         "channels": _onnx_channels(n, shape),
                         "bias": slots[1] is not None and len(n.input) > slots[1]
                         and bool(n.input[slots[1]]),
                         "zp_needed": zp is not None and bool(zp.any())})
    return u


def _onnx_channels(node, shape: list[int]) -> int:
    attr = {a.name: a.i for a in node.attribute}
    if node.op_type == "ConvTranspose":
        return shape[1] * attr.get("group", 1)
    if node.op_type == "Gemm":
        return shape[0] if attr.get("transB", 0) else shape[-1]
    if node.op_type in ("MatMul", "QLinearMatMul"):
        return shape[-1]
    return shape[0]


# ---- TFLite -------------------------------------------------------------------------------
# builtin op -> (weight slot, bias slot)
TFL_LAYERS = {"CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2),
              "TRANSPOSE_CONV": (1, 3), "CONV_3D": (1, 2)}


def tflite_usage(path: Path) -> Usage:
    from ai_edge_litert import schema_py_generated as schema

    from exporters.tflite_graph import builtin_names, opcode

    buf = path.read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    op_names = builtin_names()
    ttypes = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    u = Usage(len(buf))
    buffer_role: dict[int, str] = {}

    def claim(b: int, r: str) -> None:
        if b not in buffer_role or CATS.index(r) < CATS.index(buffer_role[b]):
            buffer_role[b] = r

    for sg in model.subgraphs:
        producer = {o: op for op in sg.operators for o in op.outputs}
        roles: dict[int, str] = {}  # tensor index -> 'weight' | 'bias'
        for k, op in enumerate(sg.operators):
            name = op_names.get(opcode(model, op), "?")
            if name not in TFL_LAYERS:
                continue
            ws, bs = TFL_LAYERS[name]
            w = op.inputs[ws]
            # Weights stored narrower than they compute go through a DEQUANTIZE op.
            p = producer.get(w)
            if p is not None and op_names.get(opcode(model, p)) == "DEQUANTIZE":
                w = p.inputs[0]
            roles[w] = "weight"
            has_bias = len(op.inputs) > bs and op.inputs[bs] >= 0
            if has_bias:
                roles[op.inputs[bs]] = "bias"
            t = sg.tensors[w]
            shape = list(t.shape)
            ch = shape[-1] if name == "DEPTHWISE_CONV_2D" else shape[0]
            zp = t.quantization.zeroPoint if t.quantization is not None else None
            u.layers.append({"elements": int(np.prod(shape)), "channels": int(ch),
                             "bias": bool(has_bias),
                             "zp_needed": zp is not None and bool(np.any(zp))})
            if ttypes.get(t.type, "") in ("FLOAT32", "FLOAT16"):
                u.float_weights.append((f"{name}#{k} {shape} {ttypes[t.type].lower()}",
                                        _tfl_buffer_bytes(model.buffers[t.buffer])))
        for i, t in enumerate(sg.tensors):
            r = roles.get(i)
            is_int = ttypes.get(t.type, "").startswith(("INT", "UINT"))
            claim(t.buffer, {"weight": "w_int8" if is_int else "w_float",
                             "bias": "bias"}.get(r, "other_consts"))
            q = t.quantization
            if q is None:
                continue
            pre = {"weight": "w_", "bias": "b_"}.get(r)
            n_scale = 4 * (0 if q.scale is None else len(q.scale)) \
                + 4 * sum(0 if v is None else len(v) for v in (q.min, q.max))
            n_zp = 8 * (0 if q.zeroPoint is None else len(q.zeroPoint))
            u.bytes[f"{pre}scale" if pre else "act_qparams"] += n_scale
            u.bytes[f"{pre}zp" if pre else "act_qparams"] += n_zp
            if pre and q.zeroPoint is not None and not np.any(q.zeroPoint):
                u.zero_zp += n_zp
    for b, r in buffer_role.items():
        u.bytes[r] += _tfl_buffer_bytes(model.buffers[b])
    for md in model.metadata or []:
        if md.buffer not in buffer_role:
            u.bytes["other_consts"] += _tfl_buffer_bytes(model.buffers[md.buffer])
    return u


def _tfl_buffer_bytes(b) -> int:
    # Large models keep tensor data after the flatbuffer (offset/size) instead of inline.
    if b.data is not None:
        return len(b.data)
    return int(b.size) if b.offset and b.offset > 1 else 0


# ---- OpenVINO IR --------------------------------------------------------------------------
OV_LAYERS = {"Convolution", "GroupConvolution", "ConvolutionBackpropData",
             "GroupConvolutionBackpropData", "MatMul"}
OV_PASS = {"Convert", "Reshape", "Transpose", "Squeeze", "Unsqueeze"}
OV_INT = ("i8", "u8", "i4", "u4")


class OvGraph:
    def __init__(self, xml: Path):
        root = ET.parse(xml).getroot()
        self.layers = {l.get("id"): l for l in root.find("layers")}
        port_index = {}
        for lid, l in self.layers.items():
            ports = l.find("input")
            for i, p in enumerate(ports if ports is not None else []):
                port_index[lid, p.get("id")] = i
        self.inputs = collections.defaultdict(dict)  # layer -> {input index: producer}
        self.consumers = collections.defaultdict(list)  # layer -> [(consumer, input index)]
        for e in root.find("edges"):
            to, i = e.get("to-layer"), port_index[e.get("to-layer"), e.get("to-port")]
            self.inputs[to][i] = e.get("from-layer")
            self.consumers[e.get("from-layer")].append((to, i))

    def type(self, lid: str) -> str:
        return self.layers[lid].get("type")

    def data(self, lid: str) -> dict:
        d = self.layers[lid].find("data")
        return d.attrib if d is not None else {}

    def consts(self, lid: str, port: int, role: str, deep: bool, out: dict) -> None:
        """Constants behind input `port` of `lid`, with their role: 'data' on the value path;
        'scale' / 'zp' for the other input of a decompression Multiply / Subtract (or the
        range inputs of a weight FakeQuantize). `deep` = walk through those ops too."""
        src = self.inputs[lid].get(port)
        if src is None:
            return
        t = self.type(src)
        if t == "Const":
            out.setdefault(src, role)
        elif t in OV_PASS:
            self.consts(src, 0, role, deep, out)
        elif deep and t in ("Multiply", "Subtract"):
            data = self._data_port(src)
            self.consts(src, data, role, deep, out)
            self.consts(src, 1 - data, "scale" if t == "Multiply" else "zp", deep, out)
        elif deep and t == "FakeQuantize":
            self.consts(src, 0, role, deep, out)
            for i in range(1, 5):
                self.consts(src, i, "scale", deep, out)

    def _data_port(self, lid: str) -> int:
        # The scale / zero point is the input that is a constant right away.
        a, b = (self.type(self.inputs[lid].get(i, lid)) == "Const" for i in (0, 1))
        return 1 if a and not b else 0


def openvino_usage(xml: Path) -> Usage:
    bin_path = xml.with_suffix(".bin")
    if not bin_path.exists():
        raise FileNotFoundError(f"{bin_path.name} missing")
    g = OvGraph(xml)
    blob = np.fromfile(bin_path, dtype=np.uint8)
    u = Usage(xml.stat().st_size + blob.size)
    roles: dict[str, str] = {}  # const layer -> category
    for lid in g.layers:
        t = g.type(lid)
        if t not in OV_LAYERS:
            continue
        found: dict[str, str] = {}
        g.consts(lid, 1, "data", True, found)
        weights = [c for c, r in found.items() if r == "data"]
        if not weights:
            continue  # e.g. MatMul of two activations
        w = max(weights, key=lambda c: int(g.data(c).get("size", 0)))
        d = g.data(w)
        shape = [int(s) for s in d.get("shape", "").split(",") if s.strip()]
        for c, r in found.items():
            roles[c] = {"scale": "w_scale", "zp": "w_zp"}.get(
                r, "w_int8" if g.data(c)["element_type"] in OV_INT else "w_float")
        # A bias is an Add of the layer's output and a constant.
        bias: dict[str, str] = {}
        for cons, i in g.consumers[lid]:
            if g.type(cons) == "Add":
                g.consts(cons, 1 - i, "bias", False, bias)
        roles.update({c: "bias" for c in bias})
        zps = [c for c, r in found.items() if r == "zp"]
        u.layers.append({"elements": int(np.prod(shape)),
                         "channels": _ov_channels(t, shape, g.data(lid)),
                         "bias": bool(bias),
                         "zp_needed": any(_ov_values(g.data(c), blob).any() for c in zps)})
        if roles[w] == "w_float":
            u.float_weights.append((g.layers[lid].get("name"), int(d["size"])))
    for lid in g.layers:
        if g.type(lid) == "Const" and lid not in roles:
            fq = any(g.type(c) == "FakeQuantize" and i > 0 for c, i in g.consumers[lid])
            roles[lid] = "act_qparams" if fq else "other_consts"
    # Equal constants share bytes in the .bin: count every byte once, by its strongest role.
    owner = np.full(blob.size, len(CATS), dtype=np.uint8)
    for c, r in roles.items():
        off, size = int(g.data(c).get("offset", 0)), int(g.data(c).get("size", 0))
        np.minimum(owner[off:off + size], CATS.index(r), out=owner[off:off + size])
        if r in ("w_zp", "b_zp") and not _ov_values(g.data(c), blob).any():
            u.zero_zp += size
    counts = np.bincount(owner, minlength=len(CATS) + 1)
    for i, c in enumerate(CATS):
        u.bytes[c] += int(counts[i])
    return u


def _ov_values(d: dict, blob: np.ndarray) -> np.ndarray:
    off, size = int(d["offset"]), int(d["size"])
    dtype = {"f32": np.float32, "f16": np.float16, "i8": np.int8, "u8": np.uint8,
             "i32": np.int32, "i64": np.int64}.get(d["element_type"], np.uint8)
    return blob[off:off + size].view(dtype)


def _ov_channels(op: str, shape: list[int], attrs: dict) -> int:
    if op == "GroupConvolution":
        return shape[0] * shape[1]
    if op == "ConvolutionBackpropData":
        return shape[1]
    if op == "GroupConvolutionBackpropData":
        return shape[0] * shape[2]
    if op == "MatMul":
        return shape[-2] if attrs.get("transpose_b") == "true" else shape[-1]
    return shape[0]


# ---- report -------------------------------------------------------------------------------
PARSERS = {"onnx": onnx_usage, "tflite": tflite_usage, "openvino": openvino_usage}


def measure(folder: Path) -> list[dict]:
    """One row per target of a model folder; a missing or unreadable file becomes a note."""
    stems = sorted(f.name[: -len(f.suffix)] for f in folder.iterdir()
                   if f.suffix in TARGETS.values() and ".int8" not in f.name)
    stem = stems[0] if stems else folder.name
    rows = []
    for target, ext in TARGETS.items():
        fp32, q = folder / f"{stem}{ext}", folder / f"{stem}.int8{ext}"
        row: dict = {"model": stem, "target": target}
        try:
            for f in (fp32, q):
                if not f.exists():
                    other = sorted(x.name for x in folder.glob(f"{stem}.int8.*{ext}"))
                    raise FileNotFoundError(f"{f.name} missing"
                                            + (f" (found {', '.join(other)})" if other else ""))
            a, b = PARSERS[target](fp32), PARSERS[target](q)
            row["fp32"] = {k: v for k, v in a.as_dict().items() if k != "float_weights"}
            row["int8"] = b.as_dict()
            row["fp32"]["weights_and_bias"] = a.bytes["w_float"] + a.bytes["bias"]
            row["weights_per_channel"] = (row["int8"]["weight_elements"]
                                          / max(1, row["int8"]["out_channels"]))
            row["floor"] = floor_bytes(target, b.layers)
            row["ratio"] = a.size / b.size
            row["max_ratio"] = a.size / row["floor"]
            row["per_tensor"] = per_tensor_bytes(target, b)
            row["per_tensor_ratio"] = a.size / row["per_tensor"]
        except Exception as e:  # a corrupt file must not hide the other rows
            row["error"] = f"{type(e).__name__}: {e}"
            print(f"{folder}: {target}: {row['error']}", file=sys.stderr)
        rows.append(row)
    return rows


def kb(n: int) -> str:
    return f"{n / 1000:,.1f}"


def markdown(r: dict) -> str:
    lines = ["# int8 file size: where the bytes go", "",
             f"`{r['command']}`, {r['date']}. Files are parsed, nothing runs. kB = 1000 B.", "",
             "- **fp32**, **int8**: file size (OpenVINO: .xml + .bin); **w+b**: the fp32 "
             "file's float weight and bias bytes; **ratio** = fp32 / int8.",
             "- **int8 w**: int8 Conv/Gemm/FC weights; **bias**: their biases (int32 in ONNX "
             "and TFLite, f32 in OpenVINO); **w/b qmeta**: weight and bias scales and zero "
             "points, of which *(all-zero)* are zero points whose values are all 0 "
             "(optional in ONNX and OpenVINO, required by the TFLite schema); **act q**: "
             "activation scales, zero points and FakeQuantize ranges; **float w**: Conv/Gemm "
             "weights the quantizer left in float; **graph**: everything else (graph, names, "
             "container framing, shape constants, the whole OpenVINO .xml).",
             "- **floor**: int8 weights (1 B each, float-kept ones included) + per output "
             "channel: ONNX QDQ 4 B weight scale + 4 B int32 bias + 4 B bias scale; TFLite "
             "4 B scale + 8 B int64 zero point for the weight, and 4 B int32 bias + 4 B scale "
             "+ 8 B zero point for the bias; OpenVINO 4 B f32 scale + 4 B f32 bias (a zero point "
             "only for asymmetric weights). No graph, no activation parameters. **max** = "
             "fp32 / floor: the best ratio the format allows.",
             "- **w/ch**: weights per output channel. With k metadata bytes per channel, "
             "(4 w + 4 C) / (w + k C) >= 3.8 needs w/ch >= 19 k - 20 (the fp32 file's own "
             "graph bytes aside): ONNX (k = 12) 208, TFLite (k = 28) 512, OpenVINO (k = 8) 132.",
             "- **per-tensor**: this int8 file with its per-channel weight and bias metadata "
             "replaced by one scale (and TFLite zero point) per layer, graph and activation "
             "parameters kept; **pt ratio** = fp32 / that: the most per-tensor weights could "
             "give, before their accuracy cost.",
             "",
             "| model | target | fp32 | w+b | int8 | ratio | int8 w | bias | w/b qmeta "
             "(all-zero) | act q | float w | graph | floor | w/ch | max | per-tensor | pt ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
             "---:|"]
    notes = []
    for row in r["rows"]:
        if "error" in row:
            notes.append(f"- {row['model']} {row['target']}: skipped, {row['error']}")
            continue
        a, b = row["fp32"], row["int8"]
        meta = sum(b[c] for c in QMETA)
        lines.append(
            f"| {row['model']} | {row['target']} | {kb(a['file_bytes'])} | "
            f"{kb(a['weights_and_bias'])} | {kb(b['file_bytes'])} | {row['ratio']:.2f} | "
            f"{kb(b['w_int8'])} | {kb(b['bias'])} | {kb(meta)} ({kb(b['zp_all_zero'])}) | "
            f"{kb(b['act_qparams'])} | {kb(b['w_float'])} | "
            f"{kb(b['other_consts'] + b['overhead'])} | {kb(row['floor'])} | "
            f"{row['weights_per_channel']:.0f} | {row['max_ratio']:.2f} | "
            f"{kb(row['per_tensor'])} | {row['per_tensor_ratio']:.2f} |")
        if b["float_weights"]:
            top = ", ".join(f"{n} ({kb(s)} kB)" for n, s in b["float_weights"][:TOP_FLOAT])
            more = len(b["float_weights"]) - TOP_FLOAT
            notes.append(f"- {row['model']} {row['target']}: float weights "
                         f"{top}{f' and {more} more' if more > 0 else ''}")
    if notes:
        lines += ["", "Float weights left in the int8 files, and skipped files:", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folders", type=Path, nargs="+")
    args = p.parse_args(argv)
    report: dict = {"command": "python benchmarks/int8_size.py "
                               + " ".join(str(f) for f in args.folders),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "floor_bytes_per_channel": FLOOR, "rows": []}
    for folder in args.folders:
        if not folder.is_dir():
            print(f"{folder}: not a directory, skipped", file=sys.stderr)
            continue
        report["rows"] += measure(folder)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "int8_size.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "int8_size.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
