"""Runs ``runner`` command lines in this one process, one request a line, for the fuzzer.

    python benchmarks/cli_worker.py     (stdin: {"argv": [...]} lines; stdout: one JSON reply each)

Each request goes through ``device_runners.cli.main`` exactly as ``runner ARGS`` would, with the
process's file descriptors 1 and 2 pointed at temporary files for the duration, so that what a
runtime's C++ code prints lands in the reply as it would land on a terminal. An exception that
escapes ``main`` is printed as Python would print it (a traceback) and reported with the exit
status Python would give (1). A crash of this process is seen by the caller as its death.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TAIL = 4000  # characters of stdout/stderr sent back


def run_one(argv: list[str]) -> dict:
    from device_runners.cli import main

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        t0 = time.perf_counter()
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse: usage errors exit 2
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - exactly what would reach the user as a traceback
            traceback.print_exc()
            rc = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        seconds = time.perf_counter() - t0
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
    return {"rc": rc, "stdout": texts[0][-TAIL:], "stderr": texts[1][-TAIL:],
            "seconds": seconds}


def serve() -> int:
    # replies go to the original stdout, kept apart from the fds the requests write to
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    reply.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        reply.write(json.dumps(run_one(request["argv"])) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(serve())
