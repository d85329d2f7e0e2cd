"""Deep Compression containers that carry an int8 file: the shared net quantized by the
target's own quantizer, its int8 weight tensors Huffman-coded and decoded bit for bit."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}


@pytest.mark.parametrize("target", ["onnx", pytest.param("tflite", marks=pytest.mark.slow),
                                    pytest.param("openvino", marks=pytest.mark.slow)])
def test_an_int8_container_carries_the_int8_file(tmp_path, shared_data, target):
    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source
    from deploy.int8_stage import Int8Config
    from device_runners.container import read, unpack
    from device_runners.evaluate import evaluate
    from quant.finetune import FinetuneConfig
    from quant.int8_weights import int8_weights

    source = load_source("shufflenet_v2_x0_5.cifar10")
    art = compress(source, CompressConfig(
        target=target, output_dir=tmp_path, prune=0.5, share_bits=5, prune_layers="uniform",
        share_layers="uniform", int8=Int8Config(), finetune=FinetuneConfig(epochs=0)),
        log=lambda m: None)
    assert art.precision == "int8" and art.validation["status"] == "passed"
    assert art.file == f"shufflenet_v2_x0_5.cifar10.int8{SUFFIX[target]}.edc"
    c = read(tmp_path / art.file)
    assert len(c.header["layers"]) == 57  # every conv and the classifier
    assert {layer.get("dtype") for layer in c.header["layers"]} == {"int8"}
    files = unpack(c, tmp_path / "decoded")
    model = files[0]
    facts = art.extra["container"]
    assert hashlib.sha256(model.read_bytes()).hexdigest() == facts["target_sha256"]
    tensors, left = int8_weights(target, {p.name: p.read_bytes() for p in files}, model.name)
    assert len(tensors) == 57 and not left and len(facts["int8_tensors"]) == 57
    # pruned weights stay exactly 0 through symmetric weight quantization
    zeros = sum(int((t == 0).sum()) for t in tensors.values()) / sum(
        t.size for t in tensors.values())
    assert zeros >= 0.5
    if target == "onnx":  # OIHW: per output channel, 31 clusters give at most 31 int8 values
        assert max(len(np.unique(ch[ch != 0])) for t in tensors.values() for ch in t) <= 31
    assert facts["ratio_vs_target_file"] > 2 and facts["ratio_vs_fp32_file"] > 6
    on_container = evaluate(tmp_path / art.file, shared_data / "cifar10.zip", limit=64,
                            threads=1)
    on_file = evaluate(model, shared_data / "cifar10.zip", limit=64, threads=1)
    assert on_container.correct1 == on_file.correct1 and on_container.images == 64


def test_int8_containers_only_for_targets_with_a_reader(tmp_path):
    from deploy.compress_stage import CompressConfig
    from deploy.int8_stage import Int8Config
    from edgebase.errors import ConfigError

    with pytest.raises(ConfigError, match="onnx, tflite, openvino"):
        CompressConfig(target="executorch", output_dir=tmp_path, int8=Int8Config())


def test_int8_layers_round_trip_and_ambiguous_tensors_stay_in_the_file(tmp_path):
    """Unit level: int8 tensors as a container stores them (an int8 codebook, no scales), and
    a tensor whose bytes occur twice in the files is left in the skeleton, not guessed."""
    from device_runners.container import read, unpack
    from quant.container_writer import write_container
    from quant.int8_weights import int8_weights

    rng = np.random.default_rng(0)
    a = rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8)
    a[rng.random(a.shape) < 0.6] = 0
    b = rng.integers(-5, 6, (10, 32)).astype(np.int8)
    files = {"m.onnx": b"HEAD" * 8 + a.tobytes() + b"MID" + b.tobytes() + b.tobytes()}
    write_container(files, {"a": a}, tmp_path / "x.edc")
    layer = read(tmp_path / "x.edc").header["layers"][0]
    assert layer["dtype"] == "int8" and "scales" not in layer
    assert layer["codebook"]["bytes"] == 1 + len(np.unique(a[a != 0]))  # one byte per entry
    assert {p.name: p.read_bytes() for p in unpack(tmp_path / "x.edc", tmp_path / "o")} == files

    import onnx
    from onnx import helper, numpy_helper

    graph = helper.make_graph([], "g", [], [], initializer=[
        numpy_helper.from_array(a, "a"), numpy_helper.from_array(b, "b"),
        numpy_helper.from_array(b.copy(), "b_again")])  # equal bytes: no one place to cut
    onnx_bytes = helper.make_model(graph).SerializeToString()
    assert onnx.load_from_string(onnx_bytes).graph.initializer[1].raw_data == b.tobytes()
    kept, left = int8_weights("onnx", {"m.onnx": onnx_bytes}, "m.onnx")
    assert list(kept) == ["a"] and left == ["b", "b_again"]


def test_openvino_reader_refuses_constants_outside_the_bin():
    from edgebase.errors import ModelFileError
    from quant.openvino_ptq import int8_weights

    xml = (b'<net><layers><layer id="0" name="w" type="Const"><data element_type="i8" '
           b'shape="4,4" offset="8" size="16"/></layer></layers></net>')
    assert int8_weights({"m.xml": xml, "m.bin": bytes(24)}, "m.xml")["w"].shape == (4, 4)
    with pytest.raises(ModelFileError, match="outside its .bin"):
        int8_weights({"m.xml": xml, "m.bin": bytes(20)}, "m.xml")
