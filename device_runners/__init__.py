"""Device side: run and measure exported models with numpy and one runtime (no torch).

    from device_runners.bench import bench
    from device_runners.evaluate import evaluate
    from device_runners import load
    r = bench("model.tflite", threads=2)          # BenchResult; r.to_dict() is the JSON
    e = evaluate("model.onnx", "imagenet-sample-1k.zip", limit=100)

(``bench`` and ``evaluate`` are not package attributes: importing the submodules of the same
names would replace them.)

Names resolve lazily so that ``runner --help`` imports neither numpy nor any runtime.
"""
from __future__ import annotations

_EXPORTS = {
    "BenchResult": ("device_runners.bench", "BenchResult"),
    "EvalResult": ("device_runners.evaluate", "EvalResult"),
    "load": ("device_runners.backends", "load"),
    "Backend": ("device_runners.backends.base", "Backend"),
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'device_runners' has no attribute {name!r}")
    import importlib

    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
