"""The runtime backends: loading by suffix, specs, batch handling, errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgebase.errors import ConfigError, ModelFileError, ShapeError, UnknownNameError
from device_runners.loading import load
from tests.runner_models import FLOAT_TFLITE, QUANT_TFLITE, need, small_models  # noqa: F401


@pytest.fixture
def small(small_models):
    return small_models


def test_tflite_float_specs_and_batches():
    b = load(need(FLOAT_TFLITE), threads=1)
    assert b.name == "litert" and b.version
    assert b.input.shape == (1, 224, 224, 3) and b.input.dtype == "float32"
    assert b.input.layout == "NHWC" and b.input.scale is None
    assert b.outputs[0].shape == (1, 1001)
    x = np.random.default_rng(0).uniform(-1, 1, (3, 224, 224, 3)).astype(np.float32)
    out3 = b.run(x)[0]
    out1 = np.concatenate([b.run(x[i:i + 1])[0] for i in range(3)])
    assert out3.shape == (3, 1001)
    np.testing.assert_allclose(out3, out1, atol=1e-5)
    np.testing.assert_allclose(out3.sum(1), 1.0, atol=1e-3)  # softmax output


def test_tflite_quant_specs_carry_quantization():
    b = load(need(QUANT_TFLITE))
    assert b.input.dtype == "uint8" and b.input.scale == pytest.approx(1 / 128)
    assert b.input.zero_point == 128
    assert b.outputs[0].dtype == "uint8" and b.outputs[0].scale == pytest.approx(1 / 256)


def test_float_values_for_integer_input_are_refused():
    b = load(need(QUANT_TFLITE))
    with pytest.raises(ShapeError, match="takes uint8 .*scale 0.0078125, zero point 128"):
        b.run(np.zeros((1, 224, 224, 3), np.float32))
    assert b.run(np.zeros((1, 224, 224, 3), np.int64))[0].dtype == np.uint8


def test_onnx_and_openvino_match_numpy_reference(small):
    x, ref = small["input"], small["reference"]
    for path in (small["onnx"], small["xml"]):
        b = load(path, threads=1)
        assert b.input.layout == "NCHW"
        np.testing.assert_allclose(b.run(x)[0], ref, atol=1e-4)
        # batch 5 on a batch-1 OpenVINO model runs in chunks; ONNX has a dynamic batch
        x5 = np.repeat(x, 5, axis=0) * np.arange(1, 6, dtype=np.float32)[:, None, None, None]
        out5 = b.run(x5)[0]
        assert out5.shape == (5, 10)
        np.testing.assert_allclose(out5[0], ref[0], atol=1e-4)
        np.testing.assert_allclose(out5[3], b.run(x5[3:4])[0][0], atol=1e-4)
    assert load(small["onnx"]).input.shape == (-1, 3, 32, 32)
    # OpenVINO also reads ONNX directly
    ov = load(small["onnx"], runtime="openvino")
    np.testing.assert_allclose(ov.run(x)[0], ref, atol=1e-4)


def test_profile_rows(small):
    x = small["input"]
    for path in (small["onnx"], small["xml"]):
        rows = load(path, threads=1).profile(x, runs=3)
        assert rows and {"name", "type", "calls", "total_ms", "mean_ms"} <= set(rows[0])
        assert any(r["type"] == "Convolution" or r["type"] == "Conv" for r in rows)
        assert rows == sorted(rows, key=lambda r: -r["total_ms"])


def test_bad_inputs_and_names(small, tmp_path):
    b = load(small["onnx"])
    with pytest.raises(ShapeError, match="expects"):
        b.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(ShapeError, match="inputs given"):
        b.run({"nope": small["input"]})
    from edgebase.capabilities import RUNTIMES

    with pytest.raises(UnknownNameError, match="valid: " + ", ".join(sorted(RUNTIMES))):
        load(small["onnx"], runtime="tensorrt")
    with pytest.raises(ConfigError, match="onnxruntime reads"):
        load(need(FLOAT_TFLITE), runtime="onnxruntime")
    with pytest.raises(ModelFileError, match="unknown model file type .pt"):
        load(tmp_path / "x.pt")
    with pytest.raises(ModelFileError, match="no such file"):
        load(tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="threads"):
        load(small["onnx"], threads=0)


def test_wrong_suffix_is_named(small, tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(need(FLOAT_TFLITE).read_bytes())
    with pytest.raises(ModelFileError, match="looks like .tflite"):
        load(fake)
    fake = tmp_path / "model.tflite"
    fake.write_bytes(small["onnx"].read_bytes())
    with pytest.raises(ModelFileError, match="not a TFLite flatbuffer.*looks like .onnx"):
        load(fake)
    (tmp_path / "empty.xml").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty file"):
        load(tmp_path / "empty.xml")


def test_isolated_load_reports_bad_file_and_keeps_good_ones(tmp_path):
    data = need(FLOAT_TFLITE).read_bytes()
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError) as err:
        load(bad, isolate=True)
    assert "\n" not in str(err.value)
    assert load(FLOAT_TFLITE, isolate=True).input.shape == (1, 224, 224, 3)


def test_tflite_op_counts_of_a_file_with_a_non_utf8_tensor_name(tmp_path):
    """The interpreter runs a file whose inner tensor name is not UTF-8; the op histogram must
    not fail on it (it reads the op names only)."""
    data = bytearray(need(FLOAT_TFLITE).read_bytes())
    at = data.index(b"MobilenetV1/MobilenetV1/Conv2d_9_pointwise/Relu6")
    data[at + 3] = 0xEF  # starts a three-byte UTF-8 sequence that the next byte breaks
    path = tmp_path / "odd_name.tflite"
    path.write_bytes(bytes(data))
    with load(path, threads=1) as b:
        b.run(b.example(seed=0)[b.input.name])
        counts = b.op_counts()
    with load(FLOAT_TFLITE, threads=1) as b:
        assert counts == b.op_counts() and counts  # the same graph, the same histogram


def test_isolated_check_stops_a_file_that_outgrows_its_memory_budget(tmp_path):
    """An ONNX file of a few hundred bytes that fills a tensor of 2**30 floats (4 GB) when run.
    The check's child is stopped at the budget (2 GB for a file this small) and the runner says
    so in one line, instead of a board running out of memory."""
    import time

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from device_runners.isolation import MEMORY_FLOOR, memory_budget

    shape = numpy_helper.from_array(np.array([1 << 30], np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
         helper.make_node("Add", ["x", "zeros"], ["y"])], "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1 << 30])], [shape])
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert memory_budget(path) < MEMORY_FLOOR + 10_000
    t0 = time.monotonic()
    with pytest.raises(ModelFileError, match=r"used more than 2\.0 GB") as err:
        load(path, isolate=True)
    assert "\n" not in str(err.value)
    assert time.monotonic() - t0 < 100  # stopped at the budget, not at the 120 s time-out
