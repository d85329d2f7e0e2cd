"""Deep Compression: Huffman codec, the container and its numpy-only decoder, the stage.

The container is checked by decoding: every file it carries must come back bit for bit (the
decoder checks each sha256), damaged containers are one-line errors that leave no file."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgebase.errors import ModelFileError
from device_runners import huffman
from device_runners.container import describe, read, unpack
from quant.container_writer import sparse_entries, write_container
from tests.runner_models import MODELS, need

REPO = Path(__file__).resolve().parents[1]
NET = MODELS / "squeezenet_v1.0_deep_compression.net"


def test_huffman_round_trip_and_near_entropy():
    rng = np.random.default_rng(0)
    x = np.minimum(rng.geometric(0.3, 50_000) - 1, 63)
    counts = np.bincount(x, minlength=64)
    lengths = huffman.code_lengths(counts)
    data = huffman.encode(x, lengths)
    assert np.array_equal(huffman.decode(data, lengths, len(x)), x)
    p = counts[counts > 0] / counts.sum()
    entropy_bytes = float(-(p * np.log2(p)).sum()) * len(x) / 8
    assert entropy_bytes <= len(data) <= 1.05 * entropy_bytes + 1
    with pytest.raises(huffman.HuffmanError):
        huffman.decode(data[: len(data) // 2], lengths, len(x))


def _weights(rng, shape, values=16, density=0.3):
    book = rng.normal(0, 0.1, values).astype(np.float32)
    w = book[rng.integers(0, values, shape)]
    w[rng.random(shape) > density] = 0.0
    return w


def _file_with(*tensors, layout=None):
    """Bytes of a made-up model file: a header, each tensor's float32 bytes, a trailer."""
    parts = [b"HEADER" * 10]
    for t in tensors:
        stored = np.transpose(t, layout) if layout else t
        parts += [np.ascontiguousarray(stored, "<f4").tobytes(), b"--between--"]
    return b"".join(parts + [b"TRAILER"])


def test_container_round_trip_sparse_dense_and_transposed(tmp_path):
    rng = np.random.default_rng(1)
    a = _weights(rng, (8, 4, 3, 3), density=0.2)  # sparse: gaps
    b = _weights(rng, (16, 8, 1, 1), density=0.99)  # nearly dense: dense coding wins
    c = _weights(rng, (10, 16), values=200)
    files = {"m.onnx": _file_with(a, b, c), "other.tflite": _file_with(
        _weights(rng, (6, 5, 3, 3)), layout=(0, 2, 3, 1))}
    other = np.transpose(np.frombuffer(files["other.tflite"][60:60 + 6 * 5 * 9 * 4], "<f4")
                         .reshape(6, 3, 3, 5), (0, 3, 1, 2))
    write_container(files, {"a": a, "b": b, "c": c, "d": other}, tmp_path / "x.edc")
    header = read(tmp_path / "x.edc").header
    kinds = {layer["name"]: layer["positions"] for layer in header["layers"]}
    assert kinds["a"] == "sparse" and kinds["b"] == "dense"
    assert [layer["perm"] for layer in header["layers"]][3] == [0, 2, 3, 1]  # found as OHWI
    out = unpack(tmp_path / "x.edc", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out} == files
    assert describe(tmp_path / "x.edc")["decoded_bytes"] == sum(len(v) for v in files.values())


def _as_version_1(src: Path, dst: Path) -> None:
    """Rewrite a container as version 1 wrote it: every codebook padded to 256 entries."""
    import json
    import struct
    import zlib

    from device_runners.container import MAGIC

    c = read(src)
    blob = bytearray(c.blob)
    for layer in c.header["layers"]:
        book = np.zeros(256, "<f4")
        used = np.frombuffer(c.piece(layer["codebook"]), "<f4")
        book[:len(used)] = used
        layer["codebook"] = {"at": len(blob), "bytes": book.nbytes}
        blob += book.tobytes()
        layer["code_lengths"] += [0] * (256 - len(layer["code_lengths"]))
    header = zlib.compress(json.dumps(c.header).encode())
    dst.write_bytes(MAGIC + struct.pack("<HI", 1, len(header)) + header + bytes(blob))


def test_codebooks_hold_only_the_values_in_use_and_version_1_still_decodes(tmp_path):
    rng = np.random.default_rng(4)
    w = _weights(rng, (8, 8, 3, 3), values=5)
    files = {"m.onnx": _file_with(w)}
    write_container(files, {"w": w}, tmp_path / "x.edc")
    layer = read(tmp_path / "x.edc").header["layers"][0]
    assert layer["codebook"]["bytes"] == 4 * (1 + len(np.unique(w[w != 0])))  # 0.0 + values
    _as_version_1(tmp_path / "x.edc", tmp_path / "v1.edc")
    out = unpack(tmp_path / "v1.edc", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out} == files


def _channel_ranges(rng, shape):
    """Weights whose output channels span three orders of magnitude, as BatchNorm folding
    leaves them."""
    w = (rng.normal(0, 1, shape) * 10.0 ** rng.uniform(-3, 0, (shape[0],) + (1,) *
         (len(shape) - 1))).astype(np.float32)
    w[rng.random(shape) > 0.4] = 0.0
    return w


@pytest.mark.parametrize("layout", [None, (0, 2, 3, 1), (1, 2, 3, 0)],
                         ids=["OIHW", "OHWI", "depthwise-1HWC"])
def test_channel_scaled_layers_round_trip_bit_for_bit(tmp_path, layout):
    from device_runners.container import VERSION, VERSION_3
    from quant.weight_sharing import SharedLayer, share_layer

    rng = np.random.default_rng(7)
    shape = (12, 1, 3, 3) if layout == (1, 2, 3, 0) else (12, 6, 3, 3)
    w = _channel_ranges(rng, shape)
    shared = share_layer(w, 4, "channel")
    assert isinstance(shared, SharedLayer) and len(np.unique(shared.codes)) <= 16
    plain = _channel_ranges(rng, (10, 16))
    layers = {"w": shared, "fc": share_layer(plain, 5, "layer")}
    files = {"m.bin": _file_with(shared.weights(), layout=layout) + _file_with(layers["fc"])}
    sizes = write_container(files, layers, tmp_path / "x.edc")
    c = read(tmp_path / "x.edc")
    assert c.header["layers"][0]["scale_axis"] == list(layout or range(4)).index(0)
    assert "scales" not in c.header["layers"][1] and sizes["scales"] == 2 * 12  # float16
    assert int.from_bytes((tmp_path / "x.edc").read_bytes()[4:6], "little") == VERSION_3
    out = unpack(tmp_path / "x.edc", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out} == files
    # per channel the relative error is what the 15 shared values allow, in every channel
    err = np.abs(shared.weights() - w).reshape(12, -1).max(1) / np.abs(w).reshape(12, -1).max(1)
    assert err.max() < 0.1
    write_container({"m.bin": _file_with(layers["fc"])}, {"fc": layers["fc"]},
                    tmp_path / "plain.edc")  # no scaled layer: the older version is written
    assert int.from_bytes((tmp_path / "plain.edc").read_bytes()[4:6], "little") == VERSION


def test_one_codebook_per_layer_rounds_narrow_channels_away():
    """Why channel scales: on BatchNorm-folded ranges a per-layer codebook zeroes or badly
    rounds the narrow channels; channel-scaled codebooks keep every channel."""
    from quant.weight_sharing import kmeans_share

    w = _channel_ranges(np.random.default_rng(3), (32, 16, 3, 3))

    def worst(shared):
        e = np.linalg.norm((shared - w).reshape(32, -1), axis=1)
        return float((e / np.linalg.norm(w.reshape(32, -1), axis=1)).max())

    assert worst(kmeans_share(w, 5, "channel")) < 0.1 < 0.5 < worst(kmeans_share(w, 5, "layer"))


@pytest.mark.parametrize("edit", [
    lambda layer: layer.update(scale_axis=7),
    lambda layer: layer["scales"].update(bytes=layer["scales"]["bytes"] - 4),
    lambda layer: layer.update(dtype="float64"),
    lambda layer: layer.update(dtype="int8"),  # scales on an int8 layer
])
def test_damaged_scales_are_one_line_errors(tmp_path, edit):
    from quant.weight_sharing import share_layer

    w = _channel_ranges(np.random.default_rng(5), (8, 8, 3, 3))
    shared = share_layer(w, 5, "channel")
    write_container({"m.onnx": _file_with(shared.weights())}, {"w": shared}, tmp_path / "x.edc")
    with pytest.raises(ModelFileError, match="cannot be decoded|reads float32, int8") as err:
        unpack(_with_header(tmp_path / "x.edc", lambda h: edit(h["layers"][0])),
               tmp_path / "out")
    assert "\n" not in str(err.value) and not (tmp_path / "out").exists()


def test_scaled_codebooks_keep_only_the_entries_in_use():
    """After centroid fine-tuning a scaled layer's codebook may hold unused or repeated
    entries in any order; the container keeps the ones in use and renumbers the codes."""
    from quant.container_writer import compact

    book = np.array([0.0, 0.5, -0.25, 0.75, 0.5], np.float32)
    codes = np.array([[4, 0, 2], [2, 4, 0]])
    kept, renumbered = compact(book, codes)
    assert kept.tolist() == [0.0, -0.25, 0.5] and np.array_equal(kept[renumbered], book[codes])


def test_non_finite_scales_are_refused_when_writing(tmp_path):
    from edgebase.errors import ConfigError
    from quant.weight_sharing import share_layer

    shared = share_layer(_channel_ranges(np.random.default_rng(6), (8, 4, 3, 3)), 4, "channel")
    files = {"m.onnx": _file_with(shared.weights())}
    shared.scales[3] = np.nan
    with pytest.raises(ConfigError, match="positive float16 values"):
        write_container(files, {"w": shared}, tmp_path / "x.edc")
    assert not (tmp_path / "x.edc").exists()


def test_long_zero_runs_get_fillers():
    codes = np.zeros(100, np.int64)
    codes[[0, 40, 41]] = [3, 5, 7]
    stored, gaps = sparse_entries(codes, 4)
    assert np.all(gaps <= 15)
    positions = np.cumsum(gaps + 1) - 1
    rebuilt = np.zeros(100, np.int64)
    rebuilt[positions] = stored
    assert np.array_equal(rebuilt, codes) and 0 in stored  # a filler bridged the run


@pytest.mark.parametrize("damage", ["magic", "truncated", "flipped"])
def test_damaged_containers_are_one_line_errors_and_leave_nothing(tmp_path, damage):
    rng = np.random.default_rng(2)
    w = _weights(rng, (8, 8, 3, 3))
    write_container({"m.onnx": _file_with(w)}, {"w": w}, tmp_path / "x.edc")
    data = bytearray((tmp_path / "x.edc").read_bytes())
    if damage == "magic":
        data[:4] = b"ZZZZ"
    elif damage == "truncated":
        data = data[: len(data) - 40]
    else:
        data[-60] ^= 0xFF  # inside the streams or the skeleton
    (tmp_path / "bad.edc").write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as err:
        unpack(tmp_path / "bad.edc", tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _with_header(path: Path, edit) -> Path:
    """The container at ``path`` with its JSON header edited (lengths fixed up)."""
    import json
    import struct
    import zlib

    data = path.read_bytes()
    version, length = struct.unpack_from("<HI", data, 4)
    header = json.loads(zlib.decompress(data[10:10 + length]))
    edit(header)
    new = zlib.compress(json.dumps(header).encode())
    out = path.with_name("hostile.edc")
    out.write_bytes(data[:4] + struct.pack("<HI", version, len(new)) + new + data[10 + length:])
    return out


@pytest.mark.parametrize("edit,message", [
    (lambda h: h["layers"][0].update(count=1 << 40), "cannot be decoded"),  # huge symbol count
    (lambda h: h["layers"][0].update(shape=[1 << 20] * 4), "layers hold"),  # terabytes of weights
    (lambda h: h["files"][0].update(size=1 << 40), "would decode to"),
    (lambda h: h["layers"][0]["code_lengths"].__setitem__(0, float("inf")), "cannot be decoded"),
    (lambda h: h["layers"].__setitem__(0, [1, 2]), "damaged container header"),
    (lambda h: h["files"][0].pop("holes"), "damaged container header"),
])
def test_hostile_headers_are_refused_before_allocating(tmp_path, edit, message):
    rng = np.random.default_rng(4)
    w = _weights(rng, (8, 8, 3, 3))
    write_container({"m.onnx": _file_with(w)}, {"w": w}, tmp_path / "x.edc")
    with pytest.raises(ModelFileError, match=message) as err:
        unpack(_with_header(tmp_path / "x.edc", edit), tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_huffman_refuses_more_symbols_than_bits():
    with pytest.raises(huffman.HuffmanError, match="cannot fit"):
        huffman.decode(b"\xff" * 4, np.array([1, 1]), 33)


def test_decoder_imports_no_torch(tmp_path):
    rng = np.random.default_rng(3)
    w = _weights(rng, (4, 4, 3, 3))
    write_container({"m.onnx": _file_with(w)}, {"w": w}, tmp_path / "x.edc")
    code = ("import sys; from device_runners.container import unpack; "
            f"unpack({str(tmp_path / 'x.edc')!r}, {str(tmp_path / 'o')!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_han_squeezenet_reencoded_bit_identically_below_560_kb(tmp_path):
    """Song Han's 660 KB file, re-encoded: the container decodes to the exact ONNX export of
    his weights (graph and biases included) and is smaller than 560 KB."""
    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source

    source = load_source("squeezenet1_0", weights=need(NET))
    art = compress(source, CompressConfig(target="onnx", output_dir=tmp_path), log=lambda m: None)
    c = art.extra["container"]
    assert all(layer["unchanged"] for layer in c["layers"])  # his 256-value codebooks kept
    assert (tmp_path / art.file).stat().st_size == c["sizes"]["total"] < 560_000
    files = unpack(tmp_path / art.file, tmp_path / "decoded")
    onnx_file = next(p for p in files if p.suffix == ".onnx")
    from device_runners.loading import load

    b = load(onnx_file)
    import torch

    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    with torch.no_grad():
        ref = source.model(torch.from_numpy(x)).numpy()
    assert np.abs(b.run(x)[0] - ref).max() < 1e-4


def compress_uniform(source, out: Path):
    """Half the weights of every layer pruned, 5-bit codebooks, no fine-tuning."""
    from deploy.compress_stage import CompressConfig, compress
    from quant.finetune import FinetuneConfig

    return compress(source, CompressConfig(target="onnx", output_dir=out, prune=0.5,
                                           share_bits=5, prune_layers="uniform",
                                           share_layers="uniform",
                                           finetune=FinetuneConfig(epochs=0)),
                    log=lambda m: None)


def test_compress_a_batchnorm_net_with_pruning_and_sharing_no_finetuning(tmp_path):
    from deploy.export import load_source

    source = load_source("shufflenet_v2_x0_5.cifar10")
    art = compress_uniform(source, tmp_path)
    c = art.extra["container"]
    assert art.validation["status"] == "passed"  # the file against the shared parent
    assert all(f["codebook_entries"] <= 31 for f in c["layers"])  # 5 bits, 0 apart
    assert {f["scale"] for f in c["layers"]} == {"channel"}  # the default
    assert c["ratio_vs_target_file"] > 6
    sizes = c["sizes"]  # the paper's columns: each step smaller than the one before
    assert sizes["files"] > sizes["after_pruning"] > sizes["after_sharing"] > sizes["total"]
    assert art.passes[-1]["name"] == "deep_compression" and not art.passes[-1]["fine_tuned"]


def test_compress_googles_mobilenet_v1_with_tf_same_padding(tmp_path, shared_data):
    """Google's MobileNetV1-0.25 (its convs pad like TensorFlow's "SAME", a Conv2d subclass
    whose forward reads the input's shape): every BatchNorm folds, every conv is pruned and
    shared, and the decoded file passes its check against the shared parent."""
    import torch

    from deploy.compress_stage import fold_batchnorm
    from deploy.export import load_source
    from quant.weight_sharing import weighted_layers

    source = load_source("mobilenet_v1", width=0.25, num_classes=1001,
                         weights=shared_data / "models" / "mobilenet_v1_0.25_224_float.tflite")
    folded = fold_batchnorm(source.model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(folded(x), source.model(x), atol=1e-4)
    convs = [n for n, m in weighted_layers(source.model)]
    assert len(convs) == 28  # 27 convolutions and the classifier
    art = compress_uniform(source, tmp_path)
    c = art.extra["container"]
    assert art.validation["status"] == "passed"
    assert len(c["layers"]) == 28 and all(f["codebook_entries"] <= 31 for f in c["layers"])
    assert c["ratio_vs_target_file"] > 6


def test_batchnorm_folding_of_an_untraceable_model():
    """A forward with data-dependent control flow cannot be traced: the compress stage says so
    (strict), bias correction folds the conv/BatchNorm pairs of its Sequentials instead."""
    import torch
    from torch import nn

    from quant.batchnorm_folding import fold_batchnorm_graph

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

        def forward(self, x):
            return self.body(x) if x.sum() > 0 else -self.body(x)

    torch.manual_seed(0)
    model = Branchy().eval()
    model.body[1].running_var.uniform_(0.5, 2)
    model.body[1].running_mean.uniform_(-1, 1)
    with pytest.raises(torch.fx.proxy.TraceError):
        fold_batchnorm_graph(model)
    folded = fold_batchnorm_graph(model, untraceable="sequential")
    assert isinstance(folded.body[1], nn.Identity) and isinstance(model.body[1], nn.BatchNorm2d)
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-6)


def test_batchnorm_folding_leaves_modules_called_twice():
    """A conv/BatchNorm pair applied at two places, and a BatchNorm that also follows a pooling:
    folding either would change every call, so they stay; the output is the model's."""
    import torch
    from torch import nn

    from quant.batchnorm_folding import fold_batchnorm_graph

    class Reused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
            self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
            self.once, self.bn_once = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.bn(self.conv(self.bn(self.conv(x))))  # the same pair twice
            z = self.bn2(self.conv2(x)) + self.bn2(nn.functional.avg_pool2d(x, 1))
            return y + z + self.bn_once(self.once(x))

    torch.manual_seed(0)
    model = Reused().eval()
    for bn in (model.bn, model.bn2, model.bn_once):
        bn.running_var.uniform_(0.5, 2)
        bn.running_mean.uniform_(-1, 1)
    folded = fold_batchnorm_graph(model)
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn2, nn.BatchNorm2d)
    assert isinstance(folded.bn_once, nn.Identity)  # the pair used once is folded
    x = torch.rand(2, 4, 3, 3)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)
