"""ExecuTorch backend for ``.pte`` programs (XNNPACK delegate, CPU).

**Not torch-free.** ``executorch.runtime`` imports torch: its pybindings link libtorch (in the
x86_64 and the aarch64 wheels alike) and take ``torch.Tensor`` inputs; importing it also
imports ``executorch.exir`` and torchao (about 10 s here). So this one backend needs torch on
the device; the other backends stay torch-free, and this module imports ExecuTorch only when a
``.pte`` is loaded. Install with ``pip install 'edgedeploy[executorch]'``.

Threads: XNNPACK runs on ExecuTorch's own process-wide threadpool (as many threads as cores
by default). ``torch.set_num_threads`` does not reach it; ``threads=N`` resizes it with
``portable_lib._unsafe_reset_threadpool(N)`` *before* the program is loaded. Resizing it while
another program is loaded crashes the process on that program's next run (measured: a glibc
mutex assertion), so a second model with a different thread count is refused while another
ExecuTorch model is open. ``provider`` records the pool size actually in effect.

Specs come from the method's metadata (shapes and dtypes; a ``.pte`` keeps no tensor names, so
inputs are ``input``/``input_<i>`` and outputs ``output``/``output_<i>``). The memory plan is
static: a batch other than the declared one runs in chunks of the declared size.
"""
from __future__ import annotations

import functools
import importlib.metadata
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgebase.errors import ConfigError, MissingDependencyError, ModelFileError
from edgebase.executorch_logs import quiet_torchao_import
from edgebase.manifest import TensorSpec
from device_runners.backends.base import Backend, first_line, guess_layout
from device_runners.backends.litert import quiet_stderr

SUFFIXES = (".pte",)
EXTRA = "executorch"
# c10::ScalarType codes as MethodMeta's TensorInfo.dtype() returns them
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16",
           6: "float32", 7: "float64", 11: "bool"}

# backends holding a loaded method: the threadpool must not be resized under them
_OPEN: "weakref.WeakSet[ExecuTorchBackend]" = weakref.WeakSet()


def _runtime():
    """(executorch.runtime, portable_lib) or a one-line error naming the extra."""
    quiet_torchao_import()
    try:
        import executorch.runtime as runtime
        from executorch.extension.pybindings import portable_lib
    except ImportError as e:
        raise MissingDependencyError(
            f"executorch (ExecuTorch runtime; it needs torch too, its pybindings link "
            f"libtorch) [{first_line(e)}]", EXTRA) from None
    return runtime, portable_lib


def _version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _specs(infos, base: str) -> tuple[TensorSpec, ...]:
    specs = []
    for i, info in enumerate(infos):
        name = base if len(infos) == 1 else f"{base}_{i}"
        dtype = _DTYPES.get(int(info.dtype()))
        if dtype is None:
            raise ModelFileError(f"tensor {name!r} has ExecuTorch dtype code {int(info.dtype())}, "
                                 f"which the runner does not feed; supported: "
                                 f"{', '.join(sorted(set(_DTYPES.values())))}")
        shape = tuple(int(s) for s in info.sizes())
        specs.append(TensorSpec(name=name, shape=shape, dtype=dtype, layout=guess_layout(shape)))
    return tuple(specs)


def set_threads(threads: int | None) -> int:
    """Size ExecuTorch's process-wide threadpool (None: leave it); returns the size in effect."""
    _, lib = _runtime()
    with quiet_stderr():  # the pool's first use probes the CPU and logs it on fd 2
        current = int(lib._threadpool_get_thread_count())
    if threads is None or threads == current:
        return current
    if len(_OPEN):
        raise ConfigError(f"ExecuTorch's threadpool is process-wide and has {current} threads; "
                          f"it cannot be resized to {threads} while another ExecuTorch model is "
                          f"loaded (close it first)")
    with quiet_stderr():  # "[threadpool.cpp] Resetting threadpool to N threads."
        lib._unsafe_reset_threadpool(int(threads))
    return int(lib._threadpool_get_thread_count())


class ExecuTorchBackend(Backend):
    name = "executorch"
    file_kind = "an ExecuTorch program (no 'ET..' flatbuffer identifier at byte 4)"

    @staticmethod
    def sniff(head: bytes) -> bool | None:
        return len(head) >= 8 and head[4:6] == b"ET"

    @staticmethod
    def import_runtime() -> None:
        _runtime()

    def __init__(self, path: str | Path, threads: int | None = None,
                 precision_hint: str | None = None):
        self.precision_hint = self.check_hint(precision_hint)
        self.path = Path(path)
        _check_identifier(self.path)
        runtime, _ = _runtime()
        self.version = _version()
        self.threads = threads
        pool = set_threads(threads)
        try:
            with quiet_stderr():  # cpuinfo probes print to fd 2 at first load
                self._program = runtime.Runtime.get().load_program(self.path)
                if "forward" not in self._program.method_names:
                    raise ModelFileError(f"{self.path}: the program has no 'forward' method "
                                         f"(it has: {', '.join(sorted(self._program.method_names))})")
                self._method = self._program.load_method("forward")
        except RuntimeError as e:
            raise ModelFileError(f"{self.path}: not a loadable ExecuTorch program "
                                 f"({first_line(e)})") from None
        meta = self._method.metadata
        self.inputs = _specs([meta.input_tensor_meta(i) for i in range(meta.num_inputs())], "input")
        self.outputs = _specs([meta.output_tensor_meta(i) for i in range(meta.num_outputs())],
                              "output")
        self.provider = (f"CPU (XNNPACK delegate; ExecuTorch threadpool of {pool} threads, "
                         f"process-wide)")
        _OPEN.add(self)

    def _tensors(self, feeds: dict[str, np.ndarray]) -> list:
        import torch

        return [torch.from_numpy(feeds[t.name]) for t in self.inputs]

    def _execute(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._method is None:
            raise ModelFileError(f"{self.path}: the model was closed")
        out = self._method.execute(self._tensors(feeds))
        return [np.array(o.detach().numpy(), copy=True) for o in out]

    def run(self, x: Any) -> list[np.ndarray]:
        return self.run_in_declared_batches(self.feeds(x), self._execute)

    def bind(self, x: Any) -> Callable[[], Any]:
        feeds = self.feeds(x)
        self.check_bindable(feeds)
        return functools.partial(self._method.execute, self._tensors(feeds))

    # per-operator times need ETDump, which the PyPI wheel's runtime is not built with
    # (EXECUTORCH_ENABLE_EVENT_TRACER); profile() stays None

    def close(self) -> None:
        self._method = None
        self._program = None
        _OPEN.discard(self)


def _check_identifier(path: Path) -> None:
    """A .pte is a flatbuffer with the file identifier ``ET`` + two version digits at byte 4."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(head) < 8 or head[4:6] != b"ET":
        raise ModelFileError(f"{path}: not an ExecuTorch program (no 'ET..' flatbuffer "
                             f"identifier at byte 4)")
