"""Load and test-run a model in a child process, so a runtime crash becomes a one-line error.

Runtimes are C++ and some crash (segfault, abort) on malformed files instead of raising. A
worker process per runtime (``python -m device_runners.isolation RUNTIME``) imports the
runtime once, then for each request forks a child that loads the model and runs one inference
on random data. The worker reports back one JSON line: ok, a Python-level error message, or
the signal the child died of. Forking from the worker (which never holds a model or a runtime
thread pool) keeps each check to the model's own load time. The worker watches the child's
resident memory: a file that makes it grow past ``memory_budget`` (a corrupt or hostile shape;
a board would be killed) is stopped and reported as one line.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgebase.errors import DeployError, MissingDependencyError, ModelFileError

TIMEOUT_S = 120.0
MEMORY_FLOOR = 2 << 30  # what a check may use whatever the file's size (runtime, activations)
MEMORY_PER_BYTE = 8  # and per byte of the model's files (weights, repacked copies)
POLL_S = 0.05
_workers: dict[str, "_Worker"] = {}


class _Worker:
    def __init__(self, runtime: str):
        self.runtime = runtime
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "device_runners.isolation", runtime],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=_package_root())
        hello = self._read(TIMEOUT_S)
        if hello is None or "error" in hello:
            self.close()
            _raise((hello or {}).get("error"), (hello or {}).get("kind"), runtime)

    def _read(self, timeout: float) -> dict | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def check(self, path: Path, threads: int | None) -> dict | None:
        # the worker runs in the package root: a relative path must not reach it
        request = json.dumps({"path": str(Path(path).resolve()), "threads": threads}) + "\n"
        try:
            self.proc.stdin.write(request.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self._read(TIMEOUT_S + 10)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _raise(message: str | None, kind: str | None, runtime: str):
    if kind == "MissingDependencyError":
        err = MissingDependencyError.__new__(MissingDependencyError)
        Exception.__init__(err, message)
        raise err
    raise ModelFileError(message or f"the {runtime} check process failed to start")


def check_in_child(path: Path, runtime: str, threads: int | None = None) -> None:
    """Raise ModelFileError unless ``path`` loads and runs once in a child process."""
    from device_runners.backends import backend_class

    backend_class(runtime).import_runtime()  # a missing runtime: say so here, not in the child
    worker = _workers.get(runtime)
    if worker is None or not worker.alive():
        worker = _workers[runtime] = _Worker(runtime)
    result = worker.check(path, threads)
    if result is None:  # the worker itself is gone or hung: never reuse it
        worker.close()
        _workers.pop(runtime, None)
        raise ModelFileError(f"{path}: the {runtime} check process stopped responding")
    if result.get("ok"):
        return
    if "memory" in result:
        raise ModelFileError(
            f"{path}: {runtime} used more than {result['limit'] / 2 ** 30:.1f} GB loading or "
            f"running it once (the check's limit for files of this size); the file is corrupt "
            f"or declares tensors far larger than its weights")
    if "signal" in result:
        sig = result["signal"]
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        what = "timed out" if sig == signal.SIGALRM else f"crashed ({name})"
        raise ModelFileError(f"{path}: {runtime} {what} while loading or running it; "
                             f"the file is corrupt or not a valid model")
    _raise(result.get("error"), result.get("kind"), runtime)


@atexit.register
def _close_workers() -> None:
    for w in list(_workers.values()):
        w.close()
    _workers.clear()


def memory_budget(path: str | os.PathLike) -> int:
    """Resident bytes a check of ``path`` may reach: a floor, plus a multiple of the size of
    the model file and the companions its format keeps beside it (OpenVINO's .bin)."""
    from edgebase.capabilities import TARGETS

    path = Path(path)
    files = [path] + [path.with_suffix(c) for t in TARGETS.values()
                      if t.suffix == path.suffix.lower() for c in t.companions]
    size = sum(f.stat().st_size for f in files if f.is_file())
    return MEMORY_FLOOR + MEMORY_PER_BYTE * size


def _rss_bytes(pid: int) -> int | None:
    try:  # statm: sizes in pages; the second is the resident set
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None  # no /proc (macOS): the budget is not enforced


def _collect(pid: int, fd: int, limit: int) -> tuple[bytes, int | None]:
    """The child's report from ``fd``; (b"", resident bytes) if it outgrew ``limit`` first
    (then it is killed)."""
    chunks = []
    while True:
        if select.select([fd], [], [], POLL_S)[0]:
            data = os.read(fd, 65536)
            if not data:
                return b"".join(chunks), None
            chunks.append(data)
            continue
        rss = _rss_bytes(pid)
        if rss is not None and rss > limit:
            os.kill(pid, signal.SIGKILL)
            return b"", rss


def manifest_shapes(path, backend) -> dict[str, tuple[int, ...]]:
    """Input shapes recorded in the manifest beside ``path`` (empty when there is none)."""
    from edgebase.manifest import read_manifest
    from device_runners.backends.base import shape_hints

    try:
        art = read_manifest(path)
    except DeployError:
        return {}
    return shape_hints(backend.inputs, art.inputs, art.preprocess) if art else {}


# ---- the worker side -------------------------------------------------------------------
def _child(path: str, threads: int | None, runtime: str, fd: int) -> None:
    """In the forked child: load, run once, write the outcome to ``fd``, exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(TIMEOUT_S))  # the kernel ends a hung load even inside C++ code
    try:
        from edgebase.errors import ShapeError
        from device_runners.backends import backend_class
        from device_runners.backends.base import InputTooLargeError
        backend = backend_class(runtime)(path, threads=threads)
        try:
            x = backend.example(seed=0, shapes=manifest_shapes(path, backend))
        except InputTooLargeError as e:  # the file's own fault: say so, with the file's name
            raise ModelFileError(f"{path}: {e}") from None
        except ShapeError:  # dynamic axes with no manifest: loading is all we can check
            x = None
        if x is not None:
            backend.run(x if len(x) > 1 else next(iter(x.values())))
        out = {"ok": True}
    except DeployError as e:
        out = {"ok": False, "error": str(e), "kind": type(e).__name__}
    except BaseException as e:  # noqa: BLE001 - anything else the runtime throws is a bad file
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        out = {"ok": False, "error": f"{path}: {runtime} cannot run this file ({text})",
               "kind": "ModelFileError"}
    os.write(fd, json.dumps(out).encode())
    os._exit(0)


def _serve(runtime: str) -> int:
    out = sys.stdout
    try:
        from edgebase.capabilities import RUNTIMES
        from device_runners.backends import backend_class
        if runtime not in RUNTIMES:
            raise ModelFileError(f"unknown runtime {runtime!r}")
        backend_class(runtime).import_runtime()
    except DeployError as e:
        out.write(json.dumps({"error": str(e), "kind": type(e).__name__}) + "\n")
        return 1
    out.write(json.dumps({"ready": runtime}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(req["path"], req.get("threads"), runtime, w)
        os.close(w)
        try:
            limit = memory_budget(req["path"])
        except OSError:  # the file went away: the child will say so
            limit = MEMORY_FLOOR
        report, outgrown = _collect(pid, r, limit)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if outgrown is not None:
            result = {"ok": False, "memory": outgrown, "limit": limit}
        elif os.WIFSIGNALED(status):
            result = {"ok": False, "signal": os.WTERMSIG(status)}
        else:
            try:
                result = json.loads(report or b"null")
            except ValueError:
                result = None
            if not isinstance(result, dict):
                result = {"ok": False, "error": f"{req['path']}: {runtime} exited with status "
                          f"{os.WEXITSTATUS(status)} while loading it", "kind": "ModelFileError"}
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1] if len(sys.argv) > 1 else ""))
