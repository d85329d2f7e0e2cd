"""`deploy benchmark`: every model x target x precision through export, validation, accuracy
and latency, against PyTorch measured in the same run.

Per model: the PyTorch fp32 parent is evaluated once on the evaluation images and timed in
eager mode (batch 1, each thread count). Per cell (target x precision): the export stage
writes a validated file, or a validated file from an earlier run is reused when its manifest
names the same parent and the bytes still match; then every evaluation image goes through the
file with the runner's backends and preprocessing (so the runner and this table see the same
pixels as PyTorch), and the runner's ``bench`` times it per thread count.

A failing cell records its error and the others still run. Latency is measured after every
cell is exported, in ``rounds`` interleaved rounds (each round times PyTorch eager and every
file once per thread count), so a burst of other work on a shared machine hits all of them
alike instead of one. Latency-derived columns all use medians: p50 = median over rounds of
each round's p50; speed-up = median over rounds of eager p50 / file p50 in the same round;
achieved GMAC/s = MACs / p50; share of peak = GMAC/s over the peak of the arithmetic the file
ran in (int8 for int8 files, else the float precision the runtime reported) on the cores the
run may use (``device_runners.sysinfo``, scaled to the thread count). A measurement taken
while the 1-min load average exceeded the usable cores is flagged ``loaded`` (other work
competed).

Float files run in f32, their declared precision. Where a runtime's own default on this CPU is
another precision (OpenVINO: bf16 on AMX Xeons), the same file is measured a second time in
that default and reported as its own row (``precision_hint: auto``), so an app that keeps the
default knows its accuracy and speed.

The run is planned as cells and executed in this process or on a Ray cluster (deploy.sweep);
this module holds what a cell does with one model, file or latency round.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import ConfigError, DeployError, ValidationError

INT8 = "int8"


@dataclass(frozen=True)
class BenchmarkConfig:
    models: tuple[str, ...]
    targets: tuple[str, ...] | None = None  # None: every target in the capability table
    precisions: tuple[str, ...] = ("fp32",)
    data: Path | None = None  # evaluation images (default: by input size, see deploy.validate)
    calib: Path | None = None  # calibration images for int8
    limit: int | None = None  # evaluation images (class-balanced subset); None: all
    threads: tuple[int, ...] = (1, 2)
    output_dir: Path = Path("out/benchmark")
    runs: int = 50  # timed runs per measurement, split over the rounds
    warmup: int = 10
    rounds: int = 3  # interleaved latency rounds (medians over them)
    evaluate: bool = True  # False: latency only (no accuracy columns)
    input_size: int | None = None
    num_classes: int | None = None
    seed: int = 0  # random-init weights are seeded so their exports are reproducible
    weights: Path | None = None  # a checkpoint for the (single) model
    device: str | None = None  # ssh address: file latencies measured there (deploy.device)
    device_options: dict | None = None  # python, remote_dir, ssh_config, connect_timeout, install

    def __post_init__(self):
        from edgebase.capabilities import all_precisions, get_target, target_names

        if not self.models:
            raise ConfigError("name at least one model (see `deploy models`)")
        from zoo import get_entry

        for name in self.models:  # a typo is refused here, not reported as a failed cell
            get_entry(name)  # UnknownNameError lists the valid names
        targets = tuple(self.targets) if self.targets else tuple(target_names())
        for t in targets:
            get_target(t)  # UnknownNameError lists the valid targets
        object.__setattr__(self, "targets", targets)
        valid = sorted(set(all_precisions()) | {"fp32", "fp16", INT8})
        for p in self.precisions:
            if p not in valid:
                raise ConfigError(f"unknown precision {p!r}; valid: {', '.join(valid)}")
        if not self.precisions or len(set(self.precisions)) != len(self.precisions):
            raise ConfigError(f"--precisions needs distinct values, got {','.join(self.precisions)}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise ConfigError(f"--threads needs positive counts, got {self.threads}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if self.weights is not None and len(self.models) != 1:
            raise ConfigError("--weights needs exactly one MODEL (the checkpoint's architecture)")
        if self.runs < 1 or self.warmup < 0:
            raise ConfigError("--runs must be at least 1 and --warmup 0 or more")
        if self.rounds < 1 or self.rounds > self.runs:
            raise ConfigError(f"--rounds must be between 1 and --runs ({self.runs}), "
                              f"got {self.rounds}")
        for what, p in (("--data", self.data), ("--calib", self.calib)):
            if p is not None and not Path(p).exists():
                from edgebase.errors import DataError
                raise DataError(f"{what} {p}: no such file or folder")
        object.__setattr__(self, "output_dir", Path(self.output_dir))


def int8_unavailable(target) -> str | None:
    """Why the export stage cannot make int8 for ``target`` (None when it can)."""
    if INT8 in target.precisions:
        return None
    reason = target.refused.get(INT8)
    return f"int8 unavailable: {reason or 'the export stage has no int8 pass for ' + target.name}"


# ---- images ------------------------------------------------------------------------------
@dataclass
class EvalImages:
    """Centre crops (RGB uint8) of the evaluation subset and their labels, decoded once."""

    path: Path
    crops: list[np.ndarray]
    labels: np.ndarray
    num_classes: int


def load_eval_images(data: Path | None, preprocess, limit: int | None, seed: int = 0
                     ) -> EvalImages:
    from deploy.validate import default_data
    from edgebase.images import ImageSet, resize_crop

    path, split = (Path(data), "test") if data is not None else default_data(preprocess.crop)
    images = ImageSet(path, split)
    idx = images.subset(limit, seed=seed)
    crops = [resize_crop(images.load(i), preprocess.resize, preprocess.crop,
                         preprocess.interpolation) for i in idx]
    labels = np.array([images.samples[i].label for i in idx], dtype=np.int64)
    return EvalImages(path, crops, labels, images.num_classes)


def torch_predictions(model, images: EvalImages, preprocess, batch: int = 64) -> np.ndarray:
    from deploy.validate import torch_logits
    from edgebase.images import normalize

    rgb = images.crops if preprocess.color == "RGB" else [c[..., ::-1] for c in images.crops]
    preds = []
    for s in range(0, len(rgb), batch):
        x = np.stack([normalize(c, preprocess.mean, preprocess.std, "NCHW")
                      for c in rgb[s:s + batch]])
        preds.append(torch_logits(model, x).argmax(1))
    return np.concatenate(preds)


def file_predictions(path: Path, runtime: str, artifact, images: EvalImages,
                     threads: int, precision_hint: str | None = None) -> np.ndarray:
    """Top-1 class per image from the exported file, fed as ``runner eval`` feeds it."""
    from device_runners.backends import backend_class
    from device_runners.evaluate import make_pipeline, scores, to_input
    from device_runners.isolation import check_in_child

    check_in_child(path, runtime, threads)  # a crashing runtime fails this cell, not the run
    backend = backend_class(runtime)(path, threads=threads, precision_hint=precision_hint)
    try:
        spec, out_spec = backend.input, backend.outputs[0]
        pipe = make_pipeline(spec, artifact.preprocess)
        # the crops are already resized and cropped: resizing to the crop size is a no-op
        pipe = dataclasses.replace(pipe, resize=pipe.crop)
        batch = spec.shape[0] if spec.shape and spec.shape[0] > 0 else 1
        preds = []
        for s in range(0, len(images.crops), batch):
            x = np.stack([to_input(c, pipe, spec) for c in images.crops[s:s + batch]])
            preds.append(scores(backend.run(x)[0], out_spec).argmax(1) - pipe.label_offset)
        return np.concatenate(preds)
    finally:
        backend.close()


# ---- latency -----------------------------------------------------------------------------
def eager_latency(model, input_size: int, threads: int, warmup: int, runs: int
                  ) -> dict[str, float]:
    """PyTorch eager fp32, batch 1, ``threads`` intra-op threads; p50/p90 in ms."""
    import torch

    from device_runners.bench import _stats, time_loop

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            _, times = time_loop(lambda: model(x), warmup, runs, None)
    finally:
        torch.set_num_threads(before)
    s = _stats(times)
    return {"p50_ms": s["p50_ms"], "p90_ms": s["p90_ms"], "load": os.getloadavg()[0]}


def rates(macs: int | None, p50_ms: float, threads: int, cpu, arithmetic: str = "f32"
          ) -> tuple[float | None, float | None]:
    """(achieved GMAC/s at the median latency, share of the ``arithmetic`` peak (f32, int8,
    bf16, f16) of ``threads`` cores)."""
    if not macs or p50_ms <= 0:
        return None, None
    gmacs = macs / (p50_ms / 1e3) / 1e9
    unit = cpu.peak(arithmetic)
    peak = unit.for_threads(threads, cpu.cores) if unit else None
    return gmacs, (gmacs / peak if peak else None)


# ---- artifacts ---------------------------------------------------------------------------
def export_cell(source, target: str, precision: str, config: BenchmarkConfig):
    """(path, artifact, reused) for one cell; raises DeployError when it cannot be made."""
    from deploy.export import ExportConfig, export
    from deploy.int8_stage import Int8Config
    from deploy.placement import file_stem
    from deploy.reuse import find_reusable
    from edgebase.capabilities import get_target

    entry = get_target(target)
    if precision == INT8:
        why = int8_unavailable(entry)
        if why:
            raise Int8Unavailable(why)
    entry.check_precision(precision)
    # named as `deploy export` names them: folder and file by the model the file holds
    out = config.output_dir / file_stem(source)
    # force: the output folder is this command's cache; find_reusable keeps what still matches
    export_config = ExportConfig(target=target, precision=precision, output_dir=out,
                                 validate_data=config.data, threads=max(config.threads),
                                 force=True)
    art = find_reusable(source, export_config)
    if art is not None:
        return out / art.file, art, True
    # calib None: the int8 stage's own default (or its error)
    int8 = Int8Config(calib=config.calib) if precision == INT8 else None
    art = export(source, export_config, int8)
    return out / art.file, art, False


class Int8Unavailable(DeployError):
    """The int8 pass is not available for a target (status "unavailable", not "failed")."""


# ---- the run -----------------------------------------------------------------------------
def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, DeployError) else f"{type(err).__name__}: {text}"


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def runtime_default_row(cell: dict[str, Any], path: Path, runtime: str, art
                          ) -> dict[str, Any] | None:
    """A second row for a float file whose runtime defaults to another precision here."""
    from device_runners.backends import backend_class

    if cell["precision"] == INT8 or backend_class(runtime).default_precision() == "f32":
        return None
    return {k: cell[k] for k in ("model", "target", "precision", "file", "reused", "size_bytes")
            } | {"precision_hint": "auto", "validation": validation_summary(
                (art.validation or {}).get("runtime_default"))}


def _what(model, cell: dict[str, Any]) -> str:
    hint = cell.get("precision_hint")
    return f"{model['name']} {cell['target']} {cell['precision']}" + (
        f" (runtime default, hint {hint})" if hint else "")


def evaluate_row(cell: dict[str, Any], path: Path, runtime: str, art, images, model, torch_pred,
              config: BenchmarkConfig, log: Callable[[str], None]) -> None:
    """Accuracy of one file into ``cell`` (when images are given), with the cell's precision
    hint (None: f32)."""
    if images is None:
        return
    log(f"{_what(model, cell)}: evaluate {len(images.crops)} images")
    pred = file_predictions(path, runtime, art, images, max(config.threads),
                            cell.get("precision_hint"))
    top1 = 100.0 * float(np.mean(pred == images.labels))
    cell.update(top1=top1, delta_top1=top1 - model["torch_top1"],
                agreement=100.0 * float(np.mean(pred == torch_pred)))


def _median(v) -> float:
    return float(np.median(np.asarray(v, dtype=np.float64)))


def interleaved_latency(source, model, timed, config: BenchmarkConfig, cpu,
                        log: Callable[[str], None] = log_stderr) -> dict[str, Any]:
    """PyTorch eager and every file in ``timed``, in interleaved rounds; fills each cell's
    ``latency`` and returns the eager record per thread count."""
    from device_runners.bench import bench

    name, runs = model["name"], max(1, config.runs // config.rounds)
    if config.device:  # the files are timed on the device; PyTorch eager stays on this host
        for cell, path, runtime in timed:
            if cell["status"] != "ok":
                continue
            cell["latency"] = {}
            try:
                _measure_on_device(cell, path, runtime, cell.get("precision_hint"), config,
                                   _what(model, cell), log)
            except Exception as err:  # noqa: BLE001 - one failed cell must not stop the table
                cell.update(status="failed", error=one_line(err))
                log(f"{_what(model, cell)}: FAILED: {cell['error']}")
        timed = []
    eager = {str(t): [] for t in config.threads}
    files = {id(c): {str(t): [] for t in config.threads} for c, _, _ in timed}
    for r in range(config.rounds):
        for t in config.threads:
            load = os.getloadavg()[0]
            e = eager_latency(source.model, source.entry.input_size, t, config.warmup, runs)
            eager[str(t)].append({**e, "load": max(load, e["load"])})
            for cell, path, runtime in timed:
                if cell["status"] != "ok":
                    continue
                try:
                    b = bench(path, runtime=runtime, threads=t, warmup=config.warmup,
                              runs=runs, isolate=False, precision_hint=cell.get("precision_hint"))
                except Exception as err:  # noqa: BLE001 - one failed cell must not stop the table
                    cell.update(status="failed", error=one_line(err))
                    log(f"{_what(model, cell)}: FAILED: {cell['error']}")
                    continue
                cell["inference_precision"] = b.inference_precision
                files[id(cell)][str(t)].append({
                    "p50_ms": b.p50_ms, "p90_ms": b.p90_ms, "arithmetic": b.arithmetic,
                    "peak_unit": b.peak_unit, "load": max(load, os.getloadavg()[0])})
        log(f"{name}: latency round {r + 1}/{config.rounds} done")
    record = {t: _summary(rounds, cpu) for t, rounds in eager.items()}
    for t, rec in record.items():
        log(f"{name}: PyTorch eager {t} thread(s) p50 {rec['p50_ms']:.3f} ms"
            + (f" (load {rec['load']:.1f} > {cpu.cores} cores)" if rec["loaded"] else ""))
    for cell, _, _ in timed:
        if cell["status"] != "ok":
            continue
        cell["latency"] = {}
        for t, rounds in files[id(cell)].items():
            lat = _summary(rounds, cpu)
            arithmetic, unit = rounds[-1]["arithmetic"], rounds[-1]["peak_unit"]
            lat["speedup"] = _median([e["p50_ms"] / f["p50_ms"]
                                      for e, f in zip(eager[t], rounds)])
            lat["gmacs"], lat["peak_share"] = rates(model["macs"], lat["p50_ms"], int(t), cpu,
                                                    arithmetic)
            lat["arithmetic"] = arithmetic
            if lat["peak_share"] is not None and lat["peak_share"] > cpu.impossible_share:
                cell.update(status="failed", error=one_line(ValidationError(
                    f"{t} thread(s): p50 {lat['p50_ms']:.3f} ms would be {lat['gmacs']:.0f} "
                    f"GMAC/s, {lat['peak_share']:.1f}x the {t}-core {arithmetic} peak ({unit}): "
                    f"the timed call did not run the whole model")))
            cell["latency"][t] = lat
            log(f"{_what(model, cell)}: {t} thread(s) p50 {lat['p50_ms']:.3f} ms, "
                f"{lat['speedup']:.2f}x eager")
    return record


def _summary(rounds: list[dict[str, Any]], cpu) -> dict[str, Any]:
    """Medians over rounds; ``loaded`` when the 1-min load average ever exceeded the cores the
    run may use (the other work then took CPU time from this measurement)."""
    load = max(r["load"] for r in rounds)
    return {"p50_ms": _median([r["p50_ms"] for r in rounds]),
            "p90_ms": _median([r["p90_ms"] for r in rounds]),
            "rounds": [round(r["p50_ms"], 4) for r in rounds], "load": load,
            "loaded": load > cpu.cores}


_DEVICES: dict[str, Any] = {}  # address -> (Device, {extra: RunnerEnv}) for one process


def device_session(config: BenchmarkConfig):
    from deploy.device.address import parse_address
    from deploy.device.session import Device

    if config.device not in _DEVICES:
        _DEVICES[config.device] = (Device(parse_address(config.device),
                                          **(config.device_options or {})), {})
    return _DEVICES[config.device]


def measured_now() -> str:
    """When a latency record was measured (UTC), as the records say it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_benchmarks(timed, machine: dict[str, Any], when: str | None = None) -> None:
    """Each timed file's latency into its manifest (``Artifact.benchmarks``), one record per
    thread count; a later run of the same measurement (machine or device, runtime, threads,
    precision hint) replaces the earlier record. ``machine``: the record
    (``device_runners.sysinfo.machine_record``) of the machine the host timings ran on, which
    on a cluster is not the one writing; ``when``: when they were measured (default: now)."""
    from edgebase.manifest import read_manifest, write_manifest

    when = when or measured_now()
    for cell, path, runtime in timed:
        art = read_manifest(path) if cell["status"] == "ok" and cell.get("latency") else None
        if art is None:
            continue
        batch = art.input.shape[0] if art.inputs and art.input.shape[0] > 0 else 1
        records = [{"tool": "deploy benchmark", "runtime": runtime, "threads": int(t),
                    "batch": batch, "precision_hint": cell.get("precision_hint") or "f32",
                    "inference_precision": cell.get("inference_precision"),
                    "device": cell.get("device"),
                    "machine": None if cell.get("device") else machine,
                    "p50_ms": lat["p50_ms"], "p90_ms": lat.get("p90_ms"),
                    "rounds": lat.get("rounds"), "load": lat.get("load"),
                    "loaded": lat.get("loaded"), "measured": when}
                   for t, lat in cell["latency"].items()]
        write_manifest(art.with_benchmarks(*records), path)


def close_device_session(config: BenchmarkConfig, cells: list[dict[str, Any]],
                         fingerprint: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The device's record for the report (None: no device), its SSH connection closed; the
    fingerprint is ``fingerprint`` or the last one a cell brought back."""
    if not config.device or config.device not in _DEVICES:
        return None
    dev = _DEVICES.pop(config.device)[0]
    dev.ssh.close()
    return device_record(str(dev.address), cells, fingerprint)


def device_record(address: str, cells: list[dict[str, Any]],
                  fingerprint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The device of ``address`` as the report names it: ``fingerprint``, or the one its runner
    sent last."""
    fps = [c.get("device_fingerprint") for c in cells if c.get("device_fingerprint")]
    fp = fingerprint or (fps[-1] if fps else None)
    return {"address": address, "fingerprint": fp,
            "emulated": (fp or {}).get("emulated") or None}


def device_runner(config, runtime: str):
    """(Device, RunnerEnv): ``config.device`` with the runner for ``runtime`` (installed there
    when missing, once per process)."""
    from edgebase.capabilities import get_runtime

    device, envs = device_session(config)
    extra = get_runtime(runtime).extra
    if extra not in envs:
        envs[extra] = device.ensure_runner(extra)
    return device, envs[extra]


def bench_on_device(config, remote: str, runtime: str, threads: int, runs: int,
                    hint: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """One ``runner bench`` of a pushed file on ``config.device``: (the runner's result, the
    device's fingerprint taken just before the runner started)."""
    device, env = device_runner(config, runtime)
    argv = ["bench", remote, "--runtime", runtime, "--threads", str(threads), "--warmup",
            str(config.warmup), "--runs", str(runs), "--no-isolate"]
    if hint:
        argv += ["--precision-hint", hint]
    out = device.run_runner(env, argv)
    if out.get("rc") or not out.get("result"):
        raise DeployError(f"on {device.address}: {out.get('error') or 'runner failed'}")
    return out["result"], out.get("fingerprint") or {}


def _measure_on_device(cell: dict[str, Any], path: Path, runtime: str, hint, config,
                       what: str, log: Callable[[str], None]) -> None:
    """Latency per thread count of one file on the device (runner bench over SSH); the
    file's manifest goes along, so the device's runner reports MAC/s and its own peak share.
    No speed-up: PyTorch eager ran on this host, not on the device."""
    from deploy.commands.device import _group

    device, _ = device_runner(config, runtime)
    remote = device.push(_group(path)[0])[0]
    for t in config.threads:
        r, fingerprint = bench_on_device(config, remote, runtime, t, config.runs, hint)
        emulated = fingerprint.get("emulated") or None
        cell["inference_precision"] = r.get("inference_precision")
        cell["device"] = str(device.address)
        cell["device_fingerprint"] = fingerprint
        cell["emulated"] = emulated  # an emulator's timings: comparable with nothing real
        cell["latency"][str(t)] = {
            "p50_ms": r["p50_ms"], "p90_ms": r["p90_ms"], "speedup": None,
            "gmacs": r.get("achieved_gmacs"), "peak_share": r.get("peak_share"),
            "arithmetic": r.get("arithmetic"), "device": str(device.address),
            "emulated": emulated}
        log(f"{what}: {t} thread(s) p50 {r['p50_ms']:.3f} ms on {device.address}")


def runtime_of(target: str) -> str:
    from edgebase.capabilities import get_target

    return get_target(target).runtime


def validation_summary(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if not v:
        return None
    keys = ("status", "images", "data", "max_abs_diff", "cosine_min", "top1_agreement")
    return {k: v[k] for k in keys if k in v}


def worst_load(report: dict[str, Any]) -> float | None:
    """The highest 1-min load average of a measurement flagged ``loaded`` (None: none was)."""
    lats = [lat for c in report["cells"] if c["status"] == "ok"
            for lat in (c.get("latency") or {}).values()]
    lats += [e for m in report["models"] for e in (m.get("eager") or {}).values()]
    loaded = [lat["load"] for lat in lats if lat.get("loaded")]
    return max(loaded) if loaded else None
