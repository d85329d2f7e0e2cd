"""ZeroQ: inputs distilled from BatchNorm statistics, deterministic, closer to the model's
statistics than noise; models without statistics are refused (never a silent noise fallback)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from edgebase.errors import ConfigError


def bn_model():
    """A random-weight net whose BatchNorm statistics are those of real CIFAR-10 photos (one
    pass in training mode with cumulative averages): statistics a real input can reach."""
    import torch
    from torch import nn

    from deploy.validate import data_dir, validation_batch
    from zoo import create_model

    torch.manual_seed(0)
    model, entry = create_model("mobilenet_v2_x0_5.cifar10")
    x, _ = validation_batch(entry.preprocess, 64, data_dir() / "cifar10.zip")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(x))
    return model.eval(), entry


def test_distilled_inputs_match_batchnorm_statistics():
    import torch

    from quant import zeroq
    from quant.zeroq import distill, statistics_loss

    torch.set_num_threads(1)
    model, entry = bn_model()
    calib = distill(model, entry.input_size, n=4, seed=1, iterations=25, batch=2)
    assert calib.inputs.shape == (4, 3, 32, 32) and calib.inputs.dtype == np.float32
    assert np.isfinite(calib.inputs).all()
    s = calib.source
    assert s["kind"] == "zeroq" and s["batchnorm_layers"] > 10 and s["iterations"] == 25
    assert all(f < 0.8 * i for f, i in zip(s["final_loss"], s["initial_loss"]))
    noise = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)).numpy()
    assert statistics_loss(model, calib.inputs) < 0.8 * statistics_loss(model, noise)
    assert distill(model, entry.input_size, n=4, seed=1, iterations=25, batch=2) is calib
    zeroq._CACHE.clear()  # cached per model object; a fresh run must give the same inputs
    again = distill(model, entry.input_size, n=4, seed=1, iterations=25, batch=2)
    assert again is not calib and np.array_equal(again.inputs, calib.inputs)
    assert all(p.requires_grad for p in model.parameters())  # the model is given back as it was
    assert "ZeroQ" in calib.describe()


def test_models_without_statistics_are_refused(shared_data):
    from deploy.export import load_source
    from quant.zeroq import distill
    from zoo import get_entry

    entry = get_entry("shufflenet_v2_x0_5.cifar10")
    fresh = entry.builder(**entry.kwargs).eval()  # not the packaged weights: BN never saw data
    with pytest.raises(ConfigError, match="no BatchNorm running statistics.*--calib PATH"):
        distill(fresh, entry.input_size, n=2, iterations=1)
    folded = load_source("mobilenet_v1", width=0.25, num_classes=1001,
                         weights=shared_data / "models/mobilenet_v1_0.25_224_float.tflite")
    with pytest.raises(ConfigError, match="folded into the weights"):
        distill(folded.model, 224, n=2, iterations=1)


def test_zeroq_on_request_with_progress_bar_and_settled_loss(capsys):
    """`--calib zeroq`: the default budget, a progress bar with ETA on stderr, and a loss that
    ends below its midway value (at a constant rate it once ended above it, 0.03 -> 1.16)."""
    import torch

    from deploy.export import load_source
    from quant import zeroq
    from deploy.int8_stage import Int8Config, calibration_data

    torch.set_num_threads(1)
    source = load_source("shufflenet_v2_x0_5.cifar10")
    config = Int8Config(calib="zeroq", calib_size=4)
    calib = calibration_data(source, config)
    err = capsys.readouterr().err
    s = calib.source
    assert s["kind"] == "zeroq" and s["iterations"] == zeroq.ITERATIONS and len(calib) == 4
    assert "--calib zeroq, distilling 4 inputs" in err
    # tqdm's bar: "ZeroQ:  41%|████ | 41/100 [00:06<00:08,  6.85it/s, batch 1/1, BN loss .."
    bar = re.compile(rf"ZeroQ: +\d+%\|.*\| \d+/{zeroq.ITERATIONS} \[\d\d:\d\d<\d\d:\d\d, "
                     rf"+[\d.]+(it/s|s/it), batch 1/1, BN loss [\d.]+\]")
    redrawn = [seg for seg in err.split("\r") if bar.search(seg)]
    assert len(redrawn) >= 2, err  # redrawn in place as it runs, the ETA after "<"
    assert s["final_loss"][0] < s["midway_loss"][0] < s["initial_loss"][0]
    assert s["schedule"] == "cosine to 0"


def test_zeroq_on_request_for_random_init_weights_is_refused():
    from deploy.export import load_source
    from deploy.int8_stage import Int8Config, calibration_data

    source = load_source("shufflenet_v2_x1_0", input_size=32)
    config = Int8Config(calib="zeroq", calib_size=2)
    with pytest.raises(ConfigError, match="no BatchNorm running statistics.*--calib synthetic"):
        calibration_data(source, config)
