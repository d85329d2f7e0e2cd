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
    tensors = int8_weights(target, {p.name: p.read_bytes() for p in files}, model.name)
    # pruned weights stay exactly 0 through symmetric weight quantization
    zeros = sum(int((t == 0).sum()) for t in tensors.values()) / sum(t.size for t in tensors.values())
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
