"""Song Han's Deep Compression SqueezeNet 1.0 through the registered importer: exact decoding,
Caffe preprocessing carried to the manifest, one-line errors for damaged files."""
from __future__ import annotations

import numpy as np
import pytest

from edgebase.errors import WeightsError
from tests.runner_models import IMAGENET, MODELS, need

NET = MODELS / "squeezenet_v1.0_deep_compression.net"


def test_decodes_every_byte_into_squeezenet1_0():
    from deploy.export import load_source

    source = load_source("squeezenet1_0", weights=need(NET))
    info = source.weights["info"]
    # the file's own counts (data README): 1,244,448 weights, 422,083 stored, 415,921 non-zero
    assert (info["weights"], info["stored_entries"], info["nonzero_weights"]) == (
        1244448, 422083, 415921)
    sd = source.model.state_dict()
    assert info["density"] == pytest.approx(415921 / 1244448, abs=1e-4)
    w = sd["features.12.expand3x3.weight"].numpy()  # fire9's expand 3x3: pruned hard
    assert w.shape == (256, 64, 3, 3) and np.mean(w != 0) < 0.5
    # weight sharing: each layer takes at most 256 distinct values, zero among them
    for key in ("features.3.squeeze.weight", "classifier.1.weight"):
        assert len(np.unique(sd[key].numpy())) <= 256
    pre = source.entry.preprocess
    assert (pre.color, pre.resize, pre.crop) == ("BGR", 256, 227)
    assert np.allclose(np.array(pre.mean) * 255, (104, 117, 123))
    assert np.allclose(np.array(pre.std) * 255, 1.0)
    assert source.entry.labels == "imagenet"


@pytest.mark.parametrize("damage", ["truncated", "trailing", "count"])
def test_damaged_files_are_one_line_errors(tmp_path, damage):
    from deploy.export import load_source

    data = bytearray(need(NET).read_bytes())
    if damage == "truncated":
        data = data[:-1000]
    elif damage == "trailing":
        data += b"\0"
    else:
        data[0:4] = (10**7).to_bytes(4, "little")  # conv1 claims more entries than it has
    bad = tmp_path / "bad.net"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as err:
        load_source("squeezenet1_0", weights=bad)
    assert "\n" not in str(err.value) and "bad.net" in str(err.value)


def test_other_architectures_have_no_net_importer(tmp_path):
    from deploy.export import load_source

    with pytest.raises(WeightsError, match="no importer for '.net'"):
        load_source("squeezenet1_1", weights=need(NET))


@pytest.mark.slow
def test_runner_eval_reproduces_the_published_file_accuracy(tmp_path):
    """Exported to ONNX, evaluated by the runner with no flags: Caffe preprocessing comes from
    the manifest. 62.5 % / 83.3 % in PyTorch on the 1000 photos."""
    from deploy.export import ExportConfig, export, load_source
    from device_runners.evaluate import evaluate

    source = load_source("squeezenet1_0", weights=need(NET))
    art = export(source, ExportConfig(target="onnx", output_dir=tmp_path))
    r = evaluate(tmp_path / art.file, need(IMAGENET), threads=2)
    assert r.images == 1000
    assert 62.0 <= r.top1 <= 63.0 and 82.8 <= r.top5 <= 83.8
