"""edgebase.executorch_logs: the torchao import lines it drops, and those it lets through.

Real loggers and records: a handler on each logger collects what passes its filters."""
from __future__ import annotations

import enum
import logging

import pytest

from edgebase.executorch_logs import quiet_torchao_import

MXFP8 = ("Failed to load /venv/lib/python3.11/site-packages/torchao/"
         "_C_mxfp8.cpython-310-x86_64-linux-gnu.so: Could not load this library: /venv/lib/"
         "python3.11/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so")
CUTLASS = ("Failed to load /venv/site-packages/torchao/_C_cutlass_90a.abi3.so: Could not load "
           "this library: /venv/site-packages/torchao/_C_cutlass_90a.abi3.so")
PYTREE = ("%s is an Enum subclass and is now natively supported by torch.compile as an opaque "
          "value type. Calling register_constant() on Enum subclasses is deprecated and will "
          "be an error in a future release.")


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def seen():
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    quiet_torchao_import()
    filters = [len(log.filters) for log in loggers]
    quiet_torchao_import()  # again: no second filter
    assert [len(log.filters) for log in loggers] == filters
    handler = _Collect()
    for log in loggers:
        log.addHandler(handler)
    yield handler.lines
    for log in loggers:
        log.removeHandler(handler)


def test_the_cuda_kernel_lines_are_dropped_and_other_torchao_warnings_kept(seen):
    log = logging.getLogger("torchao")
    log.warning(MXFP8)
    log.warning(CUTLASS)
    cpu = ("Failed to load /venv/site-packages/torchao/_C.abi3.so: undefined symbol: "
           "_ZN3c104cuda")  # the CPU kernels failing would matter: kept
    version = "Skipping import of cpp extensions due to incompatible torch version."
    log.warning(cpu)
    log.warning(version)
    logging.getLogger("torchao.other").warning(MXFP8)  # another logger's record: not ours
    assert seen == [cpu, version, MXFP8]


def test_only_torchaos_enum_registration_notice_is_dropped(seen):
    ours = enum.Enum("KernelPreference", "AUTO TORCH",
                     module="torchao.quantization.quantize_.common.kernel_preference")
    other = enum.Enum("Mode", "A B", module="somelib.modes")
    log = logging.getLogger("torch.utils._pytree")
    log.warning(PYTREE, ours)
    log.warning(PYTREE, other)
    log.warning("a different torch warning about %s", ours)
    assert seen == [PYTREE % other, f"a different torch warning about {ours}"]
