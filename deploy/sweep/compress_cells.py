"""The cells of a ``deploy compress`` sweep: one Deep Compression run per setting (pruning
share x codebook bits), each a CPU cell with its own fine-tuning, independent of the others.

A cell writes its container and manifest into ``<output>/<folder>/``, the folder named by the
setting (``prune0.5-bits5``) so that scripts can find it. Its key is a hash of the parent
(build and weights), the setting, every other flag, the data sets by content and the
toolchain (deploy.sweep.artifacts): the same key is the same container.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from deploy.compress_stage import SUFFIX, CompressConfig

Log = Callable[[str], None]
DATA_FIELDS = ("validate_data", "eval_data", "train_data", "distill_data")


@dataclass(frozen=True)
class ModelSpec:
    """How every cell builds the parent: ``deploy compress``'s model flags (paths absolute,
    as every node sees them) and the seed random-init weights are drawn with."""
    name: str
    weights: str | None = None
    num_classes: int | None = None
    width: float | None = None
    input_size: int | None = None
    seed: int = 0

    def load(self):
        import torch

        from deploy.export import load_source

        torch.manual_seed(self.seed)
        return load_source(self.name, weights=self.weights, num_classes=self.num_classes,
                           width=self.width, input_size=self.input_size)


@dataclass(frozen=True)
class CompressCell:
    prune: float
    share_bits: float
    config: CompressConfig  # output_dir: the cell's folder on the head
    key: str = ""

    @property
    def folder(self) -> str:
        return setting_folder(self.prune, self.share_bits)

    @property
    def label(self) -> str:
        return setting_row(self.config)["setting"]


def setting_folder(prune: float, share_bits: float) -> str:
    return f"prune{prune:g}-bits{share_bits:g}"


def plan(base: CompressConfig, prunes, share_bits) -> list[CompressCell]:
    """One cell per (prune, bits), prune-major; every setting checked before any work."""
    return [CompressCell(p, b, dataclasses.replace(
        base, prune=p, share_bits=b, output_dir=Path(base.output_dir) / setting_folder(p, b)))
        for p in prunes for b in share_bits]


def with_keys(cells: list[CompressCell], spec: ModelSpec) -> list[CompressCell]:
    """Each cell with its content address (the parent is built once, here, to name it)."""
    from deploy.sweep.artifacts import data_identity, digest, parent_identity
    from deploy.toolchain import versions

    parent = parent_identity(spec.load(), spec.seed)
    tools = versions()
    out = []
    for cell in cells:
        settings = dataclasses.asdict(cell.config)
        for f in ("output_dir", "progress"):  # where and how it is shown: not what is made
            settings.pop(f)
        for f in DATA_FIELDS:
            settings[f] = data_identity(settings[f])
        out.append(dataclasses.replace(cell, key=digest(["compress", parent, settings, tools])))
    return out


def absolute(config: CompressConfig) -> CompressConfig:
    """Paths as every node sees them (a worker's working folder is not the head's)."""
    return dataclasses.replace(config, **{f: Path(getattr(config, f)).resolve()
                                          for f in ("output_dir",) + DATA_FIELDS
                                          if getattr(config, f) is not None})


# ---- the work of a cell -------------------------------------------------------------------
def run_cell(spec: ModelSpec, config: CompressConfig, log: Log) -> dict[str, Any]:
    """Compress into ``config.output_dir``: the summary row (a failed cell: its error)."""
    from deploy.benchmark import one_line
    from deploy.compress_stage import compress

    row = setting_row(config)
    t0 = time.perf_counter()
    try:
        art = compress(spec.load(), config, log=log)
        row.update(status="ok", file=str(config.output_dir / art.file), **container_facts(art))
    except Exception as err:  # noqa: BLE001 - one failed setting must not stop the sweep
        row.update(status="failed", error=one_line(err))
        log(f"prune {config.prune:g}, bits {config.share_bits:g}: FAILED: {row['error']}")
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def setting_row(config: CompressConfig) -> dict[str, Any]:
    return {"setting": f"prune {config.prune:g}, bits {config.share_bits:g}",
            "prune": config.prune, "share_bits": config.share_bits,
            "folder": config.output_dir.name}


def container_facts(art) -> dict[str, Any]:
    """What the summary says of a container: sizes, ratio, sha256, top-1 when evaluated."""
    c = art.extra["container"]
    acc = c.get("accuracy") or {}
    return {"container_bytes": art.size_bytes, "sha256": art.sha256,
            "target_file": c["target_file"], "target_sha256": c.get("target_sha256"),
            "target_bytes": c["target_bytes"],
            "ratio": c["ratio_vs_target_file"], "decode_ms": c["decode_ms"],
            "images": acc.get("images"), "ref_top1": acc.get("ref_top1"),
            "top1": acc.get("top1"), "top1_drop": acc.get("top1_drop")}


def run_remote(spec: ModelSpec, config: CompressConfig, key: str) -> dict[str, Any]:
    """A cell on a cluster node (a Ray task): compressed into this machine's cache under the
    cell's key (a retry here reuses a finished container), sent back as a FileSet."""
    from deploy.benchmark import log_stderr, one_line
    from deploy.sweep.artifacts import intact, node_cache, pack
    from deploy.sweep.remote import node_record

    t0 = time.perf_counter()
    local = dataclasses.replace(config, output_dir=node_cache(key) / config.output_dir.name,
                                progress=False)
    try:
        done = [p for p in local.output_dir.glob(f"*{SUFFIX}") if intact(p) is not None]
        if done:
            row = dict(setting_row(local), status="ok", file=str(done[0]), reused=True,
                       **container_facts(intact(done[0])),
                       seconds=round(time.perf_counter() - t0, 1))
        else:
            row = run_cell(spec, local, log_stderr)
        files = pack(Path(row["file"])) if row["status"] == "ok" else None
        out = {"row": row, "files": files}
    except Exception as err:  # noqa: BLE001 - reported in the cell's result, never raised
        out = {"error": one_line(err)}
    out.update(node=node_record(), seconds=round(time.perf_counter() - t0, 2))
    return out
