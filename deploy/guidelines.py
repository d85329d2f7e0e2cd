"""`deploy guidelines`: ShuffleNet V2's four guideline experiments (zoo.guidelines) measured
in the runtimes a user ships to, beside the paper's numbers.

Per variant x target x precision: the PyTorch module is converted with the target's own
converter (fp32) and, for int8, quantized from that file by the target's PTQ pass on seeded
noise inputs (minmax ranges; these networks see feature maps, not images, so the files are
for latency only). Each file is checked against its PyTorch parent on random inputs before it
is timed (fp32 at the target's fp32 cosine tolerance, int8 at the int8 one), and the check and
the precision the runtime computed in are recorded in the manifest beside it; a file that
fails the check is kept as ``*.failed.*``, its cell is "failed" and the command exits 1.

Latency is the runner's ``bench`` (batch 1, inference call only), in interleaved rounds, on
this host or on a board over SSH (deploy.guidelines_timing).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploy.benchmark import one_line
from deploy.guidelines_timing import measure
from edgebase.errors import ConfigError, DeployError, ValidationError

CHECK_INPUTS = 4  # random inputs each file is compared on
CALIB_INPUTS = 16  # seeded noise inputs for int8 ranges


@dataclass(frozen=True)
class GuidelinesConfig:
    targets: tuple[str, ...]
    guidelines: tuple[str, ...] = ("G1", "G2", "G3", "G4")
    scales: tuple[int, ...] = (2,)
    precisions: tuple[str, ...] = ("fp32", "int8")
    threads: tuple[int, ...] = (1, 2)
    runs: int = 30  # timed runs per measurement, split over the rounds
    warmup: int = 5
    rounds: int = 3
    output_dir: Path = Path("out/guidelines")
    seed: int = 0
    device: str | None = None  # ssh address: files timed there (deploy.device)
    device_options: dict | None = None

    def __post_init__(self):
        from edgebase.capabilities import get_target
        from zoo.guidelines import SCALES, variants

        if not self.targets:
            raise ConfigError("name at least one --target")
        for t in self.targets:
            target = get_target(t)
            for p in self.precisions:
                target.check_precision(p)
                if p == "int8" and target.ptq is None:
                    raise ConfigError(f"{t} has no int8 pass")
        if not set(self.precisions) <= {"fp32", "int8"} or not self.precisions:
            raise ConfigError(f"--precisions takes fp32 and/or int8, got "
                              f"{','.join(self.precisions) or 'none'}")
        bad = [s for s in self.scales if s not in SCALES]
        if bad or not self.scales:
            raise ConfigError(f"--scales {','.join(map(str, self.scales)) or 'none'}; valid: "
                              f"{','.join(map(str, SCALES))} (the tables' x1 x2 x4 columns)")
        variants(self.guidelines, self.scales)  # unknown guideline names list the valid ones
        if not self.threads or any(t < 1 for t in self.threads):
            raise ConfigError(f"--threads needs positive counts, got {self.threads}")
        if self.runs < 1 or self.warmup < 0 or not 1 <= self.rounds <= self.runs:
            raise ConfigError(f"--runs must be >= 1, --warmup >= 0 and --rounds between 1 and "
                              f"--runs ({self.runs}); got {self.runs}, {self.warmup}, "
                              f"{self.rounds}")
        object.__setattr__(self, "guidelines", tuple(g.upper() for g in self.guidelines))
        object.__setattr__(self, "output_dir", Path(self.output_dir))


# ---- files -------------------------------------------------------------------------------
def init_gain(model) -> float:
    """2 for networks with ReLUs (He), else 1: activations keep their scale through the 30
    stacked convolutions instead of vanishing, so int8 ranges on them mean something."""
    import torch

    return 2.0 if any(isinstance(m, torch.nn.ReLU) for m in model.modules()) else 1.0


def build(variant, seed: int):
    """The variant's module with weights N(0, gain / fan-in) (see ``init_gain``)."""
    import torch

    torch.manual_seed(seed)
    model = variant.build().eval()
    gain = init_gain(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, (gain / fan_in) ** 0.5)
    return model


def noise(shape, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(np.float32)


def _layout_to(x: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


def check_against_parent(path: Path, runtime: str, layout: str, model, x: np.ndarray,
                         tolerance, threads: int) -> dict[str, Any]:
    """Run the file and its PyTorch parent on ``x``; cosine and relative max difference."""
    import torch

    from device_runners.backends import backend_class
    from deploy.validate import precision_record

    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    backend = backend_class(runtime)(path, threads=threads)
    try:
        outs = [backend.run(_layout_to(x[i:i + 1], layout))[0] for i in range(len(x))]
        record = precision_record(backend)
    finally:
        backend.close()
    out = np.concatenate(outs).astype(np.float64)
    if out.shape != ref.shape and out.ndim == 4 and out.transpose(0, 3, 1, 2).shape == ref.shape:
        out = out.transpose(0, 3, 1, 2)  # an NHWC file's feature-map output
    if out.shape != ref.shape:
        return {"status": "failed", "failures": [f"output shape {out.shape} != {ref.shape}"]}
    a, b = ref.reshape(len(x), -1).astype(np.float64), out.reshape(len(x), -1)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)
    rel = float(np.abs(a - b).max() / (np.abs(a).max() + 1e-30))
    failures = []
    if tolerance.min_cosine is not None and cos.min() < tolerance.min_cosine:
        failures.append(f"worst cosine {cos.min():.6f} < {tolerance.min_cosine}")
    return {"status": "failed" if failures else "passed", "inputs": f"{len(x)} x N(0,1)",
            "cosine_min": float(cos.min()), "max_rel_diff": rel, "failures": failures, **record}


def make_file(variant, target_name: str, precision: str, out_dir: Path, seed: int,
              threads: int, fp32_file: Path | None = None) -> tuple[Path, Any, bool]:
    """Convert (int8: quantize ``fp32_file``, or a fresh conversion) one variant; returns
    (path, Artifact, reused). A finished file of the same variant, seed and toolchain is
    reused; a file that disagrees with its parent is kept as ``*.failed.*`` and raises
    ValidationError."""
    import torch

    from deploy.placement import place
    from deploy.toolchain import versions
    from edgebase.capabilities import get_target
    from edgebase.manifest import Artifact, read_manifest
    from exporters.common import Conversion
    from zoo.facts import model_facts

    target = get_target(target_name)
    final = out_dir / target.file_name(variant.key, precision)
    tools = (*target.tools, *(target.ptq_tools if precision == "int8" else ()))
    model = build(variant, seed)
    reused = reusable(final, variant, seed, init_gain(model), versions(tools))
    if reused is not None:
        return final, reused, True
    facts = model_facts(model, variant.input_shape[-1], in_channels=variant.in_channels)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=out_dir))
    try:
        if fp32_file is not None:  # int8 from the checked fp32 file of this run
            parent = read_manifest(fp32_file)
            conversion = Conversion(file=fp32_file, details=dict(parent.passes[0]))
            layout = parent.extra["input_layout"]
            passes = [dict(parent.passes[0])]
        else:
            example = torch.from_numpy(noise(variant.input_shape, 1, seed))
            conversion = target.convert_fn()(model, example, work / target.file_name(
                variant.key, "fp32"), precision="fp32")
            layout = conversion.details.get("input_layout", target.input_layout)
            passes = [{"name": "export", "target": target.name, "precision": "fp32",
                       **conversion.details}]
        if precision == "int8":
            conversion, quant_pass = _int8(conversion, target, work / final.name, variant,
                                           seed, model)
            passes.append(quant_pass)
        x = noise(variant.input_shape, CHECK_INPUTS, seed + 1)
        check = check_against_parent(conversion.file, target.runtime, layout, model, x,
                                     target.tolerance(precision), threads)
        check["arithmetic"] = "int8" if precision == "int8" else check["inference_precision"]
        from device_runners.backends import backend_class

        backend = backend_class(target.runtime)(conversion.file, threads=threads)
        artifact = Artifact(
            file=final.name, format=target.name, precision=precision, sha256="", size_bytes=0,
            model={"name": variant.key, "guideline": variant.guideline, "row": variant.label,
                   "scale": variant.scale, "widths": dict(variant.widths), "seed": seed,
                   "init_gain": init_gain(model),
                   "params": facts.params, "macs": facts.macs, "mac_cost": facts.mac_cost,
                   "weights": {"trained": False, "source": "random init",
                               "note": "micro-benchmark: latency only"}},
            inputs=tuple(dataclasses.replace(t, layout=layout) for t in backend.inputs),
            outputs=tuple(backend.outputs), passes=tuple(passes),
            toolchain=versions(tools), validation=check,
            extra={"input_layout": layout, **conversion.graph})
        backend.close()
        failed = check["status"] != "passed"
        dest, artifact = place(conversion, final, artifact, failed=failed)
        if failed:
            raise ValidationError(f"{final.name} disagrees with its PyTorch parent: "
                                  f"{'; '.join(check['failures'])} (kept as {dest.name})")
        return dest, artifact, False
    finally:
        shutil.rmtree(work, ignore_errors=True)


def reusable(path: Path, variant, seed: int, gain: float, toolchain: dict[str, str]):
    """The Artifact at ``path`` when it is a passed file of this variant, seed, weight init
    and toolchain whose bytes still match; else None."""
    from edgebase.files import sha256_file
    from edgebase.manifest import read_manifest

    try:
        art = read_manifest(path) if path.is_file() else None
    except DeployError:
        return None
    if art is None or not art.passed or art.toolchain != toolchain:
        return None
    m = art.model
    if (m.get("name"), m.get("seed"), m.get("widths"), m.get("init_gain", 1.0)
            ) != (variant.key, seed, dict(variant.widths), gain):
        return None
    files = [(path, art.sha256)] + [(path.parent / c["file"], c["sha256"]) for c in art.companions]
    if any(not f.is_file() or sha256_file(f) != want for f, want in files):
        return None
    return art


def _int8(fp32: Any, target, dst: Path, variant, seed: int, model):
    """Quantize the fp32 conversion with the target's PTQ pass (minmax ranges on noise); a
    pass that quantizes the PyTorch module instead of the file (ExecuTorch's: a .pte is
    already lowered) gets ``model``. The others get no parent: it would turn on their bias
    correction, which noise inputs cannot inform."""
    from exporters.common import Conversion
    from quant import get_pass
    from quant.calibration import LATENCY_ONLY, SYNTHETIC, CalibrationSet

    ptq = get_pass(target.name)
    calib = CalibrationSet(noise(variant.input_shape, CALIB_INPUTS, seed + 2),
                           {"kind": SYNTHETIC, "source": "N(0,1) feature maps",
                            "size": CALIB_INPUTS, "seed": seed + 2, "latency_only": True,
                            "note": LATENCY_ONLY})
    facts = ptq.quantize(fp32.file, dst, calib, ptq.make_options("minmax"),
                         parent=model if ptq.QUANTIZES_PARENT else None)
    companions = tuple(dst.with_suffix(s) for s in target.companions)
    graph = facts.get("op_histogram")
    return (Conversion(file=dst, companions=companions,
                       graph={"op_histogram": graph} if graph else {}),
            {"name": "int8", "calibration": calib.source, "method": "minmax",
             "quantized": "the PyTorch module" if ptq.QUANTIZES_PARENT else "the fp32 file",
             **{k: v for k, v in facts.items() if k in ("quantizer", "weights", "activations")}})


# ---- the run -----------------------------------------------------------------------------
class _Bar:
    """tqdm on stderr (files to make, then measurements to take)."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def __call__(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what[-60:], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def variant_record(v) -> dict[str, Any]:
    from zoo.facts import model_facts
    from zoo.guidelines import paper_flops

    facts = model_facts(v.build(), v.input_shape[-1], in_channels=v.in_channels)
    return {"key": v.key, "guideline": v.guideline, "row": v.label, "scale": v.scale,
            "widths": dict(v.widths), "widths_stated": v.stated, "baseline": v.baseline,
            "input_shape": list(v.input_shape), "macs": facts.macs, "paper_macs": paper_flops(v),
            "mac_cost": facts.mac_cost,
            "op_count": sum(1 for l in facts.layers if l.macs or l.mac_cost),
            "paper_arm_images_per_s": v.paper_arm, "paper_gpu_batches_per_s": v.paper_gpu,
            "paper_gpu_widths": v.paper_gpu_widths}


def make_files(vs, config: GuidelinesConfig, progress: bool, log: Callable[[str], None]
               ) -> list[dict[str, Any]]:
    """One cell per variant x target x precision: its checked file, or why it failed."""
    from edgebase.capabilities import get_target

    cells: list[dict[str, Any]] = []
    # fp32 first: the int8 file is quantized from the checked fp32 file when the run makes it
    order = sorted(config.precisions, key=lambda p: p != "fp32")
    jobs = [(v, t, p) for v in vs for t in config.targets for p in order]
    made: dict[tuple[str, str], Path] = {}
    bar = _Bar(len(jobs), "making files", progress)
    for v, t, p in jobs:
        cell: dict[str, Any] = {"variant": v.key, "target": t, "precision": p,
                                "runtime": get_target(t).runtime}
        t0 = time.perf_counter()
        try:
            fp32 = made.get((v.key, t)) if p == "int8" else None
            path, art, reused = make_file(v, t, p, config.output_dir / t, config.seed,
                                          max(config.threads), fp32_file=fp32)
            if p == "fp32":
                made[(v.key, t)] = path
            cell.update(status="ok", file=str(path), file_name=path.name, reused=reused,
                        size_bytes=art.size_bytes + sum(c["size_bytes"] for c in art.companions),
                        check={k: art.validation.get(k) for k in (
                            "status", "cosine_min", "max_rel_diff", "arithmetic")})
        except Exception as err:  # noqa: BLE001 - one failed cell must not stop the rest
            cell.update(status="failed", error=one_line(err))
            log(f"{v.key} {t} {p}: FAILED: {cell['error']}")
        cell["seconds"] = round(time.perf_counter() - t0, 2)
        cells.append(cell)
        bar(f"{v.key} {t} {p}")
    bar.close()
    return cells


def run_guidelines(config: GuidelinesConfig, command: str = "", progress: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Make every file, time them, and return the report (see deploy.guidelines_report)."""
    from deploy.toolchain import versions
    from device_runners import sysinfo
    from zoo.guidelines import CLAIMS, PAPER, variants

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    cpu = sysinfo.cpu_info()
    started, load_start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), os.getloadavg()
    vs = variants(config.guidelines, config.scales)
    records = [variant_record(v) for v in vs]
    timer = None
    try:
        if config.device:  # an unreachable board or a failed install: before minutes of work
            _connect(config)
        cells = make_files(vs, config, progress, log)
        n_ok = sum(c["status"] == "ok" for c in cells)
        bar = _Bar(n_ok * config.rounds * len(config.threads), "timing", progress)
        try:
            timer = measure(cells, config, cpu, bar)
        finally:
            bar.close()
    finally:
        device = _close_device(config, timer)  # its SSH connection closed either way
    from deploy.guidelines_report import verdicts

    report = {
        "command": command, "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "device": device,  # None: timed on this host ("machine")
        "machine": {"cpu": cpu.to_dict(), "cpu_tag": sysinfo.cpu_tag(cpu),
                    "load_average_start": list(load_start),
                    "load_average_end": list(os.getloadavg())},
        "versions": versions(),
        "config": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in dataclasses.asdict(config).items() if k != "device_options"},
        "paper": PAPER, "claims": CLAIMS, "variants": records, "cells": cells,
    }
    report["verdicts"] = verdicts(report)
    return report


def _connect(config: GuidelinesConfig) -> None:
    """The runner for each target's runtime on ``config.device`` (installed when missing)."""
    from deploy.benchmark import device_runner
    from edgebase.capabilities import get_target

    for runtime in dict.fromkeys(get_target(t).runtime for t in config.targets):
        device_runner(config, runtime)


def _close_device(config: GuidelinesConfig, timer) -> dict[str, Any] | None:
    """The board's record for the report (address, fingerprint, the CPU its runner saw and
    that CPU's tag), its SSH connection closed; None without ``--device``."""
    if not config.device:
        return None
    from deploy.benchmark import close_device_session
    from device_runners.sysinfo import CpuInfo, cpu_tag

    fingerprint = getattr(timer, "fingerprint", None)
    record = close_device_session(config, [], fingerprint) or {
        "address": config.device, "fingerprint": None, "emulated": None}
    cpu = getattr(timer, "cpu", None)
    record["cpu"] = cpu
    record["cpu_tag"] = cpu_tag(CpuInfo.from_dict(cpu)) if cpu else None
    return record
