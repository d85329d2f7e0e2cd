"""Google's float MobileNet V1 0.25 .tflite imported into the zoo's MobileNetV1: same function
(max |dprob| <= 1e-4 on real photos), reachable through --weights, and clear errors for files
that do not fit."""
from __future__ import annotations

import numpy as np
import pytest

from edgebase.errors import WeightsError

FLOAT = "models/mobilenet_v1_0.25_224_float.tflite"
QUANT = "models/mobilenet_v1_0.25_224_quant.tflite"


def google_probs(path, x_nchw: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for x in x_nchw:
        it.set_tensor(i, x.transpose(1, 2, 0)[None])
        it.invoke()
        out.append(it.get_tensor(o)[0].copy())
    return np.stack(out)


def imported_and_images(shared_data, n: int):
    import torch

    from deploy.export import load_source
    from deploy.validate import validation_batch

    torch.set_num_threads(1)
    source = load_source("mobilenet_v1", weights=shared_data / FLOAT, width=0.25,
                         num_classes=1001)
    x, _ = validation_batch(source.entry.preprocess, max(n, 64),
                            shared_data / "imagenet-sample-1k.zip")
    return source, x[:n] if n < 64 else x


def check_same_function(shared_data, n: int) -> float:
    import torch

    source, x = imported_and_images(shared_data, n)
    with torch.no_grad():
        ours = torch.softmax(source.model(torch.from_numpy(x)), 1).numpy()
    theirs = google_probs(shared_data / FLOAT, x)
    diff = float(np.abs(ours - theirs).max())
    assert diff <= 1e-4, diff
    assert np.array_equal(ours.argmax(1), theirs.argmax(1))
    return diff


def test_import_matches_google_float_file(shared_data):
    from zoo.importers.tflite_mobilenet_v1 import TF_PREPROCESS

    check_same_function(shared_data, 16)
    source, _ = imported_and_images(shared_data, 1)
    entry = source.entry
    assert entry.preprocess == TF_PREPROCESS  # x/127.5 - 1, as Google trained it
    assert entry.labels == "imagenet1001" and entry.kwargs["tf_padding"] is True
    info = source.weights["info"]
    assert info["bn_folded"] and info["layers"] == 28
    from zoo.labels import labels

    names = labels(entry.labels)
    assert len(names) == 1001 and names[0] == "background"


@pytest.mark.slow
def test_import_matches_on_all_1000_photos(shared_data):
    check_same_function(shared_data, 1000)


def test_files_that_do_not_fit(shared_data, tmp_path):
    from deploy.export import load_source

    def load(**kw):
        return load_source("mobilenet_v1", **kw)

    with pytest.raises(WeightsError, match=r"layer 0 .* does not fit .*check --width"):
        load(weights=shared_data / FLOAT, width=0.5, num_classes=1001)
    with pytest.raises(WeightsError, match=r"\(1001, 256\) does not fit the model's \(1000, 256\)"
                                           r".*--num-classes"):
        load(weights=shared_data / FLOAT, width=0.25)
    with pytest.raises(WeightsError, match="is not float32 .*quantized file"):
        load(weights=shared_data / QUANT, width=0.25, num_classes=1001)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="not a TFLite flatbuffer"):
        load(weights=junk, width=0.25, num_classes=1001)
    with pytest.raises(WeightsError, match="no importer for '.tflite'"):
        load_source("mobilenet_v2", weights=shared_data / FLOAT)


def test_truncated_file_is_a_weights_error(shared_data, tmp_path):
    from deploy.export import load_source

    data = (shared_data / FLOAT).read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[:len(data) // 3])
    with pytest.raises(WeightsError):
        load_source("mobilenet_v1", weights=cut, width=0.25, num_classes=1001)
