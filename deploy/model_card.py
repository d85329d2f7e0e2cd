"""The bundle's README.md, rendered from its manifest: every number in it was measured.

Sections: what the model is, how it was trained and quantized, the accuracy/latency table
(values recorded by ``runner eval``/``runner bench`` during the release, with the machine and
commands), the exact preprocessing an app must apply, app code from each format's own guide
(the capability table's ``BundleHooks.app_guide``: Android and iOS for ``.tflite``) and the
commands for a board (``runner``). A figure that was not measured says so.
"""
from __future__ import annotations

from typing import Any


def render(m: dict[str, Any]) -> str:
    parts = [_header(m), _files_table(m), _preprocessing(m), *_app_guides(m), _runner(m),
             _provenance(m)]
    return "\n\n".join(p.strip("\n") for p in parts if p) + "\n"


# ---- sections --------------------------------------------------------------------------
def _header(m: dict[str, Any]) -> str:
    src = m.get("source", {})
    w = src.get("weights") or {}
    lines = [f"# {m['name']} {m['version']}", ""]
    what = src.get("description") or f"{src.get('arch', m['name'])} image classifier"
    lines.append(f"{what}. {m.get('num_classes', '?')} classes (`{m['labels']}`, one label a "
                 f"line, line i = output i).")
    facts = []
    if src.get("params"):
        facts.append(f"{src['params'] / 1e6:.2f} M parameters")
    if src.get("macs"):
        facts.append(f"{src['macs'] / 1e6:.1f} M multiply-accumulates per image")
    if facts:
        lines.append(", ".join(facts) + ".")
    lines += ["", "## Training and quantization", ""]
    if not w or w.get("trained") is False:
        lines.append("Random initialisation, no training: the files are for latency work; their "
                     "accuracy figures mean nothing.")
    else:
        trained = (f"Trained on {w['dataset']}" if w.get("dataset") else
                   "Weights from a checkpoint (training data not recorded with it)")
        if w.get("top1") is not None:
            trained += f" (PyTorch top-1 {w['top1']:.2f}% on its test split, recorded with the weights)"
        name = w.get("file") or w.get("path") or "?"
        lines.append(trained + f"; weights `{name}`, sha256 `{w.get('sha256', '?')}`.")
        if w.get("recipe"):
            lines.append("Recipe: " + ", ".join(f"{k} {v}" for k, v in w["recipe"].items()
                                                if not isinstance(v, (dict, list))) + ".")
    if src.get("adaptation"):
        lines.append(f"Architecture change: {src['adaptation']}.")
    for model in m["models"]:
        steps = [_pass(p) for p in model.get("passes", ())]
        lines.append(f"- `{model['path']}`: " + (" -> ".join(steps) if steps else "as exported"))
    return "\n".join(lines)


def _pass(p: dict[str, Any]) -> str:
    name = p.get("name", "?")
    details = ", ".join(f"{k} {v}" for k, v in p.items() if k != "name" and not k.endswith("_seconds")
                        and not isinstance(v, (dict, list)) and v not in (None, ""))
    return f"{name} ({details})" if details else name


def _files_table(m: dict[str, Any]) -> str:
    rows = ["## Accuracy and latency", "",
            "| file | format | precision | size | top-1 | top-5 | latency mean / p50 | vs PyTorch |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    for model in m["models"]:
        acc, lat = model.get("accuracy"), model.get("latency")
        top1 = f"{acc['top1']:.2f}%" if acc else "not measured"
        top5 = f"{acc['top5']:.2f}%" if acc else "not measured"
        ms = f"{lat['mean_ms']:.3f} / {lat['p50_ms']:.3f} ms" if lat else "not measured"
        rows.append(f"| `{model['path']}` | {model['format']} | {model['precision']} | "
                    f"{_size(model['size_bytes'] + sum(c['size_bytes'] for c in model.get('companions', ())))} | "
                    f"{top1} | {top5} | {ms} | {_validation(model.get('validation'))} |")
    rows.append("")
    for s in (m.get("release") or {}).get("not_offered", ()):
        rows.append(f"No {s['precision']} {s['target']} file: {s['reason']}.")
    accs = [x["accuracy"] for x in m["models"] if x.get("accuracy")]
    lats = [x["latency"] for x in m["models"] if x.get("latency")]
    if accs:
        a = accs[0]
        rows.append(f"Accuracy: `runner eval` on {a['images']} images of `{a['data']}` ({a['split']} "
                    f"split; `--limit` takes a seeded, class-balanced subset when the split is larger, "
                    f"seed {a['seed']}), preprocessing as below.")
    if lats:
        t = lats[0]
        rows.append(f"Latency: `runner bench`, batch {t['batch']}, {t['threads']} threads, "
                    f"{t['runs']} timed runs after {t['warmup']} warm-up; the inference call only.")
    machine = m.get("measured_on")
    if machine:
        rows.append(f"Measured on: {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores, "
                    f"{machine.get('isa', '?')}), {machine.get('os', '?')}, Python "
                    f"{machine.get('python', '?')}, at {m.get('created', '?')}.")
    cmds = [x[k]["command"] for x in m["models"] for k in ("accuracy", "latency") if x.get(k)]
    if cmds:
        rows += ["", "Commands (run in the bundle folder):", "", "```sh", *cmds, "```"]
    return "\n".join(rows)


def _validation(v: dict[str, Any] | None) -> str:
    if not v:
        return "not validated"
    bits = [v.get("status", "?")]
    for key, fmt in (("top1_agreement", "top-1 agreement {:.1%}"), ("max_abs_diff", "max |diff| {:.2g}"),
                     ("cosine", "cosine {:.4f}"), ("images", "{} images")):
        if v.get(key) is not None:
            bits.append(fmt.format(v[key]))
    return ", ".join(bits)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def _preprocessing(m: dict[str, Any]) -> str:
    p = m["preprocess"]
    mean, std = p["mean"], p["std"]
    mean_px = [round(255 * x, 4) for x in mean]
    std_px = [round(255 * x, 4) for x in std]
    resize_step = (f"Resize so that the shorter side is {p['resize']} px ({p['interpolation']}; the "
                   f"longer side becomes floor({p['resize']} x long / short)), then crop the centre "
                   f"{p['crop']} x {p['crop']} (offset round((side - {p['crop']}) / 2), halves to even)."
                   if p["resize"] != p["crop"] else
                   f"Resize so that the shorter side is {p['crop']} px ({p['interpolation']}) and crop "
                   f"the centre {p['crop']} x {p['crop']}; a {p['crop']} x {p['crop']} image is used as is.")
    lines = ["## Preprocessing (apply exactly this)", "",
             f"1. Decode to 8-bit {p.get('color', 'RGB')} (drop alpha; no colour management).",
             f"2. {resize_step}",
             f"3. Per channel c ({'R, G, B' if p.get('color', 'RGB') == 'RGB' else 'B, G, R'}): "
             f"x = (pixel / 255 - mean[c]) / std[c] with mean = {_vec(mean)}, std = {_vec(std)}; "
             f"the same as (pixel - {_vec(mean_px)}) / {_vec(std_px)} in pixel units "
             f"(the units of normalization packed in a file's metadata).",
             "4. Lay the values out and type them as each file's input says:", "",
             "| file | input | layout | dtype | quantization (q = round(x / scale) + zero_point) |",
             "|---|---|---|---|---|"]
    for model in m["models"]:
        t = model["input"]
        q = (f"scale {t['scale']:.9g}, zero point {t['zero_point']}, clamp to the dtype's range"
             if t.get("scale") is not None else "none: feed x as float")
        lines.append(f"| `{model['path']}` | `{t['name']}` {_shape(t['shape'])} | {t.get('layout') or '?'} | "
                     f"{t['dtype']} | {q} |")
    if any(d < 0 for x in m["models"] for d in x["input"]["shape"]):
        lines += ["", f"`?` is a dynamic dimension: feed batch 1 and {p['crop']} x {p['crop']} pixels."]
    lines += ["", "5. Output: one score per class (logits). "
              "A quantized output is dequantized as (q - zero_point) x scale:", "",
              "| file | output | dtype | dequantization |", "|---|---|---|---|"]
    for model in m["models"]:
        for t in model["outputs"]:
            dq = (f"scale {t['scale']:.9g}, zero point {t['zero_point']}" if t.get("scale") is not None
                  else "none")
            lines.append(f"| `{model['path']}` | `{t['name']}` {_shape(t['shape'])} | {t['dtype']} | {dq} |")
    lines += ["", f"The predicted class is the index of the largest score; its name is that line "
              f"of `{m['labels']}`. Softmax is optional (it does not change the ranking)."]
    return "\n".join(lines)


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) if d >= 0 else "?" for d in shape) + "]"


def _vec(v) -> str:
    return "(" + ", ".join(f"{x:g}" for x in v) + ")"


def _app_guides(m: dict[str, Any]) -> list[str]:
    """Each format's own app sections, in the order the bundle lists the formats."""
    from edgebase.capabilities import TARGETS

    out = []
    for name in dict.fromkeys(x["format"] for x in m["models"]):
        target = TARGETS.get(name)
        guide = target.bundle.get("app_guide") if target else None
        if guide is not None:
            out.append(guide(m, [x for x in m["models"] if x["format"] == name]))
    return out


def _install(m: dict[str, Any]) -> str:
    """The pip extras of the runtimes the bundle's files need, and whether PyTorch comes too."""
    from edgebase.capabilities import RUNTIMES

    runtimes = [RUNTIMES[r] for r in dict.fromkeys(x["runtime"] for x in m["models"])
                if r in RUNTIMES]
    extras = ",".join(r.extra for r in runtimes)
    line = f"`pip install 'edgedeploy[{extras}]'`" if extras else "`pip install edgedeploy`"
    if len(runtimes) > 1:
        line += " (or only the extras of the files you ship)"
    heavy = [r.name for r in runtimes if not r.torch_free]
    if not heavy:
        return line + "; no PyTorch needed."
    others = "; the others need none" if len(heavy) < len(runtimes) else ""
    return line + f"; {', '.join(heavy)} loads PyTorch (its runtime links libtorch){others}."


def _runner(m: dict[str, Any]) -> str:
    lines = ["## On a board (`runner`)", "", _install(m),
             "", "```sh", "runner verify .            # sizes, sha256, loading, input specs"]
    a = next((x["accuracy"] for x in m["models"] if x.get("accuracy")), None)
    if a:
        lines.append(f"runner verify . --data {a['data']}   # and top-1 within tolerance")
    for model in m["models"]:
        lines.append(f"runner bench {model['path']} --threads 2")
    if a:
        lines.append(f"runner eval {m['models'][0]['path']} --data {a['data']} --limit {a['images']}")
    lines.append("```")
    return "\n".join(lines)


def _provenance(m: dict[str, Any]) -> str:
    lines = ["## Files and provenance", "", "| file | bytes | sha256 |", "|---|---:|---|"]
    lines += [f"| `{f['path']}` | {f['size_bytes']} | `{f['sha256']}` |" for f in m["files"]
              if f["path"] != "README.md"]
    lines += ["", "`manifest.json` lists every file (this README included) with its sha256; "
              "`runner verify` checks them. Toolchain:", ""]
    lines += [f"- {k} {v}" for k, v in sorted(m.get("toolchain", {}).items())]
    repro = m.get("reproducibility")
    if repro:
        lines += ["", f"Reproducibility: {repro}"]
    return "\n".join(lines)
