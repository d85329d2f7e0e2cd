"""Per-layer FLOPs vs time: each runtime's own per-operator profile of an exported zoo net,
joined with our per-layer MACs and memory access cost (zoo.facts).

The fp32 file comes from the export stage (validated on real images). The runtime's layer
profiler (capability table: ``Runtime.layer_profiler``) times every operator it executes and
names the PyTorch layer each came from (device_runners.layer_match); time is then summed per
layer and per op class. What cannot be attributed is said: operators no layer claims (by
name and type), and the wall time between operators (wall per inference - sum of operator
times: executor work, scheduling, input/output copies) that no layer's operators enclose; a
runtime whose timeline shows the time between two operators of one layer charges it to that
layer (class "between operators" still). Shares are of the runtime's wall time per inference.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

CLASSES = ("conv", "depthwise", "data movement", "element-wise", "pool", "linear", "other",
           "between operators")
_MOVES = {"reshape", "transpose", "gather", "slice", "shufflechannels", "concat",
          "concatenation", "split", "variadicsplit", "split_v", "reorder", "reorderinput",
          "reorderoutput", "pad", "flatten", "squeeze", "unsqueeze", "expand", "tile"}
_ELEMENTWISE = {"add", "mul", "multiply", "sub", "subtract", "relu", "clip", "sigmoid",
                "hardsigmoid", "hardswish", "eltwise", "subgraph", "swish", "relu6", "tanh",
                "logistic", "hard_swish", "maximum", "minimum", "div", "divide"}
RUNS = 20


def check_models(models) -> None:
    from zoo.registry import get_entry

    for m in models:
        get_entry(m)  # UnknownNameError lists the valid names


def op_class(op_type: str, layer_kind: str | None, layout: bool) -> str:
    from device_runners.layer_match import EXECUTOR, OP_KINDS

    t = op_type.lower()
    if t == EXECUTOR:  # the runtime's own work between two operators of one layer
        return "between operators"
    family = OP_KINDS.get(t)
    if layout or t in _MOVES or family in ("concat", "split", "shuffle"):
        return "data movement"
    if family == "conv" or t in ("convolution", "groupconvolution"):
        return "depthwise" if layer_kind == "depthwise" else "conv"
    if family in ("add", "mul") or t in _ELEMENTWISE:
        return "element-wise"
    if family in ("pool", "linear"):
        return family
    return "other"


def layer_records(model, facts) -> list[dict[str, Any]]:
    """Plain records of the layers the runtimes' operators are matched against."""
    out = []
    for l in facts.layers:
        weight = getattr(model.get_submodule(l.name), "weight", None) if l.name else None
        shape = tuple(weight.shape) if weight is not None and l.macs else None
        out.append({"name": l.name, "kind": l.kind, "weight_shape": shape})
    return out


def join(profile: dict[str, Any], facts) -> dict[str, Any]:
    """Time per layer and per op class, and what is not attributable."""
    kinds = {l.name: l for l in facts.layers}
    per_layer: dict[str, float] = {}
    by_class = {c: 0.0 for c in CLASSES}
    unattributed = []
    for op in profile["ops"]:
        layer = kinds.get(op["layer"]) if op["layer"] else None
        cls = op_class(op["type"], layer.kind if layer else None, op.get("layout", False))
        op["class"] = cls
        by_class[cls] += op["ms"]
        if layer is None:
            unattributed.append({"name": op["name"], "type": op["type"], "ms": op["ms"]})
        else:
            per_layer[layer.name] = per_layer.get(layer.name, 0.0) + op["ms"]
    op_sum = sum(op["ms"] for op in profile["ops"])
    wall = profile["wall_ms"]
    between = max(0.0, wall - op_sum)
    by_class["between operators"] += between
    attributed = sum(per_layer.values())
    layers = [{"name": l.name, "kind": l.kind, "macs": l.macs, "mac_cost": l.mac_cost,
               "ms": per_layer.get(l.name, 0.0)} for l in facts.layers
              if l.name in per_layer or l.macs or l.mac_cost]
    timed = [l for l in layers if l["ms"] > 0 and l["macs"] > 0]
    r = None
    if len(timed) > 2:
        r = float(np.corrcoef(np.log([l["macs"] for l in timed]),
                              np.log([l["ms"] for l in timed]))[0, 1])
    total = max(wall, op_sum)
    return {"wall_ms": wall, "op_sum_ms": op_sum, "attributed_ms": attributed,
            "attributed_share": attributed / total if total else 0.0,
            "between_ms": between, "between_ends_ms": profile.get("ends_ms"),
            "unattributed": sorted(unattributed, key=lambda o: -o["ms"]),
            "by_class_ms": by_class,
            "by_class_share": {c: v / total for c, v in by_class.items()} if total else {},
            "log_time_vs_log_macs_r": r, "layers": layers}


def profile_models(models, config, progress: bool = True) -> list[dict[str, Any]]:
    """One record per model x target: the joined per-layer profile (fp32, fewest threads)."""
    import torch

    from deploy.export import ExportConfig, export, load_source
    from deploy.guidelines import one_line
    from device_runners.bench import bench
    from edgebase.capabilities import get_runtime, get_target
    from zoo.facts import model_facts

    threads = min(config.threads)
    out = []
    for name in models:
        torch.manual_seed(config.seed)
        source = load_source(name)
        facts = model_facts(source.model, source.entry.input_size)
        layers = layer_records(source.model, facts)
        for target in config.targets:
            runtime = get_runtime(get_target(target).runtime)
            rec: dict[str, Any] = {"model": source.name, "target": target,
                                   "runtime": runtime.name, "threads": threads,
                                   "macs": facts.macs, "mac_cost": facts.mac_cost,
                                   "trained": bool(source.weights.get("trained"))}
            profiler = runtime.layer_profiler_fn()
            if profiler is None:
                rec.update(status="unavailable", note=(
                    f"{runtime.name} exposes no per-operator timer through its Python API; "
                    f"no time is attributable to layers here"))
                out.append(rec)
                continue
            try:
                print(f"per-layer: {source.name} on {target}: export", file=sys.stderr,
                      flush=True)
                art = export(source, ExportConfig(target=target, output_dir=config.output_dir
                                                  / "layers" / target, force=True))
                path = config.output_dir / "layers" / target / art.file
                print(f"per-layer: {source.name} on {target}: profile {RUNS} runs",
                      file=sys.stderr, flush=True)
                prof = profiler(path, layers, threads=threads, runs=RUNS)
                b = bench(path, runtime=runtime.name, threads=threads, warmup=5, runs=RUNS,
                          isolate=False)
                rec.update(status="ok", file=str(path), method=prof["method"],
                           bench_p50_ms=b.p50_ms, **join(prof, facts),
                           ops=[{k: o[k] for k in ("name", "type", "ms", "layer", "class")}
                                for o in prof["ops"]])
            except Exception as err:  # noqa: BLE001 - one failed profile must not stop the rest
                rec.update(status="failed", error=one_line(err))
                print(f"per-layer: {source.name} on {target}: FAILED: {rec['error']}",
                      file=sys.stderr, flush=True)
            out.append(rec)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ends(r) -> str:
    ends = r.get("between_ends_ms")
    return "" if ends is None else (f" ({ends:.2f} before the first operator and after the "
                                    f"last, {max(r['between_ms'] - ends, 0):.2f} between layers)")


def layers_markdown(records, plots: dict[str, str]) -> str:
    if not records:
        return ""
    from deploy.guidelines_report import markdown_table

    lines = ["## Per-layer FLOPs vs time", "",
             "Each runtime's own per-operator profile (fp32, batch 1, "
             f"{RUNS} runs) joined with our per-layer MACs and memory access cost. Shares are "
             "of the runtime's wall time per profiled inference; *between operators* is wall "
             "time no operator reports (executor work, scheduling, input/output copies): "
             "where the runtime's timeline shows it between two operators of one layer "
             "(onnxruntime) it is charged to that layer, the rest is *not attributable*, "
             "with the operators no layer claims. r = correlation of log time and log MACs "
             "over the layers that have MACs.", ""]
    head = ["model", "runtime", "wall ms", "bench p50 ms", "attributed", *CLASSES, "r",
            "not attributable"]
    body = []
    for r in records:
        if r["status"] != "ok":
            body.append([r["model"], r["runtime"], "—", "—", "0%", *("—" for _ in CLASSES), "—",
                         r.get("note") or r.get("error", "")])
            continue
        un = ", ".join(f"{o['type']} {o['ms']:.3f} ms" for o in r["unattributed"][:3])
        more = len(r["unattributed"]) - 3
        un = (un + (f" (+{more} more)" if more > 0 else "")) or "none"
        body.append([r["model"], r["runtime"], f"{r['wall_ms']:.2f}", f"{r['bench_p50_ms']:.2f}",
                     _pct(r["attributed_share"]),
                     *(_pct(r["by_class_share"][c]) for c in CLASSES),
                     "—" if r["log_time_vs_log_macs_r"] is None
                     else f"{r['log_time_vs_log_macs_r']:.2f}",
                     f"between operators {r['between_ms']:.2f} ms{_ends(r)}; ops: {un}"])
    lines += [markdown_table(head, body), ""]
    for key, title in (("layers_scatter", "time vs MACs per layer"),
                       ("layers_share", "share of time by op class")):
        if key in plots:
            lines += [f"![{title}]({plots[key]})", ""]
    for r in records:
        if r["status"] != "ok":
            continue
        top = sorted(r["layers"], key=lambda l: -l["ms"])[:8]
        total_macs = r["macs"] or 1
        lines += [f"Slowest layers of {r['model']} on {r['runtime']} (time share vs MAC share):",
                  "", markdown_table(
                      ["layer", "kind", "ms", "time %", "MMAC", "MAC %", "MAC cost (K)"],
                      [[l["name"], l["kind"], f"{l['ms']:.3f}", _pct(l["ms"] / r["wall_ms"]),
                        f"{l['macs'] / 1e6:.2f}", _pct(l["macs"] / total_macs),
                        f"{l['mac_cost'] / 1e3:.0f}"] for l in top]), ""]
    return "\n".join(lines)


