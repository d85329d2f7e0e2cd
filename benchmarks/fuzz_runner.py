"""Fuzz the device runner: mutated model files, manifests and containers through ``runner bench``
and ``runner verify`` (``runner unpack`` for containers, which no bundle holds).

    .venv/bin/python benchmarks/fuzz_runner.py [--count 1000] [--formats tflite,onnx,...]
        [--seed 0] [--cli-sample 50] [--case FORMAT:N]

Seeds are real files of a trained 32x32 ShuffleNet V2 x0.5: the bundle ``deploy release
shufflenet_v2_x0_5.cifar10 --target tflite,onnx,openvino`` writes and the container ``deploy
compress ... --target onnx --prune 0.5 --epochs 0`` writes (made once into out/fuzz/seeds, or given with
--bundle and --container). Per format, case N mutates one file with ``random.Random(f"{seed}:
{format}:{N}")`` (benchmarks/mutations.py), so any case can be replayed alone with --case:

  tflite, onnx, xml, bin  the model file (or OpenVINO's .bin) byte-mutated (xml: every other
                          case one attribute changed); bench runs it with its manifest beside it,
                          verify runs a one-model bundle whose checksums are rewritten to match
                          the mutated file, so that verify loads it instead of stopping at sha256
  manifest                bench: the model's own manifest mutated beside an intact model;
                          verify: the bundle's manifest.json mutated (mostly one JSON value)
  edc                     the Deep Compression container (every other case its JSON header);
                          bench decodes and runs it, unpack decodes and checks it

Every case runs in-process in a worker (benchmarks/cli_worker.py) that calls the same
``device_runners.cli.main`` as the ``runner`` command, isolation on (the default), so a runtime
that crashes does so in the check's child. --cli-sample cases per format also go through the
real ``python -m device_runners.cli`` subprocess, and their outcome is compared. Outcomes:
ran (exit 0), error (non-zero, exactly one ``runner: error:`` line on stderr; "child crash" when
that line reports a crash or time-out of the isolated child), and the failures: traceback,
crash (the runner process died of a signal), hang (no answer within --bound s), memory (the
runner's process tree passed --mem-limit MB), messy (any other exit or stderr).
Results: benchmarks/results/fuzz_runner.{md,json}. Exit 1 if any failure was seen.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = Path(os.environ.get("EDGEDEPLOY_DATA", REPO.parent / "shared" / "data"))

from fuzz_report import FAILURES, OUTCOMES, write_report  # noqa: E402
from mutations import KINDS, mutate, mutate_edc, mutate_json, mutate_xml  # noqa: E402

MODEL = "shufflenet_v2_x0_5.cifar10"
FORMATS = ("tflite", "onnx", "xml", "bin", "manifest", "edc")
CHILD_CRASH = re.compile(r"(crashed \(SIG\w+\)|timed out) while loading|check process stopped")


# ---- seeds -----------------------------------------------------------------------------
def _cli(module: str, *argv: str, log) -> None:
    cmd = [sys.executable, "-m", module, *argv]
    log(f"seed: {' '.join(argv[:2])} ...")
    p = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"fuzz_runner: seed step failed: {shlex.join(cmd)}\n{p.stderr[-2000:]}")


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO))


def make_seeds(folder: Path, log, bundle: bool, container: bool) -> tuple[Path | None, Path | None]:
    """(release bundle folder, container) made with the deploy CLI where asked for, reused
    when present."""
    return (_bundle_seed(folder, log) if bundle else None,
            _container_seed(folder, log) if container else None)


def _bundle_seed(folder: Path, log) -> Path:
    bundle = folder / "release" / f"{MODEL}-1.0.0"
    if not (bundle / "manifest.json").is_file():
        _cli("deploy.cli", "release", MODEL, "--target", "tflite,onnx,openvino", "--data",
             str(DATA / "cifar10.zip"), "--limit", "100", "--threads", "1", "--bench-runs", "3",
             "--output", str(folder / "release"), log=log)
    return bundle


def _container_seed(folder: Path, log) -> Path:
    container = folder / "compress" / f"{MODEL}.onnx.edc"
    if not container.is_file():
        # no fine-tuning: a seed needs the container's structure, not its accuracy
        _cli("deploy.cli", "compress", MODEL, "--target", "onnx", "--prune", "0.5",
             "--prune-layers", "uniform", "--epochs", "0", "--output",
             str(folder / "compress"), log=log)
    return container


def one_model_bundles(bundle: Path, folder: Path) -> dict[str, Path]:
    """Per model format, a bundle holding only that model (labels and README kept), so that
    verify loads one file a case. Returned by format: tflite, onnx, openvino."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    out = {}
    for model in manifest["models"]:
        dest = folder / f"one-{model['format']}"
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        keep = {model["path"], model["manifest"], manifest["labels"], "README.md",
                *(c["path"] for c in model.get("companions", ()))}
        for rel in keep:
            shutil.copyfile(bundle / rel, dest / rel)
        trimmed = dict(manifest, models=[model],
                       files=[f for f in manifest["files"] if f["path"] in keep])
        (dest / "manifest.json").write_text(json.dumps(trimmed, indent=2) + "\n")
        out[model["format"]] = dest
    return out


# ---- cases -----------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_new(path: Path, data: bytes) -> None:
    """Replace ``path`` (maybe a hard link to a seed) by a new file: seeds stay intact."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _link_tree(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for p in src.iterdir():
        os.link(p, dest / p.name)


def _resign_own(root: Path, model_rel: str, own_rel: str) -> None:
    """The model's own manifest records the (mutated) file's size and sha256, and its
    companions', as an exporter would have."""
    own = json.loads((root / own_rel).read_text())
    data = (root / model_rel).read_bytes()
    own["sha256"], own["size_bytes"] = _sha(data), len(data)
    for c in own.get("companions", ()):
        b = (root / c["file"]).read_bytes()
        c["sha256"], c["size_bytes"] = _sha(b), len(b)
    _write_new(root / own_rel, json.dumps(own, indent=2).encode())


def _resign_bundle(root: Path) -> None:
    m = json.loads((root / "manifest.json").read_text())
    for model in m["models"]:
        _resign_own(root, model["path"], model["manifest"])
        data = (root / model["path"]).read_bytes()
        model["sha256"], model["size_bytes"] = _sha(data), len(data)
        for c in model.get("companions", ()):
            b = (root / c["path"]).read_bytes()
            c["sha256"], c["size_bytes"] = _sha(b), len(b)
    for f in m["files"]:
        b = (root / f["path"]).read_bytes()
        f["sha256"], f["size_bytes"] = _sha(b), len(b)
    _write_new(root / "manifest.json", json.dumps(m, indent=2).encode())


class Seeds:
    def __init__(self, bundle: Path | None, container: Path | None, work: Path):
        self.bundle, self.container = bundle, container
        self.one = one_model_bundles(bundle, work / "one") if bundle else {}
        self.models = {fmt: json.loads((d / "manifest.json").read_text())["models"][0]
                       for fmt, d in self.one.items()}

    def formats(self) -> list[str]:
        """The fuzz formats these seeds can serve."""
        mine = {"tflite": ["tflite"], "onnx": ["onnx"], "openvino": ["xml", "bin"]}
        out = [f for m in self.one for f in mine.get(m, [])]
        out += ["manifest"] if self.one else []
        return out + (["edc"] if self.container else [])

    def model_file(self, fmt: str) -> tuple[Path, dict]:
        """(the bundle folder, the model entry) of a model format (tflite|onnx|openvino)."""
        return self.one[fmt], self.models[fmt]


def _byte_kind(n: int, every: int = 1) -> str:
    return KINDS[(n // every) % len(KINDS)]


def make_case(seeds: Seeds, fmt: str, n: int, seed: int, case_dir: Path) -> dict:
    """Write case ``n`` of ``fmt`` into ``case_dir``; return its description and commands."""
    rng = random.Random(f"{seed}:{fmt}:{n}")
    bench_dir, verify_dir = case_dir / "bench", case_dir / "bundle"
    if fmt == "edc":
        original = seeds.container.read_bytes()
        structural = n % 2 == 0
        data = mutate_edc(original, rng) if structural else mutate(original, rng, _byte_kind(n, 2))
        bench_dir.mkdir(parents=True)
        target = bench_dir / seeds.container.name
        target.write_bytes(data)
        return {"what": "header json" if structural else _byte_kind(n, 2),
                "identical": data == original,
                "commands": {"bench": _bench_argv(target),
                             "unpack": ["unpack", str(target), "-o", str(case_dir / "unpacked")]}}
    if fmt == "manifest":
        model_fmt = list(seeds.one)[n % len(seeds.one)]  # each model of the bundle in turn
        src, model = seeds.model_file(model_fmt)
        structural = n % 4 != 3
        _link_tree(src, bench_dir)
        own = (src / model["manifest"]).read_bytes()
        own_new = mutate_json(own, rng) if structural else mutate(own, rng, _byte_kind(n, 4))
        _write_new(bench_dir / model["manifest"], own_new)
        _link_tree(src, verify_dir)
        top = (src / "manifest.json").read_bytes()
        top_new = mutate_json(top, rng) if structural else mutate(top, rng, _byte_kind(n, 4))
        _write_new(verify_dir / "manifest.json", top_new)
        return {"what": f"{model_fmt} " + ("json value" if structural else _byte_kind(n, 4)),
                "identical": own_new == own and top_new == top,
                "commands": {"bench": _bench_argv(bench_dir / model["path"]),
                             "verify": _verify_argv(verify_dir)}}
    model_fmt = {"xml": "openvino", "bin": "openvino"}.get(fmt, fmt)
    src, model = seeds.model_file(model_fmt)
    rel = model["companions"][0]["path"] if fmt == "bin" else model["path"]
    original = (src / rel).read_bytes()
    if fmt == "xml" and n % 2 == 0:
        what, data = "attribute", mutate_xml(original, rng)
    else:
        what = _byte_kind(n, 2 if fmt == "xml" else 1)
        data = mutate(original, rng, what)
    for folder in (bench_dir, verify_dir):
        _link_tree(src, folder)
        _write_new(folder / rel, data)
    (bench_dir / "manifest.json").unlink()
    _resign_own(bench_dir, model["path"], model["manifest"])
    _resign_bundle(verify_dir)
    return {"what": what, "identical": data == original,
            "commands": {"bench": _bench_argv(bench_dir / model["path"]),
                         "verify": _verify_argv(verify_dir)}}


def _bench_argv(path: Path) -> list[str]:
    return ["bench", str(path), "--runs", "2", "--warmup", "0", "--threads", "1"]


def _verify_argv(folder: Path) -> list[str]:
    return ["verify", str(folder), "--threads", "1"]


# ---- running ---------------------------------------------------------------------------
def _tree_rss_mb(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2 ** 20


def _kill_group(proc: subprocess.Popen) -> None:
    """End the process group this script started (the runner and its check processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _watch(proc: subprocess.Popen, stream, bound: float, mem_mb: float) -> tuple[str | None, str]:
    """Wait for a line on ``stream`` (None: for ``proc`` to exit), measuring the process
    tree's memory: ('hang'|'memory'|None, the line read or what went wrong)."""
    deadline, peak = time.monotonic() + bound, 0.0
    while True:
        if stream is not None:
            if select.select([stream], [], [], 0.25)[0]:
                return None, stream.readline()
        else:
            try:
                proc.wait(timeout=0.25)
                return None, ""
            except subprocess.TimeoutExpired:
                pass
        peak = max(peak, _tree_rss_mb(proc.pid))
        if peak > mem_mb:
            return "memory", f"process tree at {peak:.0f} MB"
        if time.monotonic() > deadline:
            return "hang", f"no answer in {bound:.0f} s"


class InProcess:
    """The worker that runs runner command lines in its own process (cli_worker.py)."""

    def __init__(self, bound: float, mem_mb: float):
        self.bound, self.mem_mb, self.proc = bound, mem_mb, None

    def _start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "cli_worker.py")], cwd=REPO, env=_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        if "ready" not in json.loads(self.proc.stdout.readline() or "{}"):
            sys.exit("fuzz_runner: the in-process worker did not start")

    def run(self, argv: list[str]) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps({"argv": argv}) + "\n")
        self.proc.stdin.flush()
        problem, line = _watch(self.proc, self.proc.stdout, self.bound, self.mem_mb)
        if problem is None and line:
            return json.loads(line)
        seconds = time.perf_counter() - t0
        if problem:
            _kill_group(self.proc)
            return {"rc": None, "stderr": line, "stdout": "", "seconds": seconds,
                    "outcome": problem}
        rc = self.proc.wait()
        _kill_group(self.proc)  # its check processes, if any outlived it
        return {"rc": rc, "stderr": f"the runner process died (exit status {rc})",
                "stdout": "", "seconds": seconds, "outcome": "crash"}

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc)


def run_cli(argv: list[str], bound: float, mem_mb: float) -> dict:
    """The real ``runner`` command in its own process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "device_runners.cli", *argv], cwd=REPO,
                                env=_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                text=True, start_new_session=True)
        problem, detail = _watch(proc, None, bound, mem_mb)
        if problem:
            _kill_group(proc)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        result = {"rc": proc.returncode, "stdout": out.read()[-4000:],
                  "stderr": err.read()[-4000:], "seconds": seconds}
    if problem:
        result.update(outcome=problem, stderr=detail)
    elif proc.returncode < 0:
        result["outcome"] = "crash"
    return result


def classify(result: dict) -> str:
    if "outcome" in result:
        return result["outcome"]
    err = result["stderr"]
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if result["rc"] == 0:
        return "ran"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if result["rc"] in (2, 3, 4) and len(lines) == 1 and lines[0].startswith("runner: error: "):
        return "child crash" if CHILD_CRASH.search(lines[0]) else "error"
    return "messy"


def message_shape(result: dict) -> str:
    """The error line with paths, numbers and quoted values blanked: groups like messages."""
    line = next((ln for ln in result["stderr"].splitlines() if ln.strip()), "")
    line = re.sub(r"\S*/\S+", "PATH", line)
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return line[:160]


# ---- the campaign ----------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000, help="mutated files per format")
    p.add_argument("--formats", default=",".join(FORMATS),
                   help=f"comma-separated, of: {', '.join(FORMATS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cli-sample", type=int, default=50,
                   help="cases per format also run through the runner subprocess")
    p.add_argument("--bound", type=float, default=None,
                   help="seconds a command may take before it counts as a hang (default: the "
                        "isolated check's own time-out + 30 s)")
    p.add_argument("--mem-limit", type=float, default=4096, metavar="MB",
                   help="resident memory of the runner's process tree that counts as a failure")
    p.add_argument("--bundle", type=Path, help="release bundle folder to take seeds from")
    p.add_argument("--container", type=Path, help=".edc container seed")
    p.add_argument("--work", type=Path, default=REPO / "out" / "fuzz",
                   help="seeds, case files and kept failures (default out/fuzz)")
    p.add_argument("--case", metavar="FORMAT:N", help="replay one case, print everything, "
                   "keep its files")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fuzz_runner",
                   help="results path without suffix (.md and .json are written)")
    args = p.parse_args(argv)

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        p.error(f"unknown format(s) {', '.join(bad) or '(none)'}; valid: {', '.join(FORMATS)}")
    if args.count < 1 or args.cli_sample < 0:
        p.error("--count must be at least 1 and --cli-sample 0 or more")
    from device_runners import isolation, sysinfo
    bound = args.bound or isolation.TIMEOUT_S + 30

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    chosen = [args.case.partition(":")[0]] if args.case else formats
    need_bundle = args.bundle is None and any(f != "edc" for f in chosen)
    need_container = args.container is None and "edc" in chosen
    bundle, container = make_seeds(args.work / "seeds", log, need_bundle, need_container)
    seeds = Seeds(args.bundle or bundle, args.container or container, args.work)
    missing = [f for f in chosen if f not in seeds.formats()]
    if missing:
        p.error(f"no seed for {', '.join(missing)}: the bundle holds "
                f"{', '.join(seeds.one) or 'no models'}")
    worker = InProcess(bound, args.mem_limit)
    try:
        if args.case:
            return replay(args, seeds, worker, bound)
        return campaign(args, formats, seeds, worker, bound, sysinfo, log)
    finally:
        worker.close()


def replay(args, seeds: Seeds, worker: InProcess, bound: float) -> int:
    fmt, _, n = args.case.partition(":")
    case_dir = args.work / "replay" / f"{fmt}-{n}"
    shutil.rmtree(case_dir, ignore_errors=True)
    case = make_case(seeds, fmt, int(n), args.seed, case_dir)
    print(f"{fmt} #{n}: {case['what']}{' (unchanged by the mutation)' if case['identical'] else ''}")
    for name, argv in case["commands"].items():
        for how, result in (("in-process", worker.run(argv)),
                            ("cli", run_cli(argv, bound, args.mem_limit))):
            print(f"--- runner {shlex.join(argv)} [{how}]: {classify(result)}, exit "
                  f"{result['rc']}, {result['seconds']:.2f} s")
            print(result["stdout"][-1500:], end="")
            print(result["stderr"], end="")
    print(f"case files kept in {case_dir}")
    return 0


def controls(seeds: Seeds, worker: InProcess) -> None:
    """The unmutated seeds must run and verify: otherwise every 'error' below means nothing."""
    argvs = [_bench_argv(seeds.container)] if seeds.container else []
    for fmt, (folder, model) in ((f, seeds.model_file(f)) for f in seeds.one):
        argvs += [_bench_argv(folder / model["path"]), _verify_argv(folder)]
    for argv in argvs:
        result = worker.run(argv)
        if classify(result) != "ran":
            sys.exit(f"fuzz_runner: the unmutated seed fails: runner {shlex.join(argv)}: "
                     f"{result['stderr'][-1000:]}")


def campaign(args, formats, seeds: Seeds, worker: InProcess, bound: float, sysinfo, log) -> int:
    from tqdm import tqdm

    controls(seeds, worker)
    t_start, load_start = time.time(), os.getloadavg()
    cases_root = args.work / "cases"
    failed_root = args.work / "failed"
    shutil.rmtree(cases_root, ignore_errors=True)
    shutil.rmtree(failed_root, ignore_errors=True)
    stats: dict = {}
    failures: list[dict] = []
    bar = tqdm(total=len(formats) * args.count, unit="case", desc="fuzz", dynamic_ncols=True)
    for fmt in formats:
        sample = set(random.Random(f"{args.seed}:{fmt}:cli").sample(
            range(args.count), min(args.cli_sample, args.count)))
        per = stats[fmt] = {"cases": 0, "identical": 0, "by_mutation": Counter(),
                            "commands": {}, "messages": Counter(), "cli_agree": 0,
                            "cli_disagree": [], "load_start": os.getloadavg()}
        t_fmt = time.time()
        for n in range(args.count):
            case_dir = cases_root / f"{fmt}-{n}"
            case = make_case(seeds, fmt, n, args.seed, case_dir)
            per["cases"] += 1
            per["identical"] += case["identical"]
            per["by_mutation"][case["what"]] += 1
            bad_case = False
            for name, argv in case["commands"].items():
                cmd = per["commands"].setdefault(name, {
                    "in_process": Counter(), "cli": Counter(), "seconds": []})
                result = worker.run(argv)
                outcome = classify(result)
                cmd["in_process"][outcome] += 1
                cmd["seconds"].append(result["seconds"])
                if outcome in ("error", "child crash"):
                    per["messages"][f"{name}: {message_shape(result)}"] += 1
                if outcome in FAILURES:
                    bad_case = True
                    failures.append(_failure(fmt, n, case, name, argv, "in-process", outcome,
                                             result))
                if n in sample:
                    cli = run_cli(argv, bound, args.mem_limit)
                    cli_outcome = classify(cli)
                    cmd["cli"][cli_outcome] += 1
                    if cli_outcome in FAILURES:
                        bad_case = True
                        failures.append(_failure(fmt, n, case, name, argv, "cli", cli_outcome,
                                                 cli))
                    if (cli_outcome, cli["rc"]) == (outcome, result["rc"]):
                        per["cli_agree"] += 1
                    else:
                        per["cli_disagree"].append(
                            {"case": n, "command": name, "in_process": [outcome, result["rc"]],
                             "cli": [cli_outcome, cli["rc"]],
                             "cli_stderr": cli["stderr"][-300:]})
            if bad_case:
                shutil.copytree(case_dir, failed_root / case_dir.name, dirs_exist_ok=True)
            shutil.rmtree(case_dir, ignore_errors=True)
            bar.update()
            bar.set_postfix(format=fmt, failures=len(failures))
        per["seconds"] = round(time.time() - t_fmt, 1)
        per["load_end"] = os.getloadavg()
    bar.close()
    wall = time.time() - t_start
    report = _report(args, formats, stats, failures, wall, load_start, bound, sysinfo)
    write_report(args.out, report)
    log(f"wrote {args.out.with_suffix('.md')} and .json ({wall / 60:.1f} min); "
        f"{len(failures)} failure(s)" + (f"; cases kept in {failed_root}" if failures else ""))
    return 1 if failures else 0


def _failure(fmt, n, case, command, argv, how, outcome, result) -> dict:
    return {"format": fmt, "case": n, "mutation": case["what"], "command": command,
            "path": how, "outcome": outcome, "rc": result["rc"],
            "argv": argv, "stderr": result["stderr"][-1500:],
            "replay": f"benchmarks/fuzz_runner.py --seed {{seed}} --case {fmt}:{n}"}


def _report(args, formats, stats, failures, wall, load_start, bound, sysinfo) -> dict:
    cpu = sysinfo.cpu_info()
    out = {"what": "mutated files through runner bench and runner verify (unpack for .edc), "
                   "in-process through device_runners.cli.main with isolation on, a sample "
                   "also through the runner subprocess",
           "command": "benchmarks/fuzz_runner.py " + shlex.join(sys.argv[1:]),
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "cpu": {"tag": sysinfo.cpu_tag(cpu), "model": cpu.model, "cores": cpu.cores},
           "seed": args.seed, "count": args.count, "cli_sample": args.cli_sample,
           "bound_s": bound, "mem_limit_mb": args.mem_limit, "wall_s": round(wall, 1),
           "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
           "formats": {}, "failures": [dict(f, replay=f["replay"].format(seed=args.seed))
                                       for f in failures]}
    for fmt in formats:
        per = stats[fmt]
        cmds = {}
        for name, c in per["commands"].items():
            s = sorted(c["seconds"])
            cmds[name] = {"in_process": {o: c["in_process"].get(o, 0) for o in OUTCOMES},
                          "cli": {o: c["cli"].get(o, 0) for o in OUTCOMES},
                          "seconds_p50": round(statistics.median(s), 3),
                          "seconds_p99": round(s[min(len(s) - 1, int(0.99 * len(s)))], 3),
                          "seconds_max": round(s[-1], 3)}
        out["formats"][fmt] = {
            "cases": per["cases"], "identical_after_mutation": per["identical"],
            "mutations": dict(per["by_mutation"]), "commands": cmds,
            "cli_agree": per["cli_agree"], "cli_disagree": per["cli_disagree"],
            "top_messages": per["messages"].most_common(12), "seconds": per["seconds"],
            "load_avg_start": per["load_start"], "load_avg_end": per["load_end"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
