"""Every ``deploy`` and ``runner`` subcommand x the bad inputs that fit it.

Each case runs the real command line in-process (``main(argv)``, the runtimes' check worker
in its own process) in an empty working folder and must end with: a non-zero exit, exactly
one line on stderr that names what was wrong (and, where there is a choice, what is valid),
no traceback, and no file left behind in the working folder (hidden temporary files
included). The inputs are real files: Google's TFLite model and small ONNX / OpenVINO files
cut, bit-flipped or renamed, image folders and zips, pickles that try to run code, a release
bundle assembled around the TFLite model, a Deep Compression container.
"""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.runner_models import FLOAT_TFLITE, IMAGENET, make_small_models, need

pytest.importorskip("ai_edge_litert")

ODD_DIR = "dossier été ñ"  # a folder name with a space and non-ASCII characters


@dataclass(frozen=True)
class Case:
    id: str
    prog: str  # "deploy" | "runner"
    argv: Callable[["Inputs"], list]  # built from the prepared inputs
    expect: tuple[str, ...]  # regexes the one error line must all match
    code: int | None = None  # the exit code, when it is not just "non-zero"


class Inputs:
    """Bad (and a few good) input files, made once for the whole table."""

    def __init__(self, root: Path):
        self.root = root
        small = make_small_models(root)
        self.onnx, self.xml = small["onnx"], small["xml"]
        self.tflite = root / "float.tflite"
        shutil.copyfile(need(FLOAT_TFLITE), self.tflite)
        data = self.tflite.read_bytes()
        self.files = {
            "zero.tflite": b"",
            "zero.onnx": b"",
            "truncated.tflite": data[:4096],
            "flipped.tflite": _flip(data, range(8, 64, 4)),
            "truncated.onnx": self.onnx.read_bytes()[:200],
            "flipped.onnx": _flip(self.onnx.read_bytes(), range(0, 40, 3)),
            "tflite-named.onnx": data,
            "model.pb": data,
            "text.tflite": b"hello, not a model\n" * 20,
            "wrong.npy": b"",
            "notarray.npy": b"not an array file",
            "garbage.edc": b"ZZZZ" + bytes(100),
        }
        for name, content in self.files.items():
            (root / name).write_bytes(content)
        np.save(root / "wrong.npy", np.zeros((1, 3, 8, 8), np.float32))
        self.xml_no_bin = root / "nobin.xml"
        shutil.copyfile(self.xml, self.xml_no_bin)
        self.xml_truncated = root / "cut.xml"
        self.xml_truncated.write_bytes(self.xml.read_bytes()[:300])
        shutil.copyfile(self.xml.with_suffix(".bin"), self.xml_truncated.with_suffix(".bin"))
        self.huge = _huge_input_onnx(root / "huge_input.onnx")
        self._images(root)
        self._checkpoints(root)
        self.container = _container(root / "good.edc")
        self.truncated_container = root / "cut.edc"
        self.truncated_container.write_bytes(self.container.read_bytes()[:-40])
        odd = root / ODD_DIR
        odd.mkdir(exist_ok=True)
        self.odd_onnx = odd / "modèle ü.onnx"
        shutil.copyfile(self.onnx, self.odd_onnx)
        self.json_dir = root / "r.json"
        self.json_dir.mkdir()
        self.a_file = root / "a file.txt"
        self.a_file.write_text("I am a file, not a folder\n")

    def __getitem__(self, name: str) -> Path:
        return self.root / name

    def _images(self, root: Path) -> None:
        from PIL import Image

        rng = np.random.default_rng(0)
        self.images = root / "imgs"
        for cls in ("cat", "dog"):
            (self.images / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(
                    self.images / cls / f"{i}.png")
        self.empty = root / "empty"
        self.empty.mkdir()
        self.texts = root / "texts"
        (self.texts / "cat").mkdir(parents=True)
        (self.texts / "cat" / "readme.txt").write_text("no images here\n")
        self.slip_zip = root / "slip.zip"
        with zipfile.ZipFile(self.slip_zip, "w") as z:
            for p in sorted(self.images.rglob("*.png")):
                z.write(p, f"set/{p.relative_to(self.images).as_posix()}")
            z.write(self.images / "cat" / "0.png", "../../escape/cat/0.png")
        # a zip whose directory is intact but whose members are damaged (CRC / inflate)
        self.corrupt_zip = root / "corrupt.zip"
        with zipfile.ZipFile(self.corrupt_zip, "w", zipfile.ZIP_DEFLATED) as z:
            for k in range(70):  # more than export validation's 64
                z.write(self.images / "cat" / "0.png", f"set/{('cat', 'dog')[k % 2]}/{k}.png")
        _damage_members(self.corrupt_zip)
        self.corrupt_train_zip = root / "corrupt-train.zip"
        with zipfile.ZipFile(self.corrupt_train_zip, "w", zipfile.ZIP_DEFLATED) as z:
            for k in range(8):
                z.write(self.images / "cat" / "0.png",
                        f"cifar/{('train', 'test')[k % 2]}/{('cat', 'dog')[k // 4]}/{k}.png")
        _damage_members(self.corrupt_train_zip)
        self.cut_zip = root / "cut.zip"
        self.cut_zip.write_bytes(self.slip_zip.read_bytes()[:150])

    def _checkpoints(self, root: Path) -> None:
        import torch

        from zoo import get_entry

        self.marker = root / "pickle-ran"
        torch.save({"state_dict": _RunsCode(str(self.marker))}, root / "evil.pt")
        torch.save({"foo.weight": torch.zeros(3)}, root / "keys.pt")
        ten = get_entry("squeezenet1_1").with_overrides(num_classes=10).builder(num_classes=10)
        torch.save(ten.state_dict(), root / "ten_classes.pt")
        (root / "zero.pt").write_bytes(b"")
        good = (root / "ten_classes.pt").read_bytes()
        (root / "truncated.pt").write_bytes(good[: len(good) // 2])
        odd = root / ODD_DIR
        odd.mkdir(exist_ok=True)
        shutil.copyfile(root / "keys.pt", odd / "poids ü.pt")
        self.odd_weights = odd / "poids ü.pt"
        self.labels3 = root / "three.txt"
        self.labels3.write_text("a\nb\nc\n")


class _RunsCode:
    """Pickles into a call of os.mkdir: if a loader ever ran it, the marker folder appears."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _damage_members(path: Path) -> None:
    """Flip bytes inside every member's compressed data; the zip's directory stays intact."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            for i in range(start + 10, start + info.compress_size - 4, 7):
                raw[i] ^= 0x5A
    path.write_bytes(bytes(raw))


def _flip(data: bytes, at) -> bytes:
    b = bytearray(data)
    for i in at:
        b[i] ^= 0xFF
    return bytes(b)


def _huge_input_onnx(path: Path) -> Path:
    """A valid ONNX file whose input declares 1,048,576 channels (196 GiB as float32)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["logits"])], "huge",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1 << 20, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1 << 20])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, path)
    return path


def _container(path: Path) -> Path:
    """A real Deep Compression container of one 'file' holding a 16-value weight tensor."""
    from quant.container_writer import write_container

    rng = np.random.default_rng(3)
    w = rng.choice(np.linspace(-1, 1, 16, dtype=np.float32), size=(8, 4, 3, 3))
    body = b"HEAD" * 8 + np.ascontiguousarray(w, "<f4").tobytes() + b"TAIL" * 8
    write_container({"m.onnx": body}, {"w": w}, path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, inputs) -> Path:
    """A release bundle folder (Google's float model with metadata packed in, its manifest,
    labels.txt, README.md) assembled by the release code."""
    from deploy.release import Built, ReleaseConfig, assemble
    from device_runners.loading import load
    from edgebase.manifest import Artifact, Preprocess, file_facts, write_manifest

    build = tmp_path_factory.mktemp("bundle_build")
    src = build / "mobilenet_v1_0.25.tflite"
    shutil.copyfile(inputs.tflite, src)
    with load(src) as b:
        ins, outs = tuple(b.inputs), tuple(b.outputs)
    facts = file_facts(src)
    labels = tuple((need(IMAGENET).parent / "imagenet-labels-1001.txt").read_text().splitlines())
    art = Artifact(file=src.name, format="tflite", precision="fp32", sha256=facts["sha256"],
                   size_bytes=facts["size_bytes"], model={"name": "mobilenet_v1_0.25.tf"},
                   inputs=ins, outputs=outs, labels=labels,
                   preprocess=Preprocess(resize=256, crop=224, mean=(0.5,) * 3, std=(0.5,) * 3,
                                         layout="NHWC"), validation={"status": "passed"})
    write_manifest(art, src)
    cfg = ReleaseConfig(model="mobilenet_v1_0.25.tf", version="1.0.0", bench_runs=2,
                        bench_warmup=0, threads=1, output=tmp_path_factory.mktemp("bundle"))
    b = assemble([Built(src, art, False)], cfg, log=lambda *_: None)
    folder, zip_path = b.folder, b.zip
    root = tmp_path_factory.mktemp("bundles")
    no_labels = root / "no-labels"
    shutil.copytree(folder, no_labels)
    (no_labels / "labels.txt").unlink()
    changed = root / "changed"
    shutil.copytree(folder, changed)
    readme = changed / "README.md"
    readme.write_bytes(_flip(readme.read_bytes(), [10]))
    no_manifest = root / "no-manifest"
    shutil.copytree(folder, no_manifest)
    (no_manifest / "manifest.json").unlink()
    slip = root / "slip.zip"
    with zipfile.ZipFile(zip_path) as src_zip, zipfile.ZipFile(slip, "w") as z:
        for info in src_zip.infolist():
            z.writestr(info, src_zip.read(info))
        z.writestr("../outside.txt", "escaped")
    cut = root / "cut.zip"
    cut.write_bytes(zip_path.read_bytes()[:1000])
    return root


def R(*argv) -> Callable[[Inputs], list]:
    """argv with callables resolved against the inputs (``lambda i: i.onnx``)."""
    return lambda i: [str(a(i)) if callable(a) else str(a) for a in argv]


TINY = lambda i: i.onnx  # noqa: E731 - short names keep the table readable
TFL = lambda i: i.tflite  # noqa: E731
IMGS = lambda i: i.images  # noqa: E731
UNDER_FILE = lambda i: i.a_file / "out"  # noqa: E731
MODEL = "squeezenet1_1.cifar10"  # trained and packaged: no notes before a failure
VALID_TARGETS = r"(?=.*onnx)(?=.*tflite)(?=.*openvino)"

RUNNER = [
    # model files of each format: missing, empty, truncated, bit-flipped, wrong suffix
    Case("bench-missing", "runner", R("bench", lambda i: i["nope.tflite"]), (r"nope\.tflite: no such file",)),
    Case("bench-zero-tflite", "runner", R("bench", lambda i: i["zero.tflite"]), (r"zero\.tflite: empty file \(0 bytes\)",)),
    Case("bench-zero-onnx", "runner", R("bench", lambda i: i["zero.onnx"]), (r"zero\.onnx: empty file",)),
    Case("bench-truncated-tflite", "runner", R("bench", lambda i: i["truncated.tflite"]), (r"truncated\.tflite", r"truncated|not a valid|corrupt")),
    Case("bench-flipped-tflite", "runner", R("bench", lambda i: i["flipped.tflite"]), (r"flipped\.tflite", r"truncated|not a valid|corrupt|crashed")),
    Case("bench-text-tflite", "runner", R("bench", lambda i: i["text.tflite"]), (r"text\.tflite: not a TFLite flatbuffer",)),
    Case("bench-truncated-onnx", "runner", R("bench", lambda i: i["truncated.onnx"]), (r"truncated\.onnx", r"not a valid ONNX|corrupt|crashed")),
    Case("bench-flipped-onnx", "runner", R("bench", lambda i: i["flipped.onnx"]), (r"flipped\.onnx", r"not a valid|not an ONNX|corrupt|crashed")),
    Case("bench-xml-without-bin", "runner", R("bench", lambda i: i.xml_no_bin), (r"nobin\.xml: its weights file nobin\.bin is missing",)),
    Case("bench-xml-truncated", "runner", R("bench", lambda i: i.xml_truncated), (r"cut\.xml: malformed XML",)),
    Case("bench-wrong-suffix", "runner", R("bench", lambda i: i["tflite-named.onnx"]), (r"not an ONNX file; it looks like \.tflite \(--runtime litert\)",)),
    Case("bench-unknown-suffix", "runner", R("bench", lambda i: i["model.pb"]), (r"unknown model file type \.pb; valid: .*\.tflite",)),
    Case("bench-unknown-runtime", "runner", R("bench", TINY, "--runtime", "tensorrt"), (r"unknown runtime 'tensorrt'; valid: .*onnxruntime",)),
    Case("bench-runtime-suffix", "runner", R("bench", TINY, "--runtime", "litert"), (r"litert reads \.tflite files, not \.onnx",)),
    # flags checked before any work
    Case("bench-threads-0", "runner", R("bench", TINY, "--threads", "0"), (r"--threads: must be at least 1, got 0",), 2),
    Case("bench-threads-negative", "runner", R("bench", TFL, "--threads", "-1"), (r"--threads: must be at least 1, got -1",), 2),
    Case("bench-runs-0", "runner", R("bench", TINY, "--runs", "0"), (r"--runs: must be at least 1",), 2),
    Case("bench-warmup-negative", "runner", R("bench", TINY, "--warmup", "-1"), (r"--warmup: must be at least 0",), 2),
    Case("bench-batch-0", "runner", R("bench", TINY, "--batch", "0"), (r"--batch: must be at least 1",), 2),
    Case("bench-min-time-0", "runner", R("bench", TINY, "--min-time", "0"), (r"--min-time: must be more than 0",), 2),
    Case("bench-threads-text", "runner", R("bench", TINY, "--threads", "two"), (r"--threads: 'two' is not a whole number",), 2),
    Case("bench-precision-hint", "runner", R("bench", TINY, "--precision-hint", "int4"), (r"invalid choice: 'int4' \(choose from .*f32",), 2),
    # wrong input shape and input files
    Case("bench-shape-text", "runner", R("bench", TINY, "--shape", "1,3,x"), (r"'1,3,x' is not a shape like 1,3,224,224",), 2),
    Case("bench-shape-conflict", "runner", R("bench", TINY, "--shape", "1,3,64,64"), (r"conflicts with the model's \[\?,3,32,32\]",)),
    Case("bench-input-wrong-shape", "runner", R("bench", TINY, "--input", lambda i: i["wrong.npy"]), (r"has shape \(1, 3, 8, 8\); the model expects \[\?,3,32,32\]",)),
    Case("bench-input-not-array", "runner", R("bench", TINY, "--input", lambda i: i["notarray.npy"]), (r"notarray\.npy: holds pickled Python objects, which are never loaded; save plain arrays",)),
    Case("bench-huge-input", "runner", R("bench", lambda i: i.huge), (r"huge_input\.onnx: input 'input' \[1,1048576,224,224\] float32 would take 196\.0 GiB; the runner allocates at most 1 GiB",)),
    # outputs
    Case("bench-json-proc", "runner", R("bench", TINY, "--json", "/proc/edgedeploy/r.json"), (r"--json: cannot write in /proc",), 2),
    Case("bench-json-under-file", "runner", R("bench", TINY, "--json", lambda i: i.a_file / "r.json"), (r"--json: .*a file\.txt, which is a file",), 2),
    Case("bench-json-not-json", "runner", R("bench", TINY, "--json", "result.txt"), (r"'result\.txt' does not end in \.json",), 2),
    # eval: data, preprocessing, flags
    Case("eval-data-missing", "runner", R("eval", TINY, "--data", "nope", "--resize", "32", "--scale", "0.0039"), (r"nope: no such file or folder",)),
    Case("eval-data-empty-folder", "runner", R("eval", TINY, "--data", lambda i: i.empty, "--resize", "32", "--scale", "0.0039"), (r"empty: contains no images \(\.bmp",)),
    Case("eval-data-not-images", "runner", R("eval", TINY, "--data", lambda i: i.texts, "--resize", "32", "--scale", "0.0039"), (r"texts: contains no images",)),
    Case("eval-data-corrupt-zip", "runner", R("eval", TINY, "--data", lambda i: i.corrupt_zip, "--resize", "32", "--scale", "0.0039", "--no-progress"), (r"corrupt\.zip:set/\w+/\d+\.png: damaged in the zip",)),
    Case("eval-data-cut-zip", "runner", R("eval", TINY, "--data", lambda i: i.cut_zip, "--resize", "32", "--scale", "0.0039"), (r"cut\.zip: not a folder or a zip of images",)),
    Case("eval-data-zip-slip", "runner", R("eval", TINY, "--data", lambda i: i.slip_zip, "--resize", "32", "--scale", "0.0039"), (r"member '\.\./\.\./escape/cat/0\.png' points outside the archive",)),
    Case("eval-std-0", "runner", R("eval", TINY, "--data", IMGS, "--resize", "32", "--mean", "0.5", "--std", "0"), (r"--std: must be more than 0, got 0",), 2),
    Case("eval-mixed-units", "runner", R("eval", TINY, "--data", IMGS, "--resize", "32", "--mean", "0.5", "--std", "127.5"), (r"--mean 0\.5 and --std 127\.5 mix units: give both in 0\.\.1 units",)),
    Case("eval-no-resize", "runner", R("eval", TINY, "--data", IMGS, "--scale", "0.0039"), (r"no manifest beside the model .*pass --resize",)),
    Case("eval-no-normalization", "runner", R("eval", TFL, "--data", IMGS, "--resize", "256"), (r"a float input needs normalisation: pass --mean and --std",)),
    Case("eval-threads-0", "runner", R("eval", TINY, "--data", IMGS, "--threads", "0"), (r"--threads: must be at least 1, got 0",), 2),
    Case("eval-limit-0", "runner", R("eval", TINY, "--data", IMGS, "--limit", "0"), (r"--limit: must be at least 1, got 0",), 2),
    Case("eval-batch-0", "runner", R("eval", TINY, "--data", IMGS, "--batch", "0"), (r"--batch: must be at least 1",), 2),
    Case("eval-label-offset-negative", "runner", R("eval", TINY, "--data", IMGS, "--label-offset", "-1"), (r"--label-offset: must be at least 0",), 2),
    Case("eval-layout-choice", "runner", R("eval", TINY, "--data", IMGS, "--layout", "CHW"), (r"invalid choice: 'CHW' \(choose from 'NCHW', 'NHWC'\)",), 2),
    Case("eval-missing-data-flag", "runner", R("eval", TINY), (r"the following arguments are required: --data",), 2),
    Case("eval-wrong-classes", "runner", R("eval", TINY, "--data", IMGS, "--resize", "32", "--scale", "0.0039", "--label-offset", "9"), (r"2 classes \(\+ label offset 9\) do not fit the model's 10 outputs",)),
    Case("bench-odd-path", "runner", R("bench", lambda i: i.odd_onnx, "--runtime", "litert"), (rf"^runner: error: modèle ü\.onnx: litert reads \.tflite files, not \.onnx",)),
    Case("eval-odd-missing", "runner", R("eval", lambda i: i.root / ODD_DIR / "absent ß.tflite", "--data", IMGS), (rf"{ODD_DIR}/absent ß\.tflite: no such file",)),
    Case("eval-json-folder", "runner", R("eval", TINY, "--data", IMGS, "--json", lambda i: i.json_dir), (r"--json: .*r\.json is a folder, not a file",), 2),
    # verify
    Case("verify-missing", "runner", R("verify", "no-such-bundle"), (r"no-such-bundle: no such bundle folder or zip",)),
    Case("verify-threads-0", "runner", R("verify", "no-such-bundle", "--threads", "0"), (r"--threads: must be at least 1",), 2),
    Case("verify-tolerance-negative", "runner", R("verify", "x", "--tolerance", "-1"), (r"--tolerance: must be at least 0",), 2),
    Case("verify-not-a-bundle", "runner", R("verify", IMGS), (r"imgs: no manifest\.json \(not a release bundle\)",)),
    # unpack
    Case("unpack-missing", "runner", R("unpack", "nope.edc", "-o", "out"), (r"nope\.edc",)),
    Case("unpack-garbage", "runner", R("unpack", lambda i: i["garbage.edc"], "-o", "out"), (r"garbage\.edc", r"not a|container|magic")),
    Case("unpack-truncated", "runner", R("unpack", lambda i: i.truncated_container, "-o", "out"), (r"cut\.edc", r"truncated|damaged|short|ends")),
    Case("unpack-output-empty", "runner", R("unpack", lambda i: i.container, "-o", ""), (r"--output: an empty path; give a folder name",), 2),
    Case("unpack-output-under-file", "runner", R("unpack", lambda i: i.container, "-o", UNDER_FILE), (r"--output: .*a file\.txt, which is a file",), 2),
    Case("runner-unknown-command", "runner", R("bnech", TINY), (r"invalid choice: 'bnech' \(choose from .*bench",), 2),
]

DEPLOY = [
    # unknown names
    Case("export-unknown-model", "deploy", R("export", "squeezenet9", "--target", "onnx"), (r"unknown model 'squeezenet9'; valid: .*squeezenet1_1",)),
    Case("export-unknown-target", "deploy", R("export", MODEL, "--target", "tensorrt"), (rf"invalid choice: 'tensorrt' \(choose from .*{VALID_TARGETS}",), 2),
    Case("export-fp16-onnx", "deploy", R("export", MODEL, "--target", "onnx", "--fp16"), (r"onnx does not offer fp16", r"use --target openvino --fp16 or --target tflite --fp16")),
    # flags
    Case("export-threads-0", "deploy", R("export", MODEL, "--target", "onnx", "--threads", "0"), (r"--threads: must be at least 1, got 0",), 2),
    Case("export-batch-0", "deploy", R("export", MODEL, "--target", "onnx", "--batch", "0"), (r"--batch: must be at least 1",), 2),
    Case("export-num-classes-0", "deploy", R("export", MODEL, "--target", "onnx", "--num-classes", "0"), (r"--num-classes: must be at least 1",), 2),
    Case("export-width-0", "deploy", R("export", "mobilenet_v1_x1_0", "--target", "onnx", "--width", "0"), (r"--width: must be more than 0",), 2),
    Case("export-input-size-small", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--input-size", "8"), (r"--input-size must be >= 16, got 8",)),
    Case("export-pixel-mean", "deploy", R("export", MODEL, "--target", "onnx", "--mean", "127.5", "--std", "127.5"), (r"--mean 127\.5 is outside \[0, 1\] \(0\.\.255 units\? divide by 255\)",)),
    Case("export-labels-count", "deploy", R("export", MODEL, "--target", "onnx", "--labels", lambda i: i.labels3), (r"three\.txt: 3 names for 10 classes",)),
    # outputs
    Case("export-output-empty", "deploy", R("export", MODEL, "--target", "onnx", "--output", ""), (r"--output: an empty path; give a folder name",), 2),
    Case("export-output-is-file", "deploy", R("export", MODEL, "--target", "onnx", "--output", lambda i: i.a_file), (r"--output: .*a file\.txt is a file, not a folder",), 2),
    Case("export-output-under-file", "deploy", R("export", MODEL, "--target", "onnx", "--output", UNDER_FILE), (r"--output: .*inside .*a file\.txt, which is a file",), 2),
    Case("export-output-proc", "deploy", R("export", MODEL, "--target", "onnx", "--output", "/proc/edgedeploy"), (r"--output: cannot write in /proc",), 2),
    Case("export-json-folder", "deploy", R("export", MODEL, "--target", "onnx", "--json", lambda i: i.a_file / "m.json"), (r"--json: .*which is a file",), 2),
    # checkpoints
    Case("export-weights-missing", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", "nope.pt"), (r"weights file nope\.pt does not exist",)),
    Case("export-weights-pickle-code", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", lambda i: i["evil.pt"]), (r"refused evil\.pt: its pickle calls (posix|os)\.mkdir \(code or objects, not tensors\); only tensors are loaded", r"state_dict\(\)")),
    Case("export-weights-keys", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", lambda i: i["keys.pt"]), (r"keys\.pt does not fit squeezenet1_1: \d+ missing \(.*unexpected \(foo\.weight\)",)),
    Case("export-weights-classes", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", lambda i: i["ten_classes.pt"]), (r"mis-shaped", r"the checkpoint has 10 classes: pass --num-classes")),
    Case("export-weights-zero-byte", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", lambda i: i["zero.pt"]), (r"weights file \S*/zero\.pt is empty \(0 bytes\)",)),
    Case("export-weights-truncated", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", lambda i: i["truncated.pt"]), (r"cannot read truncated\.pt as a PyTorch checkpoint .*: PytorchStreamReader failed .*; is it truncated, or another format\?$",)),
    Case("export-weights-suffix", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", TINY), (r"no importer for '\.onnx'; valid suffixes: .*\.pt",)),
    Case("export-weights-odd-path", "deploy", R("export", "squeezenet1_1", "--target", "onnx", "--weights", lambda i: i.odd_weights), (r"poids ü\.pt does not fit squeezenet1_1",)),
    # images for validation and calibration
    Case("export-data-missing", "deploy", R("export", MODEL, "--target", "onnx", "--data", "nope"), (r"nope: no such file or folder",)),
    Case("export-data-corrupt-zip", "deploy", R("export", MODEL, "--target", "onnx", "--data", lambda i: i.corrupt_zip), (r"corrupt\.zip:set/\w+/\d+\.png: damaged in the zip",)),
    Case("export-data-zip-slip", "deploy", R("export", MODEL, "--target", "onnx", "--data", lambda i: i.slip_zip), (r"points outside the archive",)),
    Case("export-calib-empty", "deploy", R("export", MODEL, "--target", "onnx", "--int8", "--calib", lambda i: i.empty), (r"calibration data .*empty: the folder is empty",)),
    Case("export-calib-not-images", "deploy", R("export", MODEL, "--target", "onnx", "--int8", "--calib", lambda i: i.texts), (r"texts: contains no images",)),
    Case("export-calib-cut-zip", "deploy", R("export", MODEL, "--target", "onnx", "--int8", "--calib", lambda i: i.cut_zip), (r"cut\.zip: not a folder, a zip of images or a \.npz",)),
    Case("export-calib-size-0", "deploy", R("export", MODEL, "--target", "onnx", "--int8", "--calib-size", "0"), (r"--calib-size: must be at least 1",), 2),
    # the other deploy commands
    Case("inspect-unknown-model", "deploy", R("inspect", "shufflenet_v9"), (r"unknown model 'shufflenet_v9'; valid: ",)),
    Case("inspect-pickle-code", "deploy", R("inspect", "squeezenet1_1", "--weights", lambda i: i["evil.pt"]), (r"refused evil\.pt",)),
    Case("inspect-width-text", "deploy", R("inspect", "squeezenet1_1", "--width", "wide"), (r"--width: 'wide' is not a number",), 2),
    Case("models-unknown-pattern", "deploy", R("models", "resnet"), (r"unknown model pattern 'resnet'; valid: ",)),
    Case("compress-unknown-target", "deploy", R("compress", "squeezenet1_0", "--target", "caffe", "--output", "out"), (rf"invalid choice: 'caffe' \(choose from .*{VALID_TARGETS}",), 2),
    Case("compress-prune-too-much", "deploy", R("compress", "squeezenet1_0", "--target", "onnx", "--prune", "1.5", "--output", "out"), (r"prune", r"1\.5")),
    Case("compress-share-bits-0", "deploy", R("compress", "squeezenet1_0", "--target", "onnx", "--share-bits", "0", "--output", "out"), (r"--share-bits: must be at least 1",), 2),
    Case("compress-calib-without-int8", "deploy", R("compress", "squeezenet1_0", "--target", "onnx", "--calib", "zeroq", "--output", "out"), (r"--calib needs --int8",)),
    Case("compress-int8-missing-calib", "deploy", R("compress", "squeezenet1_0", "--target", "onnx", "--int8", "--calib", "nowhere", "--output", "out"), (r"--calib nowhere: no such file", r"zeroq")),
    Case("compress-int8-executorch", "deploy", R("compress", "squeezenet1_0", "--target", "executorch", "--int8", "--output", "out"), (r"--int8 containers: targets onnx, tflite, openvino",)),
    Case("compress-share-scale", "deploy", R("compress", "squeezenet1_0", "--target", "onnx", "--share-scale", "row", "--output", "out"), (r"invalid choice: 'row' \(choose from 'channel', 'layer'\)",), 2),
    Case("compress-output-under-file", "deploy", R("compress", "squeezenet1_0", "--target", "onnx", "--output", UNDER_FILE), (r"--output: .*which is a file",), 2),
    Case("release-threads-0", "deploy", R("release", MODEL, "--threads", "0"), (r"--threads: must be at least 1, got 0",), 2),
    Case("release-unknown-target", "deploy", R("release", MODEL, "--target", "tflite,coreml"), (rf"unknown target 'coreml'; valid: .*{VALID_TARGETS}",)),
    Case("release-labels-missing", "deploy", R("release", MODEL, "--labels", "nope.txt"), (r"--labels nope\.txt: no such file",)),
    Case("release-labels-count", "deploy", R("release", MODEL, "--labels", lambda i: i.labels3), (r"three\.txt: 3 names for 10 classes",)),
    Case("release-version", "deploy", R("release", MODEL, "--version", "../1"), (r"--version '\.\./1': use letters, digits and \. _ \+ - only",)),
    Case("release-int8-no-calib", "deploy", R("release", MODEL, "--int8"), (r"--int8 needs --calib PATH",)),
    Case("release-output-proc", "deploy", R("release", MODEL, "--output", "/proc/edgedeploy"), (r"--output: cannot write in /proc",), 2),
    Case("benchmark-threads-0", "deploy", R("benchmark", MODEL, "--threads", "1,0"), (r"--threads: must be at least 1, got 0",), 2),
    Case("guidelines-unknown-target", "deploy", R("guidelines", "--target", "caffe", "--output", "out"), (r"unknown target 'caffe'; valid: .*onnx",)),
    Case("guidelines-unknown-guideline", "deploy", R("guidelines", "--target", "onnx", "--guidelines", "G9", "--output", "out"), (r"unknown guideline 'G9'; valid: G1, G2, G3, G4",)),
    Case("guidelines-bad-scale", "deploy", R("guidelines", "--target", "onnx", "--scales", "3", "--output", "out"), (r"--scales 3; valid: 1,2,4",)),
    Case("guidelines-threads-0", "deploy", R("guidelines", "--target", "onnx", "--threads", "0", "--output", "out"), (r"--threads", r"0")),
    Case("guidelines-unknown-precision", "deploy", R("guidelines", "--target", "onnx", "--precisions", "fp8", "--output", "out"), (r"fp8; valid: fp32, int8",)),
    Case("benchmark-unknown-model", "deploy", R("benchmark", "mobilenet_v7", "--target", "onnx", "--no-eval"), (r"unknown model 'mobilenet_v7'",)),
    Case("benchmark-rounds-0", "deploy", R("benchmark", MODEL, "--rounds", "0"), (r"--rounds: must be at least 1",), 2),
    Case("train-unknown-model", "deploy", R("train", "squeezenet1_0", "--data", IMGS), (r"unknown trainable model 'squeezenet1_0'; valid: .*\.cifar10",)),
    Case("train-data-missing", "deploy", R("train", MODEL, "--data", "nope.zip"), (r"nope\.zip: no such file or folder",)),
    Case("train-data-corrupt-zip", "deploy", R("train", MODEL, "--data", lambda i: i.corrupt_train_zip, "--no-progress"), (r"corrupt-train\.zip:cifar/train/\w+/\d+\.png: damaged in the zip",)),
    Case("train-data-not-split", "deploy", R("train", MODEL, "--data", lambda i: i.corrupt_zip, "--no-progress"), (r"corrupt\.zip: no 'train' folder \(train/<class>/<image>\); training needs both train/ and test/",)),
    Case("train-init-pickle-code", "deploy", R("train", MODEL, "--data", IMGS, "--init", lambda i: i["evil.pt"], "--no-progress"), (r"refused evil\.pt",)),
    Case("train-epochs-0", "deploy", R("train", MODEL, "--data", IMGS, "--epochs", "0"), (r"--epochs: must be at least 1",), 2),
    Case("train-lr-0", "deploy", R("train", MODEL, "--data", IMGS, "--lr", "0"), (r"--lr: must be more than 0",), 2),
    Case("device-not-ssh", "deploy", R("device", "bench", TINY, "--device", "http://board"), (r"only ssh:// addresses are supported",)),
    Case("device-password", "deploy", R("device", "bench", TINY, "--device", "ssh://u:secret@board"), (r"passwords in the address are refused",)),
    Case("deploy-unknown-command", "deploy", R("exprot", MODEL), (r"invalid choice: 'exprot' \(choose from .*export",), 2),
]

VERIFY_BUNDLES = [
    Case("verify-no-labels", "runner", None, (r"NOT verified: labels\.txt: missing",), 3),
    Case("verify-changed-byte", "runner", None, (r"NOT verified: README\.md: sha256 ",), 3),
    Case("verify-no-manifest", "runner", None, (r"no manifest\.json \(not a release bundle\)",), 2),
    Case("verify-zip-slip", "runner", None, (r"unsafe path '\.\./outside\.txt'",), 2),
    Case("verify-cut-zip", "runner", None, (r"cut\.zip: unreadable zip",), 2),
]
BUNDLE_ARG = {"verify-no-labels": "no-labels", "verify-changed-byte": "changed",
              "verify-no-manifest": "no-manifest", "verify-zip-slip": "slip.zip",
              "verify-cut-zip": "cut.zip"}


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def run_case(prog: str, argv: list[str], work: Path, capfd, monkeypatch) -> tuple[int, str]:
    from deploy.cli import main as deploy_main
    from device_runners.cli import main as runner_main

    monkeypatch.chdir(work)
    capfd.readouterr()
    try:
        code = (deploy_main if prog == "deploy" else runner_main)(argv)
    except SystemExit as e:  # argparse
        code = e.code
    return code, capfd.readouterr().err


def check(case: Case, code, err: str, before: set[str], work: Path) -> None:
    import re

    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code not in (0, None), f"exit {code}; stderr: {err}"
    if case.code is not None:
        assert code == case.code, f"exit {code}, expected {case.code}: {err}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err}"
    assert re.match(rf"{case.prog}: error: ", lines[0]), lines[0]
    for pattern in case.expect:
        assert re.search(pattern, lines[0]), f"{pattern!r} not in: {lines[0]}"
    assert files_under(work) == before, f"left behind: {files_under(work) - before}"


@pytest.mark.parametrize("case", RUNNER + DEPLOY, ids=lambda c: c.id)
def test_bad_input(case, inputs, tmp_path, capfd, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    before = files_under(work)
    code, err = run_case(case.prog, case.argv(inputs), work, capfd, monkeypatch)
    check(case, code, err, before, work)
    assert not inputs.marker.exists(), "a pickle ran code"


@pytest.mark.parametrize("case", VERIFY_BUNDLES, ids=lambda c: c.id)
def test_bad_bundle(case, bundle, tmp_path, capfd, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    code, err = run_case("runner", ["verify", str(bundle / BUNDLE_ARG[case.id])], work, capfd,
                         monkeypatch)
    check(case, code, err, set(), work)


def test_the_table_is_big_enough_and_covers_every_subcommand():
    from deploy.cli import COMMANDS as DEPLOY_COMMANDS
    from device_runners.cli import COMMANDS as RUNNER_COMMANDS

    cases = RUNNER + DEPLOY + VERIFY_BUNDLES
    assert len(cases) >= 60 and len({c.id for c in cases}) == len(cases)
    covered = {(c.prog, c.id.split("-")[0]) for c in cases}
    missing = [(p, n) for p, names in (("runner", RUNNER_COMMANDS), ("deploy", DEPLOY_COMMANDS))
               for n in names if (p, n) not in covered]
    assert not missing, missing


def test_a_path_with_spaces_and_accents_works(inputs, tmp_path, capfd, monkeypatch):
    """The same odd folder that the table names in its messages is an ordinary path."""
    out = tmp_path / "résultats ß" / "r.json"
    code, err = run_case("runner", ["bench", str(inputs.odd_onnx), "--runs", "2", "--warmup",
                                    "0", "--json", str(out)], tmp_path, capfd, monkeypatch)
    assert code == 0, err
    assert json.loads(out.read_text(encoding="utf-8"))["model"] == str(inputs.odd_onnx)


def test_a_bfloat16_weight_tensor_benches_and_counts_its_ops(inputs, tmp_path, capfd,
                                                            monkeypatch):
    """A tensor type numpy has no array for (BFLOAT16) must not break the op count after
    the timing: LiteRT runs such a file, and the runner reports it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(inputs.tflite.read_bytes(), 0)
    graph = model.subgraphs[0]
    graph.tensors[graph.operators[0].inputs[1]].type = schema.TensorType.BFLOAT16
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"TFL3")
    path = tmp_path / "bf16.tflite"
    path.write_bytes(bytes(builder.Output()))
    code, err = run_case("runner", ["bench", str(path), "--runs", "2", "--warmup", "0",
                                    "--json", str(tmp_path / "r.json")], tmp_path, capfd,
                         monkeypatch)
    assert code == 0 and "Traceback" not in err, err
    counts = json.loads((tmp_path / "r.json").read_text())["op_counts"]
    assert counts and sum(counts.values()) >= 27
