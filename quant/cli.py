"""The int8 flags of ``deploy export``: argument checks and the lines printed after an export."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgebase.errors import ConfigError

# dest -> flag; --eval is the hidden old name of --data's accuracy half
INT8_ONLY = {"calib": "--calib", "calib_size": "--calib-size", "calib_method": "--calib-method",
             "eval": "--eval", "limit": "--limit", "max_drop": "--max-drop"}


def int8_precision(args) -> str | None:
    """"int8" for --int8; int8-only flags without it, or --int8 with --fp16, are errors."""
    from edgebase.capabilities import all_int8_io

    if not args.int8:
        given = [flag for a, flag in INT8_ONLY.items() if getattr(args, a, None) is not None]
        if args.int8_io != all_int8_io()[0]:
            given.append("--int8-io")
        if given:
            raise ConfigError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} "
                              f"--int8")
        return None
    if args.fp16:
        raise ConfigError("--int8 and --fp16 exclude each other; choose one precision")
    return "int8"


def int8_config(args) -> dict[str, Any]:
    """The int8 stage's options (``deploy.int8_stage.Int8Config`` fields, checked there)
    from the flags; --data measures int8 accuracy too (the old --eval did only that)."""
    eval_data = getattr(args, "eval", None) or (args.data if args.int8 else None)
    from quant.calibration import calib_choice

    return {"calib": calib_choice(args.calib), "calib_size": args.calib_size,
            "calib_method": args.calib_method, "io": args.int8_io,
            "eval_data": Path(eval_data) if eval_data else None, "eval_limit": args.limit,
            "max_drop": args.max_drop}


def report_lines(a) -> list[str]:
    """What the int8 pass did, for the screen (the manifest has all of it)."""
    p = a.passes[-1]
    x = a.extra
    c = p["calibration"]
    if c.get("kind") == "zeroq":
        calib = (f"{c['size']} inputs distilled from BatchNorm statistics (ZeroQ, "
                 f"{c['iterations']} iterations), no real images")
    elif c.get("kind") == "packaged":
        calib = f"{c['images']} {c['source']} images ({c['file']}, seed {c['seed']})"
    elif c.get("kind") == "synthetic":
        calib = f"{c['size']} synthetic noise inputs (seed {c['seed']})"
    else:
        calib = f"{c['size']} images from {c['path']} (seed {c['seed']})"
    lines = [f"  int8:        {p['quantizer']}, calibration {calib}",
             f"  size:        {x['size_ratio_vs_fp32']:.2f}x smaller than fp32 "
             f"({x['fp32_parent']['file']})"]
    if x.get("latency_only"):
        lines.append(f"  WARNING:     {x['latency_only'].upper()}")
    t = a.inputs[0]
    if t.scale:
        lines.append(f"  input quant: {t.dtype} scale {t.scale:.6g} zero point {t.zero_point}: "
                     f"q = round(x / scale) + zero_point on the preprocessed pixels")
    if "float_ops" in x:
        still = ", ".join(f"{k} x{v}" for k, v in x["float_ops"].items()) or "none"
        lines.append(f"  float ops:   {still} ({x.get('dequantize_count', 0)} DEQUANTIZE)")
    if p.get("weight_only_int8"):
        lines.append(f"  weight-only: {len(p['weight_only_int8'])} layers NNCF's quantize skips "
                     f"(e.g. squeeze-excite) store int8 weights; their activations stay float")
    bc = p.get("bias_correction")
    if bc:
        lines.append(f"  bias corr.:  {bc['layers']} layers against the PyTorch parent")
    elif p.get("nncf_bias_correction"):
        lines.append(f"  bias corr.:  NNCF's ({p['nncf_bias_correction']})")
    acc = x.get("accuracy")
    if acc:
        lines.append(f"  accuracy:    {acc['images']} held-out images of {acc['data']}: top-1 "
                     f"fp32 {acc['ref_top1']:.2f} % / int8 {acc['top1']:.2f} % (drop "
                     f"{acc['top1_drop']:.2f}), top-5 {acc['ref_top5']:.2f} / {acc['top5']:.2f}, "
                     f"agreement {acc['agreement']:.1f} %, cosine {acc['cosine_mean']:.4f}")
    s = x.get("sensitivity")
    if s:
        lines.append(f"  fallback:    {len(s['float_layers'])} layers kept in float "
                     f"({', '.join(s['float_layers']) or 'none'}); "
                     f"{'within' if s.get('reached') else 'NOT within'} --max-drop {s['max_drop']}")
    return lines
