"""int8 PTQ measured end to end; writes benchmarks/results/int8_<name>.json and .md.

    python benchmarks/int8_report.py imagenet   # Google's MobileNetV1-0.25 imported, 3 targets
    python benchmarks/int8_report.py cifar      # trained *.cifar10 checkpoints, real vs ZeroQ
    python benchmarks/int8_report.py latency    # re-time the imagenet run's files

imagenet: the float .tflite is imported into the zoo's MobileNetV1 (``--weights``) and exported
to each target. Calibration never sees an evaluation image: the 1000 photos are split in two
seeded, class-balanced folds; each fold is quantized with calibration images from the other
fold and evaluated on its own, so all 1000 photos are evaluated once. Google's float and QAT
uint8 files run on the same 1000 photos (LiteRT, with their own preprocessing). Latency of
fp32 and int8 files comes from the runner's bench API, interleaved rounds, medians of p50.

cifar: every trained ``*.cifar10`` zoo model x target: int8 with 300 real calibration images
(CIFAR-10 train) and with ZeroQ (no images), evaluated on CIFAR-10 test images.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("onnx", "tflite", "openvino")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def data_dir() -> Path:
    from deploy.validate import data_dir as d

    return d()


# ---- shared -------------------------------------------------------------------------------
def export_fp32(source, target: str, out: Path):
    from deploy.export import ExportConfig, export

    return export(source, ExportConfig(target=target, output_dir=out, threads=1))


def quantize(source, target: str, fp32_path: Path, calib, out: Path, io: str = "float"):
    import quant
    from deploy.int8_stage import input_range

    ptq = quant.get_pass(target)
    opts = ptq.make_options(io=io, input_range=input_range(source.entry.preprocess))
    dst = out / f"{fp32_path.stem}.{calib.source['kind']}.int8{fp32_path.suffix}"
    t0 = time.perf_counter()
    facts = ptq.quantize(fp32_path, dst, calib, opts, parent=source.model)
    return dst, facts, time.perf_counter() - t0


def logits(path: Path, target: str, x: np.ndarray) -> np.ndarray:
    from edgebase.capabilities import get_target
    from device_runners.file_logits import FileLogits

    t = get_target(target)
    with FileLogits(path, t.runtime, t.input_layout, threads=1) as f:
        return np.concatenate([f(x[s:s + 50]) for s in range(0, len(x), 50)])


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_suffix(".bin"))
               if p.exists() and (p == path or path.suffix == ".xml"))


def latency(files: dict[str, Path], threads=(1, 2), rounds: int = 3, runs: int = 100) -> dict:
    """p50 latency per file and thread count: medians over interleaved rounds."""
    from device_runners.bench import bench

    p50: dict[str, dict[int, list[float]]] = {k: {t: [] for t in threads} for k in files}
    for _ in range(rounds):
        for t in threads:
            for key, path in files.items():
                r = bench(path, threads=t, runs=runs, warmup=10, isolate=False)
                p50[key][t].append(r.p50_ms)
    return {k: {str(t): round(float(np.median(v)), 3) for t, v in d.items()} for k, d in p50.items()}


def machine() -> dict:
    from deploy.toolchain import versions
    from quant.cpu import cpu_profile

    return {"cpu": cpu_profile(), "python": platform.python_version(),
            "toolchain": versions(("torch", "onnxruntime", "openvino", "nncf", "ai-edge-litert",
                                   "ai-edge-quantizer", "litert-torch")),
            "date": time.strftime("%Y-%m-%d %H:%M")}


# ---- imagenet: Google's MobileNetV1-0.25 ------------------------------------------------------
def google_top1(path: Path, images, idx, uint8: bool) -> np.ndarray:
    """Top-1 predictions (1001 classes) of Google's own files with their own preprocessing."""
    from ai_edge_litert.interpreter import Interpreter

    from edgebase.images import resize_crop

    it = Interpreter(str(path), num_threads=1)
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    preds = []
    for k in idx:
        crop = resize_crop(images.load(k), 256, 224)
        x = crop[None] if uint8 else (crop[None].astype(np.float32) / 127.5 - 1.0)
        it.set_tensor(i["index"], x)
        it.invoke()
        preds.append(int(np.argmax(it.get_tensor(o["index"])[0])))
    return np.array(preds)


def paired(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Exact McNemar test of two classifiers' correctness on the same images: how many only
    ours got right, how many only theirs, and the two-sided p-value of that split under "equally
    accurate" (a binomial with p = 1/2 over the images where they disagree)."""
    b, c = int(np.sum(ours & ~theirs)), int(np.sum(~ours & theirs))
    n, k = b + c, min(b, c)
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n) if n else 1.0
    return {"only_ours": b, "only_theirs": c, "p_value": round(p, 3)}


def run_imagenet(args) -> dict:
    import torch

    from deploy.export import load_source
    from edgebase.images import ImageSet, batches
    from quant.accuracy import compare_logits
    from quant.calibration import from_image_set

    torch.set_num_threads(1)
    data = data_dir()
    out = Path(args.output) / "imagenet"
    out.mkdir(parents=True, exist_ok=True)
    source = load_source("mobilenet_v1_x0_25", weights=data / "models/mobilenet_v1_0.25_224_float.tflite",
                         num_classes=1001)
    images = ImageSet(data / "imagenet-sample-1k.zip")
    n = len(images) if args.limit is None else args.limit
    everything = images.subset(n, seed=0)
    fold_a = images.subset(n // 2, seed=1) if n == len(images) else everything[: n // 2]
    fold_b = [i for i in everything if i not in set(fold_a)]
    folds = [(fold_a, fold_b), (fold_b, fold_a)]  # (calibrate on, evaluate on)
    pre = source.entry.preprocess
    log(f"preprocessing {len(everything)} photos")
    xs = np.concatenate([x for x, _ in batches(images, everything, pre, 100)])
    pos = {k: j for j, k in enumerate(everything)}
    labels = np.array([images.samples[k].label for k in everything]) + 1  # background = 0
    google = {"float": google_top1(data / "models/mobilenet_v1_0.25_224_float.tflite", images,
                                   everything, False),
              "qat_uint8": google_top1(data / "models/mobilenet_v1_0.25_224_quant.tflite", images,
                                       everything, True)}
    report = {"model": "mobilenet_v1_x0_25 <- mobilenet_v1_0.25_224_float.tflite",
              "images": len(everything), "protocol": "2-fold: calibrate on one half "
              f"({args.calib_size} images of it), evaluate on the other; both folds pooled",
              "google": {k: round(float(np.mean(v == labels)) * 100, 2) for k, v in google.items()},
              "machine": machine(), "targets": {}}
    log(f"Google float {report['google']['float']} %, QAT uint8 {report['google']['qat_uint8']} %")
    for target in args.targets:
        fp32 = export_fp32(source, target, out)
        fp32_path = out / fp32.file
        ref = logits(fp32_path, target, xs)
        pooled = np.zeros_like(ref)
        facts_all, files = [], {}
        for f, (cal_idx, ev_idx) in enumerate(folds):
            chosen = [cal_idx[j] for j in sorted(np.random.default_rng(f).choice(
                len(cal_idx), min(args.calib_size, len(cal_idx)), replace=False))]
            calib = from_image_set(images, chosen, pre, seed=f)
            dst, facts, seconds = quantize(source, target, fp32_path, calib, out / f"fold{f}")
            rows = [pos[k] for k in ev_idx]
            pooled[rows] = logits(dst, target, xs[rows])
            facts_all.append({"fold": f, "seconds": round(seconds, 1),
                              "bias_correction": facts.get("bias_correction"),
                              "float_ops": facts.get("float_ops")})
            files[f"int8_fold{f}"] = dst
            log(f"{target} fold {f}: quantized in {seconds:.0f} s")
        c = compare_logits(ref, pooled, labels)
        int8_file = files["int8_fold0"]
        entry = {"fp32": {"top1": c.ref_top1, "top5": c.ref_top5, "bytes": file_size(fp32_path)},
                 "int8": {"top1": c.top1, "top5": c.top5, "bytes": file_size(int8_file)},
                 "agreement": c.agreement, "cosine_mean": c.cosine_mean,
                 "size_ratio": round(file_size(fp32_path) / file_size(int8_file), 3),
                 "vs_google_qat": round(c.top1 - report["google"]["qat_uint8"], 2),
                 "vs_google_qat_pairs": paired(pooled.argmax(1) == labels,
                                               google["qat_uint8"] == labels),
                 "folds": facts_all}
        if not args.no_latency:
            entry["latency_ms_p50"] = latency({"fp32": fp32_path, "int8": int8_file},
                                              rounds=args.rounds, runs=args.runs)
        report["targets"][target] = entry
        log(f"{target}: fp32 {c.ref_top1} % int8 {c.top1} % (Google QAT "
            f"{report['google']['qat_uint8']} %), size {entry['size_ratio']}x")
    return report


def _pairs(p: dict | None) -> str:
    return f"{p['only_ours']} / {p['only_theirs']} ({p['p_value']})" if p else "-"


def markdown_imagenet(r: dict) -> str:
    g = r["google"]
    lines = [f"# int8 PTQ: MobileNetV1-0.25 imported from Google's float .tflite",
             "", f"{r['images']} photos of imagenet-sample-1k; {r['protocol']}.",
             f"Google float: **{g['float']} %** top-1, Google QAT uint8: **{g['qat_uint8']} %** "
             f"(same photos, LiteRT).", "",
             "| target | fp32 top-1 | int8 top-1 | vs QAT | only ours / only QAT right (p) | "
             "agreement | cosine | fp32 size | int8 size | ratio | p50 fp32 / int8 ms (1 thr) | "
             "(2 thr) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, e in r["targets"].items():
        lat = e.get("latency_ms_p50", {})
        l1 = f"{lat['fp32']['1']} / {lat['int8']['1']}" if lat else "-"
        l2 = f"{lat['fp32']['2']} / {lat['int8']['2']}" if lat else "-"
        lines.append(f"| {t} | {e['fp32']['top1']} | {e['int8']['top1']} | "
                     f"{e['vs_google_qat']:+.2f} | {_pairs(e.get('vs_google_qat_pairs'))} | "
                     f"{e['agreement']} % | {e['cosine_mean']} | "
                     f"{e['fp32']['bytes'] / 1e6:.2f} MB | {e['int8']['bytes'] / 1e6:.2f} MB | "
                     f"{e['size_ratio']}x | {l1} | {l2} |")
    m = r["machine"]
    lines += ["", f"Machine: {m['cpu']['model']} ({', '.join(m['cpu']['flags'])}), "
              f"{m['date']}; {json.dumps(m['toolchain'])}",
              "", "p: exact McNemar test on the images where exactly one of the two is right; a "
              "large p means the top-1 difference is within what chance gives on this many photos.",
              "", f"Command: `{r.get('command', 'python benchmarks/int8_report.py imagenet')}`"]
    return "\n".join(lines) + "\n"


# ---- cifar: trained checkpoints, real calibration vs ZeroQ --------------------------------------
def run_cifar(args) -> dict:
    import torch

    from edgebase.errors import ConfigError
    from deploy.export import load_source
    from edgebase.images import ImageSet, batches
    from quant import zeroq
    from quant.accuracy import compare_logits
    from quant.calibration import load_calibration
    from zoo import get_entry, list_models

    torch.set_num_threads(1)
    data = data_dir() / "cifar10.zip"
    out = Path(args.output) / "cifar"
    models = args.models or [n for n in list_models("*.cifar10") if get_entry(n).trained]
    if not models:
        raise SystemExit("no trained *.cifar10 models are packaged yet")
    test = ImageSet(data, split="test")
    idx = test.subset(args.limit or 2000, seed=0)
    report = {"data": "cifar10 test", "images": len(idx), "calib_images": args.calib_size,
              "machine": machine(), "models": {}}
    if args.weights and len(models) != 1:
        raise SystemExit("--weights goes with exactly one --models name")
    for name in models:
        source = load_source(name, weights=args.weights)
        if not source.weights.get("trained"):
            raise SystemExit(f"{name} has random-init weights: int8 accuracy would mean nothing")
        pre = source.entry.preprocess
        xs, ys = zip(*batches(test, idx, pre, 200))
        x, y = np.concatenate(xs), np.concatenate(ys)
        real = load_calibration(data, pre, size=args.calib_size, seed=0)
        t0 = time.perf_counter()
        try:
            distilled = zeroq.distill(source.model, pre.crop, n=zeroq.DEFAULT_IMAGES, seed=0)
            zq_skipped = None
        except ConfigError as e:  # no BatchNorm statistics (SqueezeNet): ZeroQ cannot apply
            distilled, zq_skipped = None, str(e)
        zq_seconds = time.perf_counter() - t0
        log(f"{name}: ZeroQ " + (f"{len(distilled)} inputs in {zq_seconds:.0f} s"
                                 if distilled is not None else f"not applicable: {zq_skipped}"))
        rows = {}
        for target in args.targets:
            fp32 = export_fp32(source, target, out / name)
            fp32_path = out / name / fp32.file
            ref = logits(fp32_path, target, x)
            row = {"fp32_bytes": file_size(fp32_path)}
            for calib in (real,) + ((distilled,) if distilled is not None else ()):
                dst, facts, seconds = quantize(source, target, fp32_path, calib, out / name)
                c = compare_logits(ref, logits(dst, target, x), y)
                row[calib.source["kind"]] = {"top1": c.top1, "fp32_top1": c.ref_top1,
                                             "drop": c.drop, "agreement": c.agreement,
                                             "bytes": file_size(dst),
                                             "seconds": round(seconds, 1)}
                log(f"{name} {target} {calib.source['kind']}: fp32 {c.ref_top1} int8 {c.top1} "
                    f"(drop {c.drop})")
            rows[target] = row
        report["models"][name] = {"zeroq_seconds": round(zq_seconds, 1), "targets": rows,
                                  "zeroq_not_applicable": zq_skipped,
                                  "weights": {k: source.weights.get(k)
                                              for k in ("source", "path", "file", "sha256")}}
    return report


def markdown_cifar(r: dict) -> str:
    lines = ["# int8 PTQ on the trained CIFAR-10 checkpoints: real calibration vs ZeroQ", "",
             f"{r['images']} CIFAR-10 test images; real calibration: {r['calib_images']} "
             f"train images; ZeroQ: {64} distilled inputs, no images.", "",
             "| model | target | fp32 top-1 | int8 (real) | drop | int8 (ZeroQ) | drop | size ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        for t, row in m["targets"].items():
            a, z = row["images"], row.get("zeroq")
            zq = f"{z['top1']} | {z['drop']:+.2f}" if z else "n/a (no BatchNorm) | —"
            lines.append(f"| {name} | {t} | {a['fp32_top1']} | {a['top1']} | {a['drop']:+.2f} | "
                         f"{zq} | "
                         f"{row['fp32_bytes'] / a['bytes']:.2f}x |")
    lines += ["", f"Command: `{r.get('command', 'python benchmarks/int8_report.py cifar')}`"]
    return "\n".join(lines) + "\n"


def run_latency(args) -> dict:
    """Re-measure latency of the files an earlier ``imagenet`` run left in --output (quieter
    machine, more rounds), and update that report."""
    path = RESULTS / f"int8_imagenet{args.tag}.json"
    report = json.loads(path.read_text())
    out = Path(args.output) / "imagenet"
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "openvino": ".xml"}
    for target, entry in report["targets"].items():
        fp32 = out / f"mobilenet_v1_x0_25{suffix[target]}"
        int8 = next((out / "fold0").glob(f"*.int8{suffix[target]}"))
        entry["latency_ms_p50"] = latency({"fp32": fp32, "int8": int8}, rounds=args.rounds,
                                          runs=args.runs)
        log(f"{target}: {entry['latency_ms_p50']}")
    report["latency_measured"] = time.strftime("%Y-%m-%d %H:%M")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("suite", choices=("imagenet", "cifar", "latency"))
    p.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    p.add_argument("--models", nargs="+", help="cifar: zoo names (default: every trained one)")
    p.add_argument("--weights", help="cifar: a checkpoint for the one model in --models")
    p.add_argument("--calib-size", type=int, default=300)
    p.add_argument("--limit", type=int, help="evaluation images (default: imagenet all, cifar 2000)")
    p.add_argument("--runs", type=int, default=100, help="timed runs per latency round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved latency rounds")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--output", default=str(ROOT / "out" / "int8_report"))
    p.add_argument("--tag", default="", help="suffix of the result file names")
    args = p.parse_args(argv)
    run, md = {"imagenet": (run_imagenet, markdown_imagenet),
               "cifar": (run_cifar, markdown_cifar),
               "latency": (run_latency, markdown_imagenet)}[args.suite]
    report = run(args)
    report["command"] = "python benchmarks/int8_report.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suite = "imagenet" if args.suite == "latency" else args.suite
    stem = RESULTS / f"int8_{suite}{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(md(report))
    log(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
