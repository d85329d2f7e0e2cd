"""device_runners.quantization: the one mapping between floats and a file's integer inputs and
outputs, checked on numbers and on Google's uint8 MobileNet in LiteRT."""
from __future__ import annotations

import numpy as np
import pytest

from device_runners.quantization import dequantize, quantize
from edgebase.errors import ConfigError
from edgebase.manifest import TensorSpec
from tests.runner_models import IMAGENET, QUANT_TFLITE, need


def spec(dtype, scale=None, zero_point=None):
    return TensorSpec("x", (1, 4), dtype, scale=scale, zero_point=zero_point)


def test_quantize_rounds_half_to_even_then_adds_the_zero_point_and_clamps():
    u8 = spec("uint8", 0.5, 10)
    # x / scale: 0.5 -> 0 (half to even), 1.5 -> 2, -3 -> -6, 200 -> 400 (clamped to 255)
    got = quantize(np.array([0.25, 0.75, -3.0, 200.0], np.float32), u8)
    assert got.dtype == np.uint8 and got.tolist() == [10, 12, 4, 255]
    i8 = spec("int8", 0.5, -5)
    assert quantize(np.array([-100.0, 0.0, 100.0]), i8).tolist() == [-128, -5, 127]


def test_dequantize_inverts_quantize_within_half_a_step():
    s = spec("int8", 0.037, 3)
    x = np.linspace(-4, 4, 101).astype(np.float32)
    back = dequantize(quantize(x, s), s)
    assert back.dtype == np.float32
    assert np.abs(back - x).max() <= 0.037 / 2 + 1e-6


def test_floats_and_unquantized_integers_pass_as_they_are():
    x = np.array([1.5, -2.25], np.float64)
    assert quantize(x, spec("float32")).dtype == np.float32
    assert dequantize(np.array([7, 9], np.int32), spec("int32")).tolist() == [7.0, 9.0]
    with pytest.raises(ConfigError, match="'x' is uint8 without quantization parameters"):
        quantize(x, spec("uint8"))


def test_runner_eval_and_the_host_comparison_feed_and_read_a_uint8_file_alike():
    """runner eval's input/score path and FileLogits (validation, int8 accuracy) give the same
    float scores for the same pixels of a real uint8-in, uint8-out file; and those scores
    are the file's own integers through its output quantization."""
    from device_runners.backends.litert import LiteRTBackend
    from device_runners.evaluate import Pipeline, scores, to_input
    from device_runners.file_logits import FileLogits
    from edgebase.images import ImageSet, normalize, resize_crop

    images = ImageSet(need(IMAGENET))
    rgb = resize_crop(images.load(images.subset(1, seed=3)[0]), 224, 224)
    pipe = Pipeline(resize=224, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3, layout="NHWC")
    with LiteRTBackend(need(QUANT_TFLITE), threads=1) as backend:
        inp, out = backend.inputs[0], backend.outputs[0]
        assert inp.dtype == out.dtype == "uint8" and inp.scale and out.scale
        fed = to_input(rgb, pipe, inp)[None]
        raw = np.asarray(backend.run(fed)[0])
        by_eval = scores(raw, out)
    with FileLogits(QUANT_TFLITE, "litert", "NHWC", threads=1) as f:
        by_host = f(normalize(rgb, pipe.mean, pipe.std, "NCHW")[None])
    assert np.array_equal(by_eval, by_host)
    want = (raw.astype(np.float64) - out.zero_point) * out.scale
    assert np.allclose(by_eval, want, rtol=1e-6) and np.ptp(raw) > 0
