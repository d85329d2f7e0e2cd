"""``runner verify`` on a bundle assembled around Google's float MobileNet V1 (a real .tflite).

The artifact record is written by hand here (the export pipeline is exercised by
tests/test_release.py); everything after it -- metadata packing, measuring, manifest, model
card, zip, verification -- is the real code on the real file.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from edgebase.errors import ModelFileError
from edgebase.manifest import Artifact, Preprocess, file_facts, write_manifest

pytest.importorskip("ai_edge_litert")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLOAT = DATA / "models" / "mobilenet_v1_0.25_224_float.tflite"
pytestmark = pytest.mark.skipif(not FLOAT.exists(), reason=f"{DATA} is not there")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, Path]:
    from deploy.release import Built, ReleaseConfig, assemble
    from device_runners.loading import load

    build = tmp_path_factory.mktemp("build")
    src = build / "mobilenet_v1_0.25.tflite"
    shutil.copyfile(FLOAT, src)
    with load(src) as b:
        inputs, outputs = tuple(b.inputs), tuple(b.outputs)
    facts = file_facts(src)
    art = Artifact(
        file=src.name, format="tflite", precision="fp32", sha256=facts["sha256"],
        size_bytes=facts["size_bytes"],
        model={"name": "mobilenet_v1_0.25.tf", "arch": "mobilenet_v1",
               "weights": {"file": FLOAT.name, "sha256": facts["sha256"], "dataset": "ImageNet"}},
        inputs=inputs, outputs=outputs,
        preprocess=Preprocess(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3, layout="NHWC"),
        labels=tuple((DATA / "imagenet-labels-1001.txt").read_text().splitlines()),
        passes=({"name": "import", "source": FLOAT.name},), validation={"status": "passed"})
    write_manifest(art, src)
    cfg = ReleaseConfig(model="mobilenet_v1_0.25.tf", version="0.3.0",
                        output=tmp_path_factory.mktemp("out"), bench_runs=3, bench_warmup=1,
                        threads=1)
    b = assemble([Built(src, art, False)], cfg, log=lambda *_: None)
    return b.folder, b.zip


def copy_bundle(bundle: tuple[Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / bundle[0].name
    shutil.copytree(bundle[0], dst)
    return dst


def flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_fresh_bundle_verifies(bundle):
    from device_runners.verify import verify

    for target in bundle:  # the folder and its zip
        report = verify(target)
        assert report.ok, [str(p) for p in report.problems]
        assert report.checked_files == 4  # model, its manifest, labels.txt, README.md
        assert report.models[0].get("loaded")


def test_every_changed_byte_is_named(bundle, tmp_path):
    from device_runners.verify import verify

    files = sorted(e["path"] for e in json.loads((bundle[0] / "manifest.json").read_text())["files"])
    assert "README.md" in files and "labels.txt" in files
    for rel in files:
        root = copy_bundle(bundle, tmp_path / rel)
        flip(root / rel)
        report = verify(root, load=False)
        assert report.bad_files() == [rel], (rel, [str(p) for p in report.problems])
        assert "sha256" in str(report.problems[0])


def test_missing_truncated_and_unlisted_files(bundle, tmp_path):
    from device_runners.verify import verify

    root = copy_bundle(bundle, tmp_path)
    (root / "labels.txt").unlink()
    model = next(root.glob("*.tflite"))
    model.write_bytes(model.read_bytes()[:-10])
    (root / "extra.bin").write_bytes(b"x")
    problems = {p.path: p.what for p in verify(root).problems}
    assert problems["labels.txt"] == "missing"
    assert problems[model.name].startswith("size ")
    assert problems["extra.bin"] == "not listed in manifest.json"


def test_input_spec_mismatch_is_reported(bundle, tmp_path):
    from device_runners.verify import verify

    root = copy_bundle(bundle, tmp_path)
    m = json.loads((root / "manifest.json").read_text())
    m["models"][0]["input"]["shape"] = [1, 3, 224, 224]
    (root / "manifest.json").write_text(json.dumps(m))
    report = verify(root)
    assert not report.ok
    assert "input" in str(report.problems[0]) and "shape" in str(report.problems[0])


def test_packed_metadata_must_match_labels(bundle, tmp_path):
    from device_runners.verify import verify

    root = copy_bundle(bundle, tmp_path)
    labels = (root / "labels.txt").read_text().replace("tench", "carp")
    (root / "labels.txt").write_text(labels)
    m = json.loads((root / "manifest.json").read_text())
    for e in m["files"]:  # re-record the checksum so only the metadata check can catch it
        if e["path"] == "labels.txt":
            from edgebase.bundle import file_entry
            e.update(file_entry(root, "labels.txt"))
    (root / "manifest.json").write_text(json.dumps(m))
    problems = [str(p) for p in verify(root).problems]
    assert any("packed labels differ" in p for p in problems), problems


def test_zip_is_safe_and_deterministic(bundle, tmp_path):
    from edgebase.bundle import write_zip

    with zipfile.ZipFile(bundle[1]) as zf:
        names = zf.namelist()
        assert names[0].endswith("/manifest.json") and names[1:] == sorted(names[1:])
        for info in zf.infolist():
            assert not info.filename.startswith("/") and ".." not in info.filename.split("/")
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.filename.split("/")[0] == bundle[0].name
    again = write_zip(bundle[0], tmp_path / "again.zip", bundle[0].name)
    assert again.read_bytes() == bundle[1].read_bytes()


def test_damaged_and_unsafe_zips_are_refused(bundle, tmp_path):
    from device_runners.verify import verify

    damaged = tmp_path / "damaged.zip"
    shutil.copyfile(bundle[1], damaged)
    with zipfile.ZipFile(damaged) as zf:
        info = max(zf.infolist(), key=lambda i: i.compress_size)
    flip(damaged, info.header_offset + 30 + len(info.filename) + info.compress_size // 2)
    with pytest.raises(ModelFileError, match=f"entry {info.filename} is damaged"):
        verify(damaged)  # the zip's CRC-32 catches it before the sha256 would
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("b/manifest.json", "{}")
        zf.writestr("b/../../escape.txt", "x")
    with pytest.raises(ModelFileError, match="unsafe path"):
        verify(evil)
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize("path", ["A" * 10_000, "a/" + "b" * 256, "nul\x00.tflite"],
                         ids=["10000-chars", "256-byte-name", "nul"])
def test_a_path_the_file_system_refuses_is_one_line(bundle, tmp_path, path):
    """Fuzzing turned a file's path in manifest.json into 10,000 characters: stat() raised
    ENAMETOOLONG out of runner verify. Such a path is refused with the manifest's name."""
    from device_runners.verify import verify

    folder = tmp_path / bundle[0].name
    shutil.copytree(bundle[0], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0]["path"] = path
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="unusable path") as err:
        verify(folder)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_model_card_has_measured_numbers(bundle):
    m = json.loads((bundle[0] / "manifest.json").read_text())
    lat = m["models"][0]["latency"]
    assert lat["runs"] == 3 and lat["mean_ms"] > 0 and lat["machine"]["cores"] >= 1
    card = (bundle[0] / "README.md").read_text()
    assert f"{lat['mean_ms']:.3f} / {lat['p50_ms']:.3f} ms" in card
    assert lat["command"] in card
    assert "(pixel - (127.5, 127.5, 127.5)) / (127.5, 127.5, 127.5)" in card
    assert "import TensorFlowLite" in card and "org.tensorflow.lite.Interpreter" in card


def test_verify_reads_no_torch(bundle):
    import subprocess
    import sys

    code = ("import sys; from device_runners.verify import verify; "
            f"r = verify({str(bundle[0])!r}); assert r.ok; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_verify_reports_json(bundle, tmp_path, capsys):
    from device_runners.cli import main as runner

    out = tmp_path / "verify.json"
    assert runner(["verify", str(bundle[1]), "--no-load", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["checked_files"] == 4 and report["problems"] == []
    assert "verified: all files match" in capsys.readouterr().out  # the table prints too
    root = copy_bundle(bundle, tmp_path)
    flip(root / "labels.txt")
    assert runner(["verify", str(root), "--no-load", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)  # --json alone: stdout is only the JSON
    assert report["ok"] is False and report["problems"][0].startswith("labels.txt: sha256")


def test_bundles_with_the_old_file_names_still_verify(bundle, tmp_path):
    """Bundles of 0.1.0 named model files <model>-<precision><suffix>; verify reads the names
    from manifest.json, so they keep verifying after the naming scheme became export's."""
    from device_runners.verify import verify

    root = copy_bundle(bundle, tmp_path)
    m = json.loads((root / "manifest.json").read_text())
    model = m["models"][0]
    old = f"{m['name']}-fp32.tflite"
    assert model["path"] != old
    renames = {model["path"]: old, model["manifest"]: old + ".json"}
    for new_name, old_name in renames.items():
        (root / new_name).rename(root / old_name)
    model["path"], model["manifest"] = old, old + ".json"
    for entry in m["files"]:
        entry["path"] = renames.get(entry["path"], entry["path"])
    (root / "manifest.json").write_text(json.dumps(m))
    report = verify(root)
    assert report.ok, [str(p) for p in report.problems]
    assert report.models[0]["path"] == old and report.models[0].get("loaded")


def test_a_bundle_from_another_parent_is_not_replaced_silently(bundle):
    """`deploy release` of an existing name and version: the same parent rebuilds it, another
    parent (weights, classes, preprocessing) needs --force."""
    from edgebase.errors import DeployError
    from deploy.overwrite import bundle_identity, check_bundle_overwrite

    folder = bundle[0]
    m = json.loads((folder / "manifest.json").read_text())
    same = bundle_identity(m["source"]["model"], m["num_classes"],
                           m["source"]["weights"]["sha256"], m["preprocess"])
    check_bundle_overwrite(folder, same, force=False)
    other = {**same, "weights": "0" * 64}
    with pytest.raises(DeployError, match=r"exists and holds a different model: weights sha256 "
                                          r"\w+ -> sha256 000000000000; pass --force"):
        check_bundle_overwrite(folder, other, force=False)
    check_bundle_overwrite(folder, other, force=True)
