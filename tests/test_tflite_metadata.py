"""TFLite Support metadata: written into a model, read back by two independent readers.

Readers: edgebase.tflite_metadata.read_metadata (hand-written slot table) and the
flatc-generated accessors in tests/tflite_metadata_schema_generated.py (Google's code),
with labels taken from the appended zip by zipfile. Google's own metadata-bearing model
anchors the reader to the real format.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgebase.errors import ConfigError, ModelFileError
from edgebase import tflite_metadata as tm
from tests import tflite_metadata_schema_generated as gen

pytest.importorskip("ai_edge_litert")
from ai_edge_litert import schema_py_generated as tfl  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLOAT = DATA / "models" / "mobilenet_v1_0.25_224_float.tflite"
WITH_META = DATA / "models" / "mobilenet_v1_0.25_224_float_with_metadata.tflite"
LABELS = DATA / "imagenet-labels-1001.txt"
MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]

pytestmark = pytest.mark.skipif(not FLOAT.exists(), reason=f"{DATA} is not there")


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return LABELS.read_text().splitlines()


@pytest.fixture(scope="module")
def written(labels) -> bytes:
    return tm.write_metadata(
        FLOAT.read_bytes(), name="MobileNet V1 0.25", description="ImageNet classifier",
        labels=labels, mean=MEAN, std=STD, version="1.2.3",
        input_description="RGB 224x224", output_description="1001 class probabilities")


def generated_metadata(model_bytes: bytes) -> "gen.ModelMetadata":
    """The metadata table found through the TFLite schema and read with Google's generated code."""
    model = tfl.Model.GetRootAs(model_bytes, 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(b"TFLITE_METADATA") == 1, names
    entry = model.Metadata(names.index(b"TFLITE_METADATA"))
    buf = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert gen.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    return gen.ModelMetadata.GetRootAs(buf, 0)


def run_litert(model: bytes | Path, x: np.ndarray) -> tuple[np.ndarray, list, list]:
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
    it = Interpreter(**kw, num_threads=1)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    it.set_tensor(ins[0]["index"], x)
    it.invoke()
    desc = lambda ds: [(d["name"], list(d["shape"]), d["dtype"]) for d in ds]  # noqa: E731
    return it.get_tensor(outs[0]["index"]), desc(ins), desc(outs)


def test_reads_googles_example(labels):
    meta = tm.read_metadata(WITH_META)
    assert meta["labels"] == labels and len(meta["labels"]) == 1001
    assert meta["mean"] == [127.5] and meta["std"] == [127.5]
    inp = meta["subgraphs"][0]["inputs"][0]
    assert inp["content"] == "ImageProperties" and inp["color_space"] == "RGB"
    assert inp["stats"] == {"min": [-1.0], "max": [1.0]}
    assert meta["packed_files"] == ["labels.txt"]
    assert meta["name"] == "MobileNetV1 image classifier"


def test_reads_back_with_own_reader(written, labels):
    meta = tm.read_metadata(written)
    assert meta["labels"] == labels
    assert meta["mean"] == pytest.approx(MEAN) and meta["std"] == pytest.approx(STD)
    assert (meta["name"], meta["version"], meta["min_parser_version"]) == \
        ("MobileNet V1 0.25", "1.2.3", "1.0.0")
    inp = meta["subgraphs"][0]["inputs"][0]
    assert inp["stats"]["min"] == pytest.approx([-m / s for m, s in zip(MEAN, STD)], rel=1e-6)
    assert inp["stats"]["max"] == pytest.approx([(255 - m) / s for m, s in zip(MEAN, STD)], rel=1e-6)


def test_reads_back_with_generated_reader_and_zipfile(written, labels):
    md = generated_metadata(written)
    assert md.Name() == b"MobileNet V1 0.25" and md.Version() == b"1.2.3"
    assert md.MinParserVersion() == b"1.0.0"
    assert md.SubgraphMetadataLength() == 1
    sg = md.SubgraphMetadata(0)
    assert sg.InputTensorMetadataLength() == 1 and sg.OutputTensorMetadataLength() == 1
    inp = sg.InputTensorMetadata(0)
    assert inp.Description() == b"RGB 224x224"
    assert inp.Content().ContentPropertiesType() == gen.ContentProperties.ImageProperties
    image = gen.ImageProperties()
    union = inp.Content().ContentProperties()
    image.Init(union.Bytes, union.Pos)
    assert image.ColorSpace() == gen.ColorSpaceType.RGB
    assert inp.ProcessUnitsLength() == 1
    unit = inp.ProcessUnits(0)
    assert unit.OptionsType() == gen.ProcessUnitOptions.NormalizationOptions
    norm = gen.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    np.testing.assert_allclose(norm.MeanAsNumpy(), MEAN, rtol=1e-6)
    np.testing.assert_allclose(norm.StdAsNumpy(), STD, rtol=1e-6)
    out = sg.OutputTensorMetadata(0)
    assert out.Content().ContentPropertiesType() == gen.ContentProperties.FeatureProperties
    assert out.AssociatedFilesLength() == 1
    f = out.AssociatedFiles(0)
    assert (f.Name(), f.Type()) == (b"labels.txt", gen.AssociatedFileType.TENSOR_AXIS_LABELS)
    with zipfile.ZipFile(io.BytesIO(written)) as zf:
        assert zf.namelist() == ["labels.txt"]
        info = zf.getinfo("labels.txt")
        assert info.compress_type == zipfile.ZIP_STORED  # the Android extractor maps it uncompressed
        assert zf.read("labels.txt").decode().splitlines() == labels


def test_generated_reader_agrees_on_googles_example():
    """The same generated reader reads Google's file: the test's reader is the real format's."""
    norm = gen.NormalizationOptions()
    unit = generated_metadata(WITH_META.read_bytes()).SubgraphMetadata(0).InputTensorMetadata(0).ProcessUnits(0)
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    assert norm.MeanAsNumpy().tolist() == [127.5] and norm.StdAsNumpy().tolist() == [127.5]


def test_model_runs_unchanged(written):
    x = np.random.default_rng(0).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)
    plain, plain_in, plain_out = run_litert(FLOAT, x)
    meta, meta_in, meta_out = run_litert(written, x)
    assert np.array_equal(plain, meta)
    assert (plain_in, plain_out) == (meta_in, meta_out)


def test_weights_stay_16_byte_aligned(written):
    model = tfl.Model.GetRootAs(written, 0)
    sizes = 0
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength():
            assert buf._tab.Vector(4) % 16 == 0, f"buffer {i} is not 16-byte aligned"
            sizes += buf.DataLength()
    assert sizes > 400_000  # the weights are all there


def test_deterministic_and_idempotent(written, labels):
    again = tm.write_metadata(
        FLOAT.read_bytes(), name="MobileNet V1 0.25", description="ImageNet classifier",
        labels=labels, mean=MEAN, std=STD, version="1.2.3",
        input_description="RGB 224x224", output_description="1001 class probabilities")
    assert again == written
    # writing onto a model that has metadata replaces it (one entry, one packed labels file)
    relabelled = tm.write_metadata(written, name="x", description="y", labels=[f"c{i}" for i in range(1001)],
                                   mean=[127.5], std=[127.5])
    meta = tm.read_metadata(relabelled)
    assert meta["labels"][:2] == ["c0", "c1"] and meta["packed_files"] == ["labels.txt"]
    assert generated_metadata(relabelled).Name() == b"x"


def test_bad_inputs(labels, tmp_path):
    src = FLOAT.read_bytes()
    with pytest.raises(ConfigError, match="10 labels for an output of 1001"):
        tm.write_metadata(src, name="n", description="d", labels=labels[:10], mean=[0], std=[1])
    with pytest.raises(ConfigError, match="mean/std need 1 or 3"):
        tm.write_metadata(src, name="n", description="d", labels=labels, mean=[0, 0], std=[1, 1])
    with pytest.raises(ConfigError, match="std must be positive"):
        tm.write_metadata(src, name="n", description="d", labels=labels, mean=[0], std=[0])
    with pytest.raises(ModelFileError, match="not a TFLite"):
        tm.write_metadata(b"\0" * 64, name="n", description="d", labels=labels, mean=[0], std=[1])
    with pytest.raises(ModelFileError, match="has no TFLITE_METADATA"):
        tm.read_metadata(FLOAT)
    with pytest.raises(ModelFileError, match="cannot read"):
        tm.read_metadata(tmp_path / "missing.tflite")


def test_damaged_metadata_is_a_one_line_error():
    """A flipped byte in the metadata's name string (the model itself still loads)."""
    data = bytearray(WITH_META.read_bytes())
    at = data.index(tm.METADATA_NAME.encode())
    data[at] = 0x8A  # not UTF-8
    with pytest.raises(ModelFileError, match="damaged TFLite metadata") as err:
        tm.read_metadata(bytes(data))
    assert "\n" not in str(err.value)


def test_metadata_entry_pointing_at_an_empty_buffer_is_a_one_line_error():
    """A mutated file whose metadata entry names a buffer without data (found by fuzzing:
    flatbuffers then answers 0 instead of an array)."""
    import flatbuffers

    model = tfl.ModelT.InitFromObj(tfl.Model.GetRootAs(WITH_META.read_bytes(), 0))
    entry = next(m for m in model.metadata if m.name.decode() == tm.METADATA_NAME)
    model.buffers[entry.buffer].data = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelFileError, match="holds no data") as err:
        tm.read_metadata(bytes(builder.Output()))
    assert "\n" not in str(err.value)
