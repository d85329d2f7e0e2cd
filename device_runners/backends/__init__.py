"""Runtime backends, chosen by file suffix or by name.

``resolve(path)`` picks LiteRT for ``.tflite``, onnxruntime for ``.onnx`` and OpenVINO for
``.xml``; ``runtime=`` overrides (OpenVINO also reads ``.onnx`` and ``.tflite``). A runtime is
imported only when a model for it is loaded (``device_runners.loading.load``).
"""
from __future__ import annotations

import os
from pathlib import Path

from edgebase.capabilities import get_runtime, model_suffixes, runtime_for_suffix
from edgebase.errors import ConfigError, ModelFileError
from device_runners.backends.base import Backend


def default_runtime(suffix: str) -> str | None:
    r = runtime_for_suffix(suffix)
    return r.name if r else None


def resolve(path: str | os.PathLike, runtime: str | None = None) -> tuple[Path, str]:
    """Check the file and work out which runtime reads it; raises one-line errors."""
    path = Path(path)
    suffix = path.suffix.lower()
    if runtime is not None:
        entry = get_runtime(runtime)
        runtime, readable = entry.name, entry.suffixes
        if suffix not in readable:
            raise ConfigError(f"{path.name}: {runtime} reads {', '.join(readable)} files, "
                              f"not {suffix or 'files without a suffix'}")
    else:
        runtime = default_runtime(suffix)
        if runtime is None:
            raise ModelFileError(f"{path}: unknown model file type {suffix or '(no suffix)'}; "
                                 f"valid: {', '.join(model_suffixes())}")
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a file")
    from device_runners.file_checks import check_file
    check_file(path, runtime)
    return path, runtime


def backend_class(runtime: str) -> type[Backend]:
    return get_runtime(runtime).backend_class()


__all__ = ["Backend", "resolve", "default_runtime", "backend_class"]
