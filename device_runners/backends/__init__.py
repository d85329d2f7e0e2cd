"""Runtime backends, chosen by file suffix or by name.

``resolve(path)`` picks LiteRT for ``.tflite``, onnxruntime for ``.onnx`` and OpenVINO for
``.xml``; ``runtime=`` overrides (OpenVINO also reads ``.onnx`` and ``.tflite``). A runtime is
imported only when a model for it is loaded (``device_runners.loading.load``).
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from edgebase.errors import ConfigError, ModelFileError, UnknownNameError
from device_runners.backends.base import Backend

# runtime name -> (module, class, suffixes it reads); the first runtime listing a suffix
# is that suffix's default
RUNTIMES = {
    "litert": ("device_runners.backends.litert", "LiteRTBackend", (".tflite",)),
    "onnxruntime": ("device_runners.backends.onnxruntime", "OnnxRuntimeBackend", (".onnx", ".ort")),
    "openvino": ("device_runners.backends.openvino", "OpenVINOBackend", (".xml", ".onnx", ".tflite")),
}
ALIASES = {"tflite": "litert", "ort": "onnxruntime", "ov": "openvino"}
EXTRAS = {"litert": "litert", "onnxruntime": "onnxruntime", "openvino": "openvino"}


def default_runtime(suffix: str) -> str | None:
    for name, (_, _, suffixes) in RUNTIMES.items():
        if suffix in suffixes:
            return name
    return None


def suffixes() -> list[str]:
    return sorted({s for _, _, sfx in RUNTIMES.values() for s in sfx})


def resolve(path: str | os.PathLike, runtime: str | None = None) -> tuple[Path, str]:
    """Check the file and work out which runtime reads it; raises one-line errors."""
    path = Path(path)
    suffix = path.suffix.lower()
    if runtime is not None:
        runtime = ALIASES.get(runtime, runtime)
        if runtime not in RUNTIMES:
            raise UnknownNameError("runtime", runtime, RUNTIMES)
        readable = RUNTIMES[runtime][2]
        if suffix not in readable:
            raise ConfigError(f"{path.name}: {runtime} reads {', '.join(readable)} files, "
                              f"not {suffix or 'files without a suffix'}")
    else:
        runtime = default_runtime(suffix)
        if runtime is None:
            raise ModelFileError(f"{path}: unknown model file type {suffix or '(no suffix)'}; "
                                 f"valid: {', '.join(suffixes())}")
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    from device_runners.validate import check_file
    check_file(path, runtime)
    return path, runtime


def backend_class(runtime: str) -> type[Backend]:
    module, cls, _ = RUNTIMES[runtime]
    return getattr(importlib.import_module(module), cls)


__all__ = ["Backend", "RUNTIMES", "resolve", "default_runtime", "backend_class"]
