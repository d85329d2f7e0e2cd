"""A release bundle carrying a Deep Compression container: measured as the file it decodes
to, and checked by ``runner verify`` (checksums, decoded files, loading, accuracy)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgebase.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CIFAR = ROOT.parent / "shared" / "data" / "cifar10.zip"
MODEL = "shufflenet_v2_x0_5.cifar10"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import torch

    from deploy.compress_stage import CompressConfig, compress
    from deploy.export import load_source
    from deploy.release import ReleaseConfig, release
    from quant.finetune import FinetuneConfig

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("edc")
    art = compress(load_source(MODEL), CompressConfig(
        target="onnx", output_dir=work, share_bits=6, finetune=FinetuneConfig(epochs=0),
        threads=1), log=lambda m: None)
    cfg = ReleaseConfig(model=MODEL, targets=("onnx",), eval_data=CIFAR, eval_limit=100,
                        output=tmp_path_factory.mktemp("release"), threads=1, bench_runs=3,
                        bench_warmup=1, containers=(work / art.file,))
    b = release(cfg, log=lambda *_: None)
    return work / art.file, b.folder, b.zip


def test_bundle_carries_the_container_and_verifies(bundle):
    from device_runners.verify import verify

    container, folder, zipped = bundle
    m = json.loads((folder / "manifest.json").read_text())
    entry = next(x for x in m["models"] if x["path"].endswith(".edc"))
    assert entry["format"] == "edc" and entry["runtime"] == "onnxruntime"
    assert [f["name"] for f in entry["decodes_to"]] == [
        container.name[:-len(".edc")], container.name[:-len(".edc")] + ".json"]
    assert entry["size_bytes"] == container.stat().st_size
    assert entry["accuracy"]["images"] == 100 and entry["latency"]["runs"] == 3
    report = verify(zipped, data=CIFAR, tolerance=0.0, threads=1)
    assert report.ok, [str(p) for p in report.problems]
    assert {x["path"] for x in report.models} == {x["path"] for x in m["models"]}


def test_verify_names_a_container_that_decodes_to_other_files(bundle, tmp_path):
    from device_runners.verify import verify

    _, folder, _ = bundle
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    m = json.loads((copy / "manifest.json").read_text())
    entry = next(x for x in m["models"] if x["path"].endswith(".edc"))
    entry["decodes_to"][0]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(m))
    report = verify(copy, threads=1)
    assert not report.ok
    assert [p.path for p in report.problems] == [entry["path"]]
    assert "other contents than manifest.json records" in report.problems[0].what


def test_container_of_another_parent_is_refused_before_exporting(bundle, tmp_path):
    from deploy.release import ReleaseConfig, release

    container, _, _ = bundle
    cfg = ReleaseConfig(model="squeezenet1_1.cifar10", targets=("onnx",),
                        output=tmp_path, containers=(container,))
    with pytest.raises(ConfigError, match="compressed from another parent"):
        release(cfg, log=lambda *_: None)
    assert not (tmp_path / "build").exists() or not any((tmp_path / "build").iterdir())
