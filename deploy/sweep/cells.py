"""The sweep of ``deploy benchmark`` as a list of cells, and the work of each cell.

Per model: one ``parent`` cell (the PyTorch fp32 parent evaluated on the images), one
``export`` and one ``evaluate`` cell per target x precision, and one ``time`` cell that times
PyTorch eager and every good file of the model in interleaved rounds on one machine (so each
speed-up pairs measurements of the same CPU). Export, evaluation and the parent are CPU work
that may run anywhere at once; a time cell needs a machine to itself.

The functions below do a cell's work and are shared by the executors (``deploy.sweep.local``
runs them in this process in plan order, ``deploy.sweep.ray_executor`` as Ray tasks). Rows
are the report's cell dicts (deploy.benchmark); a failed cell records its error in its row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploy.benchmark import (BenchmarkConfig, Int8Unavailable, evaluate_row, export_cell,
                              interleaved_latency, load_eval_images, one_line, record_benchmarks,
                              runtime_default_row, runtime_of, torch_predictions, validation_summary)

PARENT, EXPORT, EVALUATE, TIME = "parent", "export", "evaluate", "time"
Log = Callable[[str], None]


@dataclass(frozen=True)
class Cell:
    kind: str
    model: str
    target: str | None = None
    precision: str | None = None

    @property
    def label(self) -> str:
        return " ".join(x for x in (self.model, self.target, self.precision, self.kind) if x)

    @property
    def timing(self) -> bool:
        return self.kind == TIME


def plan(config: BenchmarkConfig) -> list[Cell]:
    """Every cell of the sweep, in the order the local executor runs them."""
    cells = []
    for name in config.models:
        cells.append(Cell(PARENT, name))
        for target in config.targets:
            for precision in config.precisions:
                cells.append(Cell(EXPORT, name, target, precision))
                # also without accuracy (--no-eval): it adds the runtime-default row
                cells.append(Cell(EVALUATE, name, target, precision))
        cells.append(Cell(TIME, name))
    return cells


def needs(cell: Cell, cells: list[Cell]) -> list[Cell]:
    """The cells whose results ``cell`` takes."""
    if cell.kind == EVALUATE:
        return [Cell(PARENT, cell.model), Cell(EXPORT, cell.model, cell.target, cell.precision)]
    if cell.kind == TIME:
        return [c for c in cells if c.model == cell.model and c.kind != TIME]
    return []


# ---- the work of each cell ----------------------------------------------------------------
def load_parent(name: str, config: BenchmarkConfig):
    """The parent model, built as every cell builds it (random-init weights seeded alike)."""
    import torch

    from deploy.export import load_source

    torch.manual_seed(config.seed)
    return load_source(name, weights=config.weights, input_size=config.input_size,
                       num_classes=config.num_classes)


def run_parent(source, config: BenchmarkConfig, log: Log) -> dict[str, Any]:
    """The model's record (facts, weights, PyTorch top-1) and PyTorch's class per image."""
    desc = source.describe()
    model = {k: desc[k] for k in ("name", "arch", "num_classes", "input_size", "params", "macs",
                                  "mac_cost", "weights")}
    if not source.weights.get("trained"):  # every number below is then latency only
        model["warnings"] = [f"{source.name} has random-init weights (trained: false): its "
                             f"accuracy columns are chance level and mean nothing; latency only"]
        log(f"warning: {model['warnings'][0]}")
    torch_pred = None
    if config.evaluate:
        images = eval_images(source, config)
        log(f"{source.name}: PyTorch fp32 on {len(images.crops)} images of {images.path.name}")
        torch_pred = torch_predictions(source.model, images, source.entry.preprocess)
        model.update(data=images.path.name, images=len(images.crops),
                     torch_top1=100.0 * float(np.mean(torch_pred == images.labels)))
    return {"model": model, "torch_pred": torch_pred}


_IMAGES: dict[tuple, Any] = {}  # decoded once per process (a worker evaluates many files)


def eval_images(source, config: BenchmarkConfig):
    pre = source.entry.preprocess
    key = (str(config.data), repr(pre), config.limit, config.seed)
    if key not in _IMAGES:
        _IMAGES.clear()  # one image set at a time: a large one is hundreds of MB
        _IMAGES[key] = load_eval_images(config.data, pre, config.limit, config.seed)
    return _IMAGES[key]


def run_export(source, target: str, precision: str, config: BenchmarkConfig, log: Log,
               reuse: Callable[[Path], Any] | None = None
               ) -> tuple[dict[str, Any], Path | None, Any]:
    """(row, file, artifact): the export stage's validated file, or an earlier one still valid
    (the reuse rule of deploy.benchmark.export_cell; ``reuse(path)``, when given, may first
    return the Artifact of a file at the cell's path that a content-addressed folder makes
    valid)."""
    row: dict[str, Any] = {"model": source.name, "target": target, "precision": precision}
    log(f"{source.name} {target} {precision}: export")
    t0 = time.perf_counter()
    path = art = None
    try:
        path = export_path(source, target, precision, config)
        art = reuse(path) if reuse is not None else None
        if art is not None:
            reused = True
        else:
            path, art, reused = export_cell(source, target, precision, config)
        row.update(file=str(path), reused=reused,
                   size_bytes=art.size_bytes + sum(c["size_bytes"] for c in art.companions),
                   validation=validation_summary(art.validation), status="ok")
    except Int8Unavailable as err:
        row.update(status="unavailable", error=one_line(err))
        log(f"{source.name} {target} {precision}: {row['error']}")
    except Exception as err:  # noqa: BLE001 - one failed cell must not stop the table
        row.update(status="failed", error=one_line(err))
        log(f"{source.name} {target} {precision}: FAILED: {row['error']}")
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row, path, art


def export_path(source, target: str, precision: str, config: BenchmarkConfig) -> Path:
    """Where export_cell puts the file: folder and file named by the model it holds."""
    from deploy.placement import file_stem
    from edgebase.capabilities import get_target

    stem = file_stem(source)
    return config.output_dir / stem / get_target(target).file_name(stem, precision)


def run_evaluate(row: dict[str, Any], path: Path, art, images, model: dict[str, Any],
                 torch_pred, config: BenchmarkConfig, log: Log) -> list[dict[str, Any]]:
    """The exported file's accuracy into its row; when the runtime's own default precision on
    this CPU is not f32, a second row measured in that default (``precision_hint: auto``)."""
    what = f"{row['model']} {row['target']} {row['precision']}"
    t0 = time.perf_counter()
    default = None
    try:
        runtime = runtime_of(row["target"])
        evaluate_row(row, path, runtime, art, images, model, torch_pred, config, log)
        default = runtime_default_row(row, path, runtime, art)
    except Exception as err:  # noqa: BLE001 - as in run_export
        row.update(status="failed", error=one_line(err))
        log(f"{what}: FAILED: {row['error']}")
    row["seconds"] = round(row.get("seconds", 0.0) + time.perf_counter() - t0, 2)
    if default is None:
        return [row]
    t0 = time.perf_counter()
    try:
        evaluate_row(default, path, runtime, art, images, model, torch_pred, config, log)
        default["status"] = "ok"
    except Exception as err:  # noqa: BLE001 - as in run_export
        default.update(status="failed", error=one_line(err))
        log(f"{what} (runtime default): FAILED: {default['error']}")
    default["seconds"] = round(time.perf_counter() - t0, 2)
    return [row, default]


def run_time(source, model: dict[str, Any], rows: list[tuple[dict[str, Any], Path]],
             config: BenchmarkConfig, cpu, log: Log) -> dict[str, Any]:
    """PyTorch eager and every good file of the model in interleaved rounds on this machine:
    fills each row's ``latency`` and returns the eager record per thread count. The files'
    manifests are left as they are: ``record_latency`` writes the records where the report's
    files are (on a cluster, the head's output folder, not this node's copies)."""
    timed = [(row, path, runtime_of(row["target"])) for row, path in rows
             if row["status"] == "ok"]
    return interleaved_latency(source, model, timed, config, cpu, log)


def record_latency(rows: list[tuple[dict[str, Any], Path]], machine: dict[str, Any],
                   when: str | None = None) -> None:
    """The timed rows' latency into the manifests of their files at ``path``
    (deploy.benchmark.record_benchmarks: ``machine`` and ``when`` of the timing)."""
    record_benchmarks([(row, path, runtime_of(row["target"])) for row, path in rows
                       if row["status"] == "ok"], machine, when)
