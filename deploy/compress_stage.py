"""The Deep Compression stage: a PyTorch model -> a validated target file -> a container.

1. BatchNorm folded into the convolutions (torch.fx), so the exported file holds exactly the
   weights this stage shares (an exporter folding BN itself would rescale them per channel);
2. magnitude pruning and k-means weight sharing (``quant.weight_sharing``); layers that
   already take at most 2**bits values are kept bit for bit;
3. the export stage on that model: the target file, validated against it on real images;
4. the container (``quant.container_writer``): the file with every conv/linear weight cut out
   and stored as codebook + Huffman-coded indices and positions; decoded once here and
   compared byte for byte with the exported file before it is kept;
5. with ``--eval``: top-1 of the dense parent in PyTorch vs the decoded file on labelled images.

The container and its manifest (``<model>.edc.json``) are written last; nothing is left
behind on failure. Fine-tuning after pruning and sharing (``--train-data``) is not part of
this stage yet, so aggressive settings lose accuracy that fine-tuning would recover: the
measured drop is in the manifest and on screen.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgebase.errors import ConfigError, ValidationError
from edgebase.manifest import Artifact, file_facts, write_manifest

SUFFIX = ".edc"


@dataclass(frozen=True)
class CompressConfig:
    target: str
    output_dir: Path
    prune: float = 0.0  # share of each layer's weights set to zero
    share_bits: int = 8  # codebook of 2**bits entries per layer (entry 0 is 0.0)
    gap_bits: int = 4  # width of a relative sparse position
    validate_data: Path | None = None
    eval_data: Path | None = None
    eval_limit: int | None = None
    threads: int | None = None

    def __post_init__(self):
        from edgebase.capabilities import get_target

        get_target(self.target).check_precision("fp32")
        if not 0.0 <= self.prune < 1.0:
            raise ConfigError(f"--prune {self.prune}: a share of weights in [0, 1)")
        if not 1 <= self.share_bits <= 8:
            raise ConfigError(f"--share-bits {self.share_bits}: 1 to 8 (a codebook of at "
                              f"most 256 values per layer)")
        if not 1 <= self.gap_bits <= 8:
            raise ConfigError(f"gap bits {self.gap_bits}: 1 to 8")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.eval_limit}")
        object.__setattr__(self, "output_dir", Path(self.output_dir))


def fold_batchnorm(model):
    """A copy of ``model`` with every Conv-BatchNorm pair fused (eval-mode arithmetic)."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)  # fuse deep-copies: the parent keeps its BatchNorm
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
    from quant.weight_sharing import compress_weights, weighted_layers

    target = get_target(config.target)
    out = config.output_dir / f"{file_stem(source)}{target.suffix}{SUFFIX}"
    eval_set = _eval_images(config, source)  # bad paths fail before anything slow
    t0 = time.perf_counter()
    model = fold_batchnorm(source.model)
    layers_facts = compress_weights(model, config.prune, config.share_bits)
    kept = sum(f["unchanged"] for f in layers_facts)
    log(f"weights: {len(layers_facts)} layers, pruned to "
        f"{sum(f['nonzero'] for f in layers_facts) / sum(f['weights'] for f in layers_facts):.1%}"
        f" non-zero, at most {2 ** config.share_bits} values per layer ({kept} layers already "
        f"were: kept bit for bit)")
    shared_weights = {**source.weights, "deep_compression": {
        "prune": config.prune, "share_bits": config.share_bits, "batchnorm_folded": True}}
    shared = ModelSource(source.entry, model, shared_weights)
    config.output_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=config.output_dir))
    try:
        exported = export(shared, ExportConfig(target=config.target, output_dir=work,
                                               validate_data=config.validate_data,
                                               threads=config.threads))
        log(f"exported and validated {exported.file}: {exported.validation['status']}")
        model_file = work / exported.file
        files = read_files(model_file, target.companions)
        files[model_file.name + ".json"] = (work / (model_file.name + ".json")).read_bytes()
        layers = {name: m.weight.detach().numpy() for name, m in weighted_layers(model)}
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
        if eval_set is not None:
            accuracy = _accuracy(source, model_file, target, eval_set, config)
            log(f"top-1 on {accuracy['images']} images: dense PyTorch "
                f"{accuracy['ref_top1']:.2f} %, decoded {target.name} file "
                f"{accuracy['top1']:.2f} % (drop {accuracy['top1_drop']:.2f})")
        model_bytes = sum(len(v) for k, v in files.items() if not k.endswith(".json"))
        record = {"name": "deep_compression", "prune": config.prune,
                  "share_bits": config.share_bits, "gap_bits": config.gap_bits,
                  "huffman": True, "batchnorm_folded": True, "fine_tuned": False}
        artifact = exported.replace(
            file=out.name, format=SUFFIX[1:], companions=(),
            passes=tuple(exported.passes) + (record,), benchmarks=(),
            extra={**exported.extra, "container": {
                "target": target.name, "target_file": exported.file, "sizes": sizes,
                "target_bytes": model_bytes, "ratio_vs_target_file":
                    round(model_bytes / sizes["total"], 2),
                "decode_ms": round(decode_ms, 1), "seconds": round(seconds, 1),
                "layers": layers_facts, "accuracy": accuracy}})
        os.replace(tmp, out)
        facts = file_facts(out)
        artifact = artifact.replace(sha256=facts["sha256"], size_bytes=facts["size_bytes"])
        write_manifest(artifact, out)
        log(f"wrote {out} ({sizes['total']:,} bytes; the {target.name} file is "
            f"{model_bytes:,} bytes: {model_bytes / sizes['total']:.1f}x smaller)")
        return artifact
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _eval_images(config: CompressConfig, source):
    if config.eval_data is None:
        return None
    from edgebase.images import ImageSet

    return ImageSet(config.eval_data, split="test")


def _accuracy(source, model_file: Path, target, images, config) -> dict[str, Any]:
    """Top-1/top-5 of the dense PyTorch parent and of the exported (= decoded) file."""
    from deploy.validate import torch_logits
    from device_runners.file_logits import FileLogits
    from quant.accuracy import EvalSet, compare_logits

    indices = images.subset(config.eval_limit, seed=0)
    evaluation = EvalSet(images, indices, source.entry.preprocess)
    ref = torch_logits(source.model, evaluation.x)  # it runs in chunks itself
    with FileLogits(model_file, target.runtime, target.input_layout, config.threads) as f:
        cand = evaluation.logits(f)
    return {**compare_logits(ref, cand, evaluation.labels).to_dict(),
            "data": str(config.eval_data)}


__all__ = ["CompressConfig", "compress", "fold_batchnorm"]
