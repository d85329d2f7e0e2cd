"""``runner bench``: latency, throughput, MAC rate and memory of one model file.

Like LiteRT's benchmark_model and OpenVINO's benchmark_app, inputs are bound once and the
timed call is the runtime's own inference call, nothing else; statistics are over the
steady-state runs after warm-up. With a manifest beside the model, its MAC count gives the
achieved MAC/s and the share of the CPU's derived peak for the arithmetic the file runs in:
int8 for int8 files, else the float precision the runtime reports (f32 unless a precision
hint asked for bf16/f16 and the CPU has it).
"""
from __future__ import annotations

import os
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgebase.errors import ConfigError, DataError
from edgebase.manifest import read_manifest
from device_runners import sysinfo
from device_runners.backends import backend_class, resolve
from device_runners.backends.base import shape_hints, shape_str, spec_dict
from device_runners.caveats import caveats, weights_trained

TIMING = "inference call only; inputs bound once before timing (as benchmark_model does)"


@dataclass
class BenchResult:
    model: str
    runtime: str
    runtime_version: str
    provider: str
    threads: int
    batch: int
    inputs: list[dict[str, Any]]
    input_source: str  # "random" or the --input file
    fed_shapes: list[list[int]]  # the shapes actually run (dynamic axes filled in)
    check_ms: float | None  # isolated load-and-run check in a child process
    import_ms: float  # importing the runtime
    load_ms: float  # reading + compiling the model (backend construction)
    first_ms: float  # the first inference after binding
    warmup_runs: int
    runs: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    throughput: float  # samples per second = batch / mean latency
    macs: int | None  # per sample, from the manifest
    achieved_gmacs: float | None  # macs x batch / p50 latency
    peak_gmacs: float | None  # peak of ``arithmetic`` on the cores the threads can use
    peak_share: float | None  # achieved / peak_gmacs
    peak_rss_mb: float
    cpu: dict[str, Any]
    precision_hint: str = "f32"  # asked of the runtime
    inference_precision: str = "f32"  # what its float kernels ran in
    arithmetic: str = "f32"  # whose peak the MAC rate is compared with: int8 | f32 | bf16 | f16
    peak_unit: str | None = None  # the instruction that sets that peak
    timing: str = TIMING
    profile: list[dict[str, Any]] | None = None
    profile_note: str | None = None
    op_counts: dict[str, int] | None = None
    # what the file carries inside when no manifest is beside it (device_runners.embedded)
    embedded: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # from the manifest (device_runners.caveats): None when unknown; warnings go to stderr too
    weights_trained: bool | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stats(ns) -> dict[str, float]:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"mean_ms": float(ms.mean()), "std_ms": float(ms.std()), "min_ms": float(ms.min()),
            "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "max_ms": float(ms.max())}


def read_input(path: str | os.PathLike, names: list[str]):
    """An .npy array (single-input models) or an .npz keyed by input name."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such input file")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        if "pickled" in str(e):  # numpy's text goes on to suggest allow_pickle: never that
            raise DataError(f"{path}: holds pickled Python objects, which are never loaded; "
                            f"save plain arrays with numpy.save / numpy.savez") from None
        raise DataError(f"{path}: not a .npy/.npz array file ({e})") from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        arrays = {k: data[k] for k in data.files}
    if len(arrays) == 1 and len(names) == 1:
        return next(iter(arrays.values()))
    return arrays


def time_loop(fn, warmup: int, runs: int | None, min_time: float | None
              ) -> tuple[float, array]:
    """(first-call ms, per-run ns); exactly ``runs`` runs, or runs until ``min_time`` s passed.

    The times go into an int64 array (8 bytes a run; a list of Python ints costs ~36), so a
    long ``--min-time`` run grows the process by little more than the times themselves."""
    clock = time.perf_counter_ns
    t0 = clock()
    fn()
    first_ms = (clock() - t0) / 1e6
    for _ in range(warmup):
        fn()
    times = array("q")
    append = times.append
    if runs is not None:
        for _ in range(runs):
            t0 = clock()
            fn()
            append(clock() - t0)
    else:
        deadline = clock() + int(min_time * 1e9)
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            append(t1 - t0)
            if t1 >= deadline:
                break
    return first_ms, times


def _bench_file(model: str | os.PathLike, *, runtime: str | None = None, threads: int | None = None,
          warmup: int = 5, runs: int | None = None, min_time: float | None = None,
          batch: int | None = None, input: str | os.PathLike | None = None,
          shape: tuple[int, ...] | None = None,
          profile: bool = False, isolate: bool = True, fma_pipes: int = 2,
          precision_hint: str | None = None) -> BenchResult:
    """Benchmark one model file; see the module docstring. Default: 100 runs."""
    if runs is not None and min_time is not None:
        raise ConfigError("give --runs or --min-time, not both")
    if runs is None and min_time is None:
        runs = 100
    if runs is not None and runs < 1:
        raise ConfigError(f"runs must be at least 1, got {runs}")
    if min_time is not None and min_time <= 0:
        raise ConfigError(f"min-time must be positive, got {min_time}")
    if warmup < 0:
        raise ConfigError(f"warmup must be 0 or more, got {warmup}")
    if batch is not None and batch < 1:
        raise ConfigError(f"batch must be at least 1, got {batch}")
    cpu = sysinfo.cpu_info(fma_pipes=fma_pipes)
    threads = threads or cpu.cores
    path, runtime = resolve(model, runtime)
    artifact = read_manifest(path)

    cls = backend_class(runtime)
    cls.check_hint(precision_hint)
    t0 = time.perf_counter()
    cls.import_runtime()  # first: a missing runtime is reported before anything else
    import_ms = (time.perf_counter() - t0) * 1e3
    check_ms = None
    if isolate:
        from device_runners.isolation import check_in_child
        t0 = time.perf_counter()
        check_in_child(path, runtime, threads)
        check_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    backend = cls(path, threads=threads, precision_hint=precision_hint)
    load_ms = (time.perf_counter() - t0) * 1e3
    embedded = backend.embedded() if artifact is None else None

    if input is not None and shape is not None:
        raise ConfigError("give --input or --shape, not both")
    if input is not None:
        x = read_input(input, [t.name for t in backend.inputs])
        feeds = backend.feeds(x)
        got = next(iter(feeds.values())).shape[0]
        if batch is not None and batch != got:
            raise ConfigError(f"--batch {batch} but {input} holds a batch of {got}")
        batch, source = got, str(input)
    else:
        if shape is not None:
            if len(backend.inputs) != 1:
                raise ConfigError("--shape is for single-input models; use --input FILE.npz")
            hints, source = {backend.input.name: tuple(shape)}, "random (--shape)"
        else:
            hints, known = {}, "the manifest"
            if artifact:
                hints = shape_hints(backend.inputs, artifact.inputs, artifact.preprocess)
            elif embedded is not None and embedded.crop and embedded.layout:
                hints, known = shape_hints(backend.inputs, (), embedded), embedded.where
            source = f"random (shape from {known})" if any(
                d < 0 for t in backend.inputs for d in t.shape[1:]) and hints else "random"
        if batch is None:
            first = backend.concrete_shapes(None, hints)[0]
            batch = first[0] if first else 1
        feeds = backend.example(batch=batch, seed=0, shapes=hints)
    x = feeds if len(feeds) > 1 else next(iter(feeds.values()))

    fn = backend.bind(x)
    first_ms, times = time_loop(fn, warmup, runs, min_time)
    stats = _stats(times)
    macs = int(artifact.model["macs"]) if artifact and artifact.model.get("macs") else None
    mac_note = None
    if macs and len(feeds) == 1:
        # the manifest's MAC count holds for its own input size only
        made = shape_hints(backend.inputs, artifact.inputs, artifact.preprocess)
        fed = next(iter(feeds.values())).shape[1:]
        want = made.get(backend.input.name, ())[1:]
        if want and tuple(fed) != tuple(want):
            mac_note = (f"the manifest's {macs / 1e6:.1f} MMAC is for input "
                        f"{shape_str((1, *want))}, not the fed {shape_str((batch, *fed))}")
            macs = None
    achieved = macs * batch / (stats["p50_ms"] / 1e3) / 1e9 if macs else None
    arithmetic = file_arithmetic(artifact, backend)
    unit = cpu.peak(arithmetic)
    peak = unit.for_threads(threads, cpu.cores) if unit else None
    share = achieved / peak if achieved and peak else None

    rows, note = None, None
    if profile:
        rows = backend.profile(x, runs=min(len(times), 20))
        if rows is None:
            note = (f"{runtime} exposes no per-operator timer through its Python API "
                    f"(LiteRT: benchmark_model --enable_op_profiling=true)")
    counts = backend.op_counts() if hasattr(backend, "op_counts") else None
    return BenchResult(
        model=str(path), runtime=runtime, runtime_version=backend.version,
        provider=backend.provider, threads=threads, batch=batch,
        inputs=[spec_dict(t) for t in backend.inputs], input_source=source,
        fed_shapes=[list(np.shape(v)) for v in feeds.values()],
        check_ms=check_ms, import_ms=import_ms, load_ms=load_ms, first_ms=first_ms,
        warmup_runs=warmup, runs=len(times), **stats,
        throughput=batch / (stats["mean_ms"] / 1e3), macs=macs, achieved_gmacs=achieved,
        peak_gmacs=peak, peak_share=share, peak_rss_mb=sysinfo.peak_rss_mb(), cpu=cpu.to_dict(),
        precision_hint=backend.precision_hint, inference_precision=backend.inference_precision,
        arithmetic=arithmetic, peak_unit=unit.unit if unit else None, profile=rows, profile_note=note, op_counts=counts,
        embedded=describe_embedded(embedded),
        extra={"mac_note": mac_note} if mac_note else {},
        weights_trained=weights_trained(artifact), warnings=caveats(artifact, path.name))


def bench(model: str | os.PathLike, **options) -> BenchResult:
    """Benchmark one model file (options as ``_bench_file``); a Deep Compression container is
    decoded first, and its sizes and decode time are reported beside the latency."""
    from device_runners.container import materialized

    with materialized(model) as (path, container):
        result = _bench_file(path, **options)
    if container:
        result.model = str(model)
        result.extra["container"] = container
    return result


def describe_embedded(e) -> dict[str, Any] | None:
    """What a file without a manifest says about itself, for the table and the JSON."""
    if e is None:
        return None
    from device_runners.embedded import background_first, fmt_values as _fmt

    parts = []
    if e.mean is not None:
        parts.append(f"normalization (x/255 - {_fmt(e.mean)}) / {_fmt(e.std)}")
    if e.crop:
        parts.append(f"resize {e.resize} crop {e.crop}")
    if e.labels:
        parts.append(f"{len(e.labels)} labels" + (f" (first {e.labels[0]!r}: label offset 1)"
                                                  if background_first(e.labels) else ""))
    elif e.label_offset is not None:
        parts.append(f"label offset {e.label_offset}")
    if e.problem:
        parts.append(f"ignored: {e.problem}")
    return {"where": e.where, "mean": e.mean, "std": e.std, "resize": e.resize, "crop": e.crop,
            "labels": len(e.labels) if e.labels else None, "label_offset": e.label_offset,
            "problem": e.problem,
            "summary": f"{e.where}: " + ("; ".join(parts) or "nothing the runner uses")}


def file_arithmetic(artifact, backend) -> str:
    """The arithmetic whose peak bounds this file: int8 when its manifest says int8 (its
    convolutions run in integer kernels), else the float precision the runtime ran in."""
    if artifact is not None and artifact.precision == "int8":
        return "int8"
    return backend.inference_precision


def format_table(r: BenchResult, top: int = 15) -> str:
    ins = ", ".join(f"{t['name']} {t['dtype']}{shape_str(t['shape'])}" for t in r.inputs)
    if r.fed_shapes and any(list(s) != t["shape"] for s, t in zip(r.fed_shapes, r.inputs)):
        ins += " fed as " + ", ".join(shape_str(s) for s in r.fed_shapes)
    lines = [
        f"model        {r.model}",
        f"runtime      {r.runtime} {r.runtime_version} | {r.provider} | {r.threads} threads",
        f"precision    float work in {r.inference_precision} (hint {r.precision_hint})"
        + (" -- NOT the file's f32: numbers differ from an f32 run"
           if r.inference_precision != "f32" else ""),
        f"input        {ins} | batch {r.batch} | {r.input_source}",
        f"cpu          {r.cpu['model']} | {r.cpu['cores']} cores | {r.cpu['isa']}",
        f"init         import {r.import_ms:.1f} ms | load {r.load_ms:.1f} ms"
        + (f" | isolated check {r.check_ms:.0f} ms" if r.check_ms is not None else ""),
        f"first        {r.first_ms:.3f} ms | warm-up {r.warmup_runs} runs",
        f"latency ms   mean {r.mean_ms:.3f}  std {r.std_ms:.3f}  min {r.min_ms:.3f}  "
        f"p50 {r.p50_ms:.3f}  p90 {r.p90_ms:.3f}  p99 {r.p99_ms:.3f}  max {r.max_ms:.3f}"
        f"  ({r.runs} runs)",
        f"throughput   {r.throughput:.1f} samples/s",
    ]
    if r.macs:
        lines.append(f"MAC rate     {r.macs / 1e6:.1f} MMAC/sample -> {r.achieved_gmacs:.2f} GMAC/s "
                     f"at p50" + (f" = {100 * r.peak_share:.1f}% of the {r.peak_gmacs:.1f} GMAC/s "
                                  f"{r.arithmetic} peak ({r.peak_unit}) of "
                                  f"{min(r.threads, r.cpu['cores'])} cores"
                                  if r.peak_share else ""))
    else:
        lines.append("MAC rate     " + (r.extra.get("mac_note") or
                                         "unknown (no manifest with a MAC count beside the model)"))
    for arithmetic, unit in r.cpu.get("peaks", {}).items():
        lines.append(f"peak {arithmetic:<7} {unit['derivation']} (machine, all cores)")
    if not r.cpu.get("peaks"):
        lines.append(f"peak         {r.cpu['peak_derivation']} (machine, all cores)")
    lines.append(f"peak RSS     {r.peak_rss_mb:.1f} MB (whole process)")
    lines.append(f"timing       {r.timing}")
    c = r.extra.get("container")
    if c:
        lines.append(f"container    {c['container_bytes']:,} bytes to download -> "
                     f"{c['decoded_bytes']:,} bytes decoded in {c['decode_ms']:.0f} ms "
                     f"(not in the latency)")
    if r.embedded:
        lines.append(f"file says    {r.embedded['summary']}")
    if r.op_counts:
        lines.append("ops          " + ", ".join(f"{k} {v}" for k, v in r.op_counts.items()))
    if r.profile:
        total = sum(row["mean_ms"] for row in r.profile) or 1.0
        lines.append(f"profile      top {min(top, len(r.profile))} of {len(r.profile)} "
                     f"operators, mean ms per inference")
        width = min(48, max(len(row["name"]) for row in r.profile[:top]))
        for row in r.profile[:top]:
            lines.append(f"  {row['name'][:width]:<{width}}  {row['type'][:20]:<20} "
                         f"{row['mean_ms']:8.3f}  {100 * row['mean_ms'] / total:5.1f}%")
    elif r.profile_note:
        lines.append(f"profile      {r.profile_note}")
    return "\n".join(lines)
