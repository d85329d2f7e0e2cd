"""One error hierarchy for the whole toolchain.

Everything a user can get wrong raises a ``DeployError`` subclass whose message is one
line saying what was wrong and what is valid. The CLIs print that line and exit with the
class's ``exit_code``; anything else is a bug and shows a traceback.
This module imports nothing heavy: the device-side ``runner`` uses it too.
"""
from __future__ import annotations


class DeployError(Exception):
    """Base class: a problem the user can fix. ``str(err)`` is the one-line message."""

    exit_code = 2


class UnknownNameError(DeployError, KeyError):
    """A lookup by name (model, target, option, runtime) failed."""

    def __init__(self, kind: str, name: str, valid):
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ConfigError(DeployError, ValueError):
    """An option or combination of options that cannot work."""


class WeightsError(DeployError):
    """A checkpoint that cannot be read or does not fit the architecture."""


class ModelFileError(DeployError):
    """A model file that is missing, empty, truncated, corrupt or of the wrong format."""


class DataError(DeployError):
    """Image data (evaluation, calibration, validation) that is missing or unreadable."""


class ShapeError(DeployError):
    """An input or output whose shape does not match what the model expects."""


class ValidationError(DeployError):
    """An exported or quantized artifact that disagrees with its PyTorch parent."""

    exit_code = 3


class MissingDependencyError(DeployError):
    """An optional runtime or library is not installed; the message names the extra."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"{module} is not installed; install it with: pip install 'edgedeploy[{extra}]'"
        )


class ConversionError(DeployError):
    """A converter failed on a model; ``log`` keeps the tool's own output for --debug."""

    exit_code = 4

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log
