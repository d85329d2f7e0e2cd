"""The Deep Compression stage: a PyTorch model -> a validated target file -> a container.

1. magnitude pruning (``--prune``): masks from the weights as they will be stored (BatchNorm
   folded), then masked fine-tuning with BatchNorm still live (``quant.finetune``);
2. BatchNorm folded into the convolutions (torch.fx), so the exported file holds exactly the
   weights this stage shares (an exporter folding BN itself would rescale them per channel);
3. k-means weight sharing (``quant.weight_sharing``; layers that already take at most
   2**bits values are kept bit for bit), then centroid fine-tuning;
4. the export stage on that model: the target file (fp32, or int8 with ``int8``: the int8
   stage, calibrated and checked as ``deploy export --int8`` does), validated against it on
   real images;
5. the container (``quant.container_writer``): the file with every conv/linear weight cut out
   and stored as codebook + Huffman-coded indices and positions (an int8 file: its int8
   weight tensors, read from the file by ``quant.int8_weights``); decoded once here and
   compared byte for byte with the exported file before it is kept;
6. with ``--data``: top-1 of the dense parent, after pruning and after sharing (PyTorch), and
   of the decoded file, on the same labelled images.

Fine-tuning data (``quant.finetune_data``): ``--train-data`` (labelled, cross-entropy),
``--distill-data`` (unlabelled, distillation from the dense parent), or by default the
CIFAR-10 training images of the shared data folder, unlabelled (for an ImageNet net they are
upscaled by its preprocessing: the only ImageNet photos here are the evaluation sample). A set
that would hand fine-tuning any of its evaluation images is refused. Nothing is fine-tuned
when no weight changed (re-encoding an already shared net stays lossless) or with
``--epochs 0``. Every step, its data, epochs, rates and time are in the manifest.

The container and its manifest (``<model>.edc.json``) are written last; nothing is left
behind on failure.
"""
from __future__ import annotations

import copy
import functools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import ConfigError, DataError, ValidationError
from edgebase.manifest import Artifact, file_facts, write_manifest

SUFFIX = ".edc"
DEFAULT_DISTILL = "cifar10.zip"  # in the shared data folder: training images, used unlabelled
LARGE_INPUT_LIMIT = 5000  # default fine-tuning images for inputs above 32 px (decoded at size)
PER_LAYER = ("sensitivity", "uniform")  # how --prune and --share-bits are spread over layers


@dataclass(frozen=True)
class CompressConfig:
    target: str
    output_dir: Path
    prune: float = 0.0  # share of each layer's weights set to zero
    share_bits: float = 8  # codebook of 2**bits entries per layer (entry 0 is 0.0); with
    # share_layers "sensitivity" the mean over the non-zero weights, bits chosen per layer
    gap_bits: int = 4  # width of a relative sparse position
    validate_data: Path | None = None
    eval_data: Path | None = None
    eval_limit: int | None = None
    threads: int | None = None
    train_data: Path | None = None  # labelled fine-tuning images
    distill_data: Path | None = None  # unlabelled fine-tuning images
    train_limit: int | None = None  # fine-tuning images (None: all for 32-px nets, else 5000)
    finetune: Any = None  # quant.finetune.FinetuneConfig; None: its defaults
    prune_layers: str = "sensitivity"  # per-layer shares: "sensitivity" scan or "uniform"
    share_layers: str = "sensitivity"  # per-layer bits: "sensitivity" scan or "uniform"
    share_scale: str = "channel"  # codebook over channel-scaled weights, or raw ("layer")
    int8: Any = None  # deploy.int8_stage.Int8Config: the container carries the int8 file
    progress: bool = True

    @property
    def precision(self) -> str:
        return "fp32" if self.int8 is None else "int8"

    def __post_init__(self):
        from edgebase.capabilities import get_target

        get_target(self.target).check_precision(self.precision)
        if self.int8 is not None:
            from quant.int8_weights import targets

            if self.target not in targets():
                raise ConfigError(f"--int8 containers: targets {', '.join(targets())}, not "
                                  f"{self.target}")
        if not 0.0 <= self.prune < 1.0:
            raise ConfigError(f"--prune {self.prune}: a share of weights in [0, 1)")
        if not 1 <= self.share_bits <= 8:
            raise ConfigError(f"--share-bits {self.share_bits:g}: 1 to 8 (a codebook of at "
                              f"most 256 values per layer)")
        if self.share_layers == "uniform" and self.share_bits != int(self.share_bits):
            raise ConfigError(f"--share-bits {self.share_bits:g}: a whole number of bits "
                              f"with --share-layers uniform (a mean only with the sensitivity "
                              f"scan)")
        if not 1 <= self.gap_bits <= 8:
            raise ConfigError(f"gap bits {self.gap_bits}: 1 to 8")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.eval_limit}")
        for flag, value in (("--prune-layers", self.prune_layers),
                            ("--share-layers", self.share_layers)):
            if value not in PER_LAYER:
                raise ConfigError(f"{flag} {value!r}: one of {', '.join(PER_LAYER)}")
        from quant.weight_sharing import SCALES

        if self.share_scale not in SCALES:
            raise ConfigError(f"--share-scale {self.share_scale!r}: one of {', '.join(SCALES)}")
        if self.train_data is not None and self.distill_data is not None:
            raise ConfigError("--train-data and --distill-data: give one (labelled images, or "
                              "unlabelled ones for distillation)")
        if self.finetune is None:
            from quant.finetune import FinetuneConfig

            object.__setattr__(self, "finetune", FinetuneConfig())
        object.__setattr__(self, "output_dir", Path(self.output_dir))


def fold_batchnorm(model):
    """A copy of ``model`` with every Conv-BatchNorm pair fused (eval-mode arithmetic)."""
    from quant.batchnorm_folding import fold_batchnorm_graph

    try:
        return fold_batchnorm_graph(model)  # a copy: the parent keeps its BatchNorm
    except Exception as e:  # noqa: BLE001 - tracing can fail on dynamic control flow
        raise ConfigError(f"cannot fold BatchNorm into the convolutions of this model "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None


def compress(source, config: CompressConfig, log: Callable[[str], None] = print) -> Artifact:
    """Prune, share and code ``source`` into a container in ``config.output_dir`` (locked
    while it is written, like an export's)."""
    from edgebase.files import folder_lock

    with folder_lock(config.output_dir, "compress"):
        return _compress(source, config, log)


def _compress(source, config: CompressConfig, log: Callable[[str], None]) -> Artifact:
    from deploy.export import ExportConfig, ModelSource, export
    from deploy.placement import file_stem
    from edgebase.capabilities import get_target
    from device_runners.container import unpack
    from quant.container_writer import read_files, write_container

    target = get_target(config.target)
    out = config.output_dir / (target.file_name(file_stem(source), config.precision) + SUFFIX)
    evaluation = _eval_set(config, source)  # bad paths fail before anything slow
    tuning = _FinetuneSource(config, source)
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    model, steps, factors = _prune_and_share(source, config, tuning, evaluation, log)
    shared_weights = {**source.weights, "deep_compression": {
        "prune": config.prune, "share_bits": config.share_bits,
        "per_layer": [config.prune_layers, config.share_layers],
        "share_scale": config.share_scale, "batchnorm_folded": True,
        "fine_tuned": tuning.used}}
    shared = ModelSource(source.entry, model, shared_weights)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=config.output_dir))
    try:
        exported = export(shared, ExportConfig(target=config.target, output_dir=work,
                                               precision=config.precision,
                                               validate_data=config.validate_data,
                                               threads=config.threads), int8=config.int8)
        log(f"exported and validated {exported.file}: {exported.validation['status']}")
        model_file = work / exported.file
        files = read_files(model_file, target.companions)
        files[model_file.name + ".json"] = (work / (model_file.name + ".json")).read_bytes()
        stored = None
        if config.int8 is None:
            layers = _container_layers(model, factors)
        else:
            from quant.int8_weights import int8_weights

            layers, left = int8_weights(target.name, files, model_file.name)
            stored = {"int8_tensors": [
                {"name": n, "shape": list(t.shape), "nonzero": int(np.count_nonzero(t)),
                 "distinct_nonzero": int(len(np.unique(t[t != 0])))}
                for n, t in layers.items()], "left_in_file": left}
        tmp = work / ("container" + SUFFIX)
        sizes = write_container(files, layers, tmp, gap_bits=config.gap_bits)
        seconds = time.perf_counter() - t0
        check = work / "decoded"
        t1 = time.perf_counter()
        decoded = {p.name: p.read_bytes() for p in unpack(tmp, check)}
        decode_ms = (time.perf_counter() - t1) * 1e3
        if decoded != files:
            raise ValidationError(f"{out.name}: the container does not decode to the exported "
                                  f"files")
        accuracy = None
        if evaluation is not None:
            accuracy = _file_accuracy(evaluation, model_file, target, config)
            log(f"top-1 on {accuracy['images']} images: dense PyTorch "
                f"{accuracy['ref_top1']:.2f} %, decoded {target.name} file "
                f"{accuracy['top1']:.2f} % (drop {accuracy['top1_drop']:.2f})")
        model_bytes = sum(len(v) for k, v in files.items() if not k.endswith(".json"))
        # the paper's ratio is against the fp32 file; an int8 container's parent file is int8
        fp32_bytes = exported.extra.get("fp32_parent", {}).get("size_bytes", model_bytes)
        record = {"name": "deep_compression", "precision": config.precision,
                  "prune": config.prune,
                  "prune_layers": config.prune_layers, "share_bits": config.share_bits,
                  "share_layers": config.share_layers, "share_scale": config.share_scale,
                  "gap_bits": config.gap_bits,
                  "huffman": True, "batchnorm_folded": True, "fine_tuned": tuning.used,
                  "steps": steps}
        artifact = exported.replace(
            file=out.name, format=SUFFIX[1:], companions=(),
            passes=tuple(exported.passes) + (record,), benchmarks=(),
            extra={**exported.extra, "container": {
                "target": target.name, "target_file": exported.file,
                "target_sha256": exported.sha256, "sizes": sizes,
                "target_bytes": model_bytes, "ratio_vs_target_file":
                    round(model_bytes / sizes["total"], 2), "fp32_bytes": fp32_bytes,
                "ratio_vs_fp32_file": round(fp32_bytes / sizes["total"], 2),
                "decode_ms": round(decode_ms, 1), "seconds": round(seconds, 1),
                # the PyTorch layers' pruning and sharing; an int8 file's stored tensors apart
                "layers": steps["layers"], **(stored or {}), "accuracy": accuracy}})
        os.replace(tmp, out)
        facts = file_facts(out)
        artifact = artifact.replace(sha256=facts["sha256"], size_bytes=facts["size_bytes"])
        write_manifest(artifact, out)
        log(f"wrote {out} ({sizes['total']:,} bytes; the {config.precision} {target.name} "
            f"file is {model_bytes:,} bytes: {model_bytes / sizes['total']:.1f}x smaller"
            + (f"; the fp32 file {fp32_bytes:,} bytes: {fp32_bytes / sizes['total']:.1f}x)"
               if config.int8 is not None else ")"))
        return artifact
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _prune_and_share(source, config: CompressConfig, tuning, evaluation, log):
    """The parent's weights pruned, fine-tuned, folded, shared and fine-tuned again: the
    model to export, and the record of each step (with PyTorch top-1 when evaluating)."""
    from quant.finetune import centroid_finetune, masked_finetune
    from quant.weight_sharing import (apply_masks, layer_facts, magnitude_masks, share_weights,
                                      weighted_layers)

    before = {n: m.weight.detach().numpy().copy()
              for n, m in weighted_layers(fold_batchnorm(source.model))}
    steps: dict[str, Any] = {}
    model = source.model
    if config.prune > 0:
        model = copy.deepcopy(source.model)
        folded = fold_batchnorm(model)
        step: dict[str, Any] = {"sparsity": config.prune}
        if config.prune_layers == "sensitivity":
            from quant.layer_sensitivity import pruning_shares

            shares, step["per_layer"] = _scanned("pruning", pruning_shares, folded,
                                                 config.prune, tuning, source, log)
        else:
            shares, step["per_layer"] = config.prune, {"per_layer": "uniform"}
        masks = magnitude_masks(folded, shares)
        apply_masks(model, masks)
        kept = sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values())
        log(f"pruned: {kept:.1%} of the conv/linear weights kept")
        step["nonzero"] = round(kept, 4)
        if tuning.wanted:
            import torch

            step["finetune"] = masked_finetune(
                model, {n: torch.from_numpy(m) for n, m in masks.items()}, tuning.data(log),
                config.finetune, teacher=source.model, progress=config.progress, log=log)
            tuning.used = True
        step["top1"] = _torch_top1(evaluation, model, "after pruning", log)
        steps["pruning"] = step
    model = fold_batchnorm(model)
    step = {"bits": config.share_bits, "init": "linear", "scale": config.share_scale}
    bits: float | dict[str, int] = int(config.share_bits)
    if config.share_layers == "sensitivity" and config.share_bits < 8:
        from quant.layer_sensitivity import sharing_bits

        bits, step["per_layer"] = _scanned(
            "sharing (bits)", functools.partial(sharing_bits, scale=config.share_scale), model,
            config.share_bits, tuning, source, log)
    else:
        step["per_layer"] = {"per_layer": "uniform"}
    changed = share_weights(model, bits, config.share_scale)
    step["layers_changed"] = len(changed)
    log(f"shared: {len(changed)} of {len(before)} layers changed (the others already had few "
        f"enough values: kept bit for bit)")
    if tuning.wanted and (changed or config.prune > 0):
        step["finetune"] = centroid_finetune(
            model, [n for n, _ in weighted_layers(model)], tuning.data(log), config.finetune,
            teacher=source.model, progress=config.progress, log=log, factors=changed)
        tuning.used = True
    step["top1"] = _torch_top1(evaluation, model, "after sharing", log)
    steps["sharing"] = step
    steps["dense_top1"] = evaluation.dense_top1 if evaluation is not None else None
    steps["layers"] = layer_facts(model, before, changed)
    return model, steps, changed


def _container_layers(model, factors: dict) -> dict[str, Any]:
    """Per conv/linear layer what the container stores: its channel-scaled factors, checked
    to give the model's weights bit for bit, or the weights themselves."""
    from quant.weight_sharing import weighted_layers

    layers: dict[str, Any] = {}
    for name, m in weighted_layers(model):
        w, f = m.weight.detach().numpy(), factors.get(name)
        if f is not None and not np.array_equal(f.weights().view(np.int32), w.view(np.int32)):
            raise ValidationError(f"layer {name}: its weights are not codebook x scale bit "
                                  f"for bit")
        layers[name] = w if f is None else f
    return layers


def _scanned(step: str, choose, model, target, tuning, source, log):
    """Per-layer settings from a sensitivity scan on fine-tuning images, and its record."""
    from quant.layer_sensitivity import scan_images

    x = tuning.data(log).inputs(scan_images(source.entry.input_size),
                                seed=tuning.config.finetune.seed)
    values, record = choose(model, x, target)
    log(f"{step} sensitivity scan: {len(values)} layers, {min(values.values()):g} to "
        f"{max(values.values()):g} per layer, mean {record['achieved']:g} (target {target:g}; "
        f"{record['seconds']:.0f} s)")
    return values, record


class _FinetuneSource:
    """Where fine-tuning (and sensitivity scan) images come from; read once a step wants
    them."""

    def __init__(self, config: CompressConfig, source):
        self.config, self.source, self._data, self.used = config, source, None, False
        self.wanted = config.finetune.epochs > 0
        scanning = (config.prune > 0 and config.prune_layers == "sensitivity") or (
            config.share_bits < 8 and config.share_layers == "sensitivity")
        if not (self.wanted or scanning):
            return
        from deploy.validate import data_dir

        if config.train_data is not None:
            self.path, self.labelled, self.note = Path(config.train_data), True, None
        elif config.distill_data is not None:
            self.path, self.labelled, self.note = Path(config.distill_data), False, None
        else:
            try:
                self.path, self.labelled = data_dir() / DEFAULT_DISTILL, False
            except DataError:
                raise DataError("fine-tuning needs images and the shared data folder is "
                                "missing: give --train-data or --distill-data (or --epochs 0 "
                                "--prune-layers uniform for none)") from None
            size = source.entry.preprocess.crop
            self.note = ("default: CIFAR-10 training images, labels unused" +
                         ("" if size <= 32 else f", upscaled to the model's {size}x{size} "
                          f"input (no ImageNet images but the evaluation sample are here)"))
        if not self.path.exists():
            raise DataError(f"fine-tuning data {self.path}: no such file or folder (give "
                            f"--train-data or --distill-data, or --epochs 0 --prune-layers "
                            f"uniform for none)")
        from quant.finetune_data import check_finetune_set

        check_finetune_set(self.path, labelled=self.labelled,
                           num_classes=source.entry.num_classes)
        self._keep_off_evaluation()

    def _keep_off_evaluation(self) -> None:
        """Refuse a set that shares images with --data or with the default validation and
        evaluation sets (a set without splits, such as the ImageNet sample, is all test)."""
        from deploy.validate import DATASETS, data_dir
        from quant.finetune_data import image_keys

        evaluated = [Path(self.config.eval_data)] if self.config.eval_data else []
        try:
            evaluated += [data_dir() / file for file, _ in DATASETS.values()]
        except DataError:
            pass  # no shared data folder: nothing of it to keep apart
        same = [e for e in evaluated if e.exists() and e.resolve() == self.path.resolve()]
        if not same:
            return
        overlap = image_keys(self.path, "train") & image_keys(same[0], "test")
        if overlap:
            flag = "--train-data" if self.labelled else "--distill-data"
            raise DataError(f"{flag} {self.path}: {len(overlap)} of its images are evaluation "
                            f"images; fine-tuning reads a train/ split, or images kept apart "
                            f"from evaluation")

    def data(self, log):
        from quant.finetune_data import load_finetune_data

        if self._data is None:
            entry = self.source.entry
            limit = self.config.train_limit
            if limit is None and entry.preprocess.crop > 32:
                limit = LARGE_INPUT_LIMIT
            t0 = time.perf_counter()
            self._data = load_finetune_data(
                self.path, entry.preprocess, labelled=self.labelled,
                num_classes=entry.num_classes, limit=limit, seed=self.config.finetune.seed,
                progress=self.config.progress, note=self.note)
            log(f"fine-tuning on {len(self._data)} images of {self.path.name} "
                f"({self._data.source['use']}; read in {time.perf_counter() - t0:.0f} s)")
        return self._data


class _EvalSet:
    """The labelled evaluation images, preprocessed once, and the dense parent's logits."""

    def __init__(self, config: CompressConfig, source):
        from edgebase.images import ImageSet
        from quant.accuracy import EvalSet

        images = ImageSet(config.eval_data, split="test")
        self.data = str(config.eval_data)
        self.set = EvalSet(images, images.subset(config.eval_limit, seed=0),
                           source.entry.preprocess)
        self._source = source
        self._ref = None

    @property
    def ref(self):
        from deploy.validate import torch_logits

        if self._ref is None:
            self._ref = torch_logits(self._source.model, self.set.x)  # it runs in chunks itself
        return self._ref

    @property
    def dense_top1(self) -> float:
        return self.set.compare(self.ref, self.ref).ref_top1

    def compare(self, logits) -> dict[str, Any]:
        return {**self.set.compare(self.ref, logits).to_dict(), "data": self.data}


def _eval_set(config: CompressConfig, source) -> _EvalSet | None:
    return None if config.eval_data is None else _EvalSet(config, source)


def _torch_top1(evaluation: _EvalSet | None, model, what: str, log) -> float | None:
    if evaluation is None:
        return None
    from deploy.validate import torch_logits

    result = evaluation.compare(torch_logits(model, evaluation.set.x))
    log(f"top-1 {what} (PyTorch, {result['images']} images): {result['top1']:.2f} % "
        f"(dense {result['ref_top1']:.2f} %)")
    return result["top1"]


def _file_accuracy(evaluation: _EvalSet, model_file: Path, target, config) -> dict[str, Any]:
    """Top-1/top-5 of the dense PyTorch parent and of the exported (= decoded) file."""
    from device_runners.file_logits import FileLogits

    with FileLogits(model_file, target.runtime, target.input_layout, config.threads) as f:
        cand = evaluation.set.logits(f)
    return evaluation.compare(cand)


__all__ = ["CompressConfig", "compress", "fold_batchnorm"]
