"""The one small interface every runtime backend implements.

A backend wraps one loaded model: its input/output specs (``edgebase.manifest.TensorSpec``, with
the tensor's own quantization parameters where the format records them), ``run`` for whole
batches, ``bind``/``invoke`` for timing loops that must not pay for input copies, and an optional
per-operator ``profile``. Only numpy is imported here.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgebase.errors import ConfigError, ShapeError
from edgebase.manifest import TensorSpec
from device_runners.precision import DEFAULT_PRECISION_HINT, PRECISION_HINTS

# The most one input may take. A file declares its input shape; without a bound a malformed
# or hostile file (1,048,576 channels) makes the runner allocate hundreds of GB before any
# runtime looks at it. An image classifier's input is a few MB even at batch 256.
MAX_INPUT_BYTES = 1 << 30


class InputTooLargeError(ShapeError):
    """An input the runner refuses to allocate (see MAX_INPUT_BYTES)."""


def check_input_size(name: str, shape: Sequence[int], dtype) -> None:
    """ShapeError when an input of ``shape`` would take more than MAX_INPUT_BYTES."""
    size = int(np.prod([int(d) for d in shape], dtype=object)) * np.dtype(dtype).itemsize
    if size > MAX_INPUT_BYTES:
        raise InputTooLargeError(f"input {name!r} {shape_str(shape)} {np.dtype(dtype).name} would take "
                         f"{size / 2**30:,.1f} GiB; the runner allocates at most "
                         f"{MAX_INPUT_BYTES / 2**30:g} GiB per input (a smaller --batch, or a "
                         f"file that declares an image-sized input)")


class Backend(ABC):
    """A loaded model. Subclasses set the attributes below in ``__init__``."""

    name: str = ""  # runtime name: litert | onnxruntime | openvino
    version: str = ""  # runtime version
    provider: str = ""  # execution provider / delegate / device actually used
    path: Path
    threads: int | None = None
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    precision_hint: str = DEFAULT_PRECISION_HINT  # what was asked (see PRECISION_HINTS)
    inference_precision: str = "f32"  # what the runtime's float kernels actually run in
    hints: tuple[str, ...] = ("f32", "auto")  # the hints this runtime can honour

    @staticmethod
    def import_runtime() -> None:
        """Import the runtime library (raises MissingDependencyError naming the extra)."""

    @classmethod
    def check_hint(cls, hint: str | None) -> str:
        """``hint`` (None: the default) if this runtime can honour it; else a one-line error."""
        hint = hint or DEFAULT_PRECISION_HINT
        if hint not in PRECISION_HINTS:
            raise ConfigError(f"precision hint {hint!r}; valid: {', '.join(PRECISION_HINTS)}")
        if hint not in cls.hints:
            raise ConfigError(f"{cls.name} runs float work in f32 on the CPU and takes no "
                              f"precision hint {hint!r}; valid for it: {', '.join(cls.hints)}")
        return hint

    # ---- the file format the runtime owns (structural checks before any parsing) ---------
    file_kind: str = "a model file"  # how messages name its own format

    @staticmethod
    def sniff(head: bytes) -> bool | None:
        """Do a file's first bytes look like this runtime's own format? None: cannot tell."""
        return None

    @classmethod
    def check_structure(cls, path: Path, head: bytes, size: int) -> None:
        """Cheap checks of a file in its own format (truncation, missing companions); raise
        ModelFileError with a precise message. Crashes past these are caught by isolation."""

    @classmethod
    def default_precision(cls) -> str:
        """The float precision this runtime uses on this CPU when given no hint."""
        return "f32"

    # ---- running ----------------------------------------------------------------------
    @abstractmethod
    def run(self, x: Any) -> list[np.ndarray]:
        """Run a batch: one array for a single-input model (or a dict by input name).

        The batch may differ from the model's declared batch: backends resize the input or
        run the batch in chunks of the declared size. Outputs come back in ``outputs`` order,
        as the model produces them (quantized outputs stay quantized).
        """

    @abstractmethod
    def bind(self, x: Any) -> Callable[[], Any]:
        """Set the inputs once and return a zero-argument callable that runs one inference.

        This is what a benchmark times, like LiteRT's benchmark_model and OpenVINO's
        benchmark_app: the callable does no input conversion or copying of its own.
        """

    def profile(self, x: Any, runs: int = 10) -> list[dict[str, Any]] | None:
        """Per-operator time over ``runs`` inferences, or None if the runtime cannot say.

        Rows: {"name", "type", "calls", "total_ms", "mean_ms"}, slowest first.
        """
        return None

    def embedded(self):
        """The preprocessing and labels the file carries inside (``device_runners.embedded
        .Embedded``), or None when its format or the file records none."""
        return None

    def close(self) -> None:
        """Release the runtime objects (also done by garbage collection)."""

    # ---- helpers shared by the backends ---------------------------------------------
    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def declared_batch(self) -> int:
        """The first input's fixed batch, or -1 when that axis is symbolic."""
        return self.inputs[0].shape[0] if self.inputs[0].shape else -1

    def run_in_declared_batches(self, feeds: dict[str, np.ndarray],
                                infer: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
                                ) -> list[np.ndarray]:
        """``infer(feeds)`` at once when the model takes this batch, else in declared-size chunks
        (for runtimes that cannot reshape a static batch)."""
        fixed, n = self.declared_batch(), next(iter(feeds.values())).shape[0]
        if fixed < 0 or fixed == n:
            return infer(feeds)
        return concat([(infer(piece), real) for piece, real in chunks(feeds, fixed)])

    def check_bindable(self, feeds: dict[str, np.ndarray]) -> None:
        """A bound benchmark call runs one inference: the batch must be one the model takes."""
        fixed, n = self.declared_batch(), next(iter(feeds.values())).shape[0]
        if fixed >= 0 and fixed != n:
            raise_fixed_batch(self, n)

    def feeds(self, x: Any) -> dict[str, np.ndarray]:
        """Normalise ``x`` to {input name: array of the input's dtype}."""
        if isinstance(x, Mapping):
            names = {t.name for t in self.inputs}
            unknown = set(x) - names
            missing = names - set(x)
            if unknown or missing:
                raise ShapeError(
                    f"inputs given: {', '.join(sorted(x)) or 'none'}; the model takes: "
                    f"{', '.join(t.name for t in self.inputs)}")
            items = {t.name: x[t.name] for t in self.inputs}
        else:
            if len(self.inputs) != 1:
                raise ShapeError(f"the model has {len(self.inputs)} inputs "
                                 f"({', '.join(t.name for t in self.inputs)}); pass a dict")
            items = {self.inputs[0].name: x}
        specs = {t.name: t for t in self.inputs}
        out = {}
        for name, arr in items.items():
            arr = np.asarray(arr)
            spec = specs[name]
            if arr.ndim != len(spec.shape) or any(
                    d >= 0 and a != d for a, d in zip(arr.shape[1:], spec.shape[1:])):
                raise ShapeError(f"input {name!r} has shape {tuple(arr.shape)}; the model "
                                 f"expects {shape_str(spec.shape)} (any batch)")
            want = np.dtype(spec.dtype)
            if arr.dtype.kind == "f" and want.kind in "iub":
                q = (f" (quantization scale {spec.scale:g}, zero point {spec.zero_point})"
                     if spec.scale else "")
                raise ShapeError(f"input {name!r} takes {want.name}{q}; got {arr.dtype.name} "
                                 f"values: quantize them first")
            out[name] = np.ascontiguousarray(arr, dtype=want)
        return out

    def example(self, batch: int | None = None, seed: int = 0,
                shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, np.ndarray]:
        """Random inputs of each input's dtype and shape.

        A dynamic batch axis becomes ``batch`` (default 1); other dynamic axes take their size
        from ``shapes`` (by input name, e.g. from the manifest) or raise ShapeError.
        """
        rng = np.random.default_rng(seed)
        out = {}
        for t, shape in zip(self.inputs, self.concrete_shapes(batch, shapes)):
            dt = np.dtype(t.dtype)
            check_input_size(t.name, shape, dt)
            if dt.kind in "iu":
                info = np.iinfo(dt)
                lo, hi = max(info.min, -128), min(info.max, 255)
                out[t.name] = rng.integers(lo, hi, size=shape, endpoint=True).astype(dt)
            elif dt.kind == "b":
                out[t.name] = rng.integers(0, 1, size=shape, endpoint=True).astype(dt)
            else:
                out[t.name] = rng.standard_normal(shape).astype(dt)
        return out

    def concrete_shapes(self, batch: int | None = None,
                        shapes: Mapping[str, Sequence[int]] | None = None) -> list[tuple[int, ...]]:
        """Each input's shape with every dynamic axis filled in (see ``example``)."""
        result = []
        for t in self.inputs:
            hint = tuple((shapes or {}).get(t.name, ()))
            if hint and len(hint) != len(t.shape):
                raise ShapeError(f"shape {shape_str(hint)} for input {t.name!r} does not fit "
                                 f"its rank {len(t.shape)} ({shape_str(t.shape)})")
            dims = []
            for axis, d in enumerate(t.shape):
                h = hint[axis] if hint else -1
                if d >= 0 and h >= 0 and h != d and not (axis == 0 and batch):
                    raise ShapeError(f"shape {shape_str(hint)} for input {t.name!r} conflicts "
                                     f"with the model's {shape_str(t.shape)}")
                if axis == 0 and batch is not None:
                    dims.append(batch)
                elif d >= 0:
                    dims.append(d)
                elif h > 0:
                    dims.append(h)
                elif axis == 0:
                    dims.append(1)
                else:
                    raise ShapeError(f"input {t.name!r} has dynamic axes {shape_str(t.shape)}; "
                                     f"give its shape (--shape, or a manifest beside the model)")
            result.append(tuple(dims))
        return result

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "version": self.version, "provider": self.provider,
                "threads": self.threads, "precision_hint": self.precision_hint,
                "inference_precision": self.inference_precision,
                "inputs": [spec_dict(t) for t in self.inputs],
                "outputs": [spec_dict(t) for t in self.outputs]}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{t.name}:{t.dtype}{shape_str(t.shape)}" for t in self.inputs)
        return f"<{type(self).__name__} {self.path.name} [{ins}] {self.provider}>"


def shape_hints(inputs: Sequence[TensorSpec], known: Sequence[TensorSpec],
                preprocess=None) -> dict[str, tuple[int, ...]]:
    """Shapes for ``inputs`` from a manifest: its input specs (by name, else by position),
    with the image axes still dynamic there filled from its preprocessing (crop x crop, RGB)."""
    by_name = {t.name: tuple(t.shape) for t in known}
    if any(t.name in by_name for t in inputs):
        hints = {t.name: by_name[t.name] for t in inputs if t.name in by_name}
    elif len(known) == len(inputs):
        hints = {t.name: tuple(k.shape) for t, k in zip(inputs, known)}
    else:
        hints = {}
    if preprocess is not None and len(inputs) == 1 and len(inputs[0].shape) == 4:
        t = inputs[0]
        shape = list(hints.get(t.name, t.shape))
        h, w, c = (2, 3, 1) if preprocess.layout == "NCHW" else (1, 2, 3)
        for axis, size in ((h, preprocess.crop), (w, preprocess.crop), (c, 3)):
            if shape[axis] < 0:
                shape[axis] = size
        hints[t.name] = tuple(shape)
    return hints


def spec_dict(t: TensorSpec) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "layout": t.layout,
            "scale": t.scale, "zero_point": t.zero_point}


def shape_str(shape) -> str:
    return "[" + ",".join(str(d) if d >= 0 else "?" for d in shape) + "]"


def guess_layout(shape) -> str | None:
    """NCHW or NHWC for a 4-D image input with 1 or 3 channels; None when it cannot tell."""
    if len(shape) != 4:
        return None
    c_first, c_last = shape[1] in (1, 3), shape[3] in (1, 3)
    if c_first and not c_last:
        return "NCHW"
    if c_last and not c_first:
        return "NHWC"
    return None


def chunks(feeds: dict[str, np.ndarray], size: int):
    """Split every input along the batch axis into pieces of ``size`` (the last one padded
    by repeating its final sample); yields (piece, number of real samples in it)."""
    n = next(iter(feeds.values())).shape[0]
    for s in range(0, n, size):
        real = min(size, n - s)
        piece = {}
        for k, v in feeds.items():
            part = v[s:s + size]
            if real < size:
                part = np.concatenate([part, np.repeat(part[-1:], size - real, axis=0)])
            piece[k] = np.ascontiguousarray(part)
        yield piece, real


def concat(parts: list[tuple[list[np.ndarray], int]]) -> list[np.ndarray]:
    """Join chunked outputs, dropping the padding rows of the last chunk."""
    if len(parts) == 1 and parts[0][1] == len(parts[0][0][0]):
        return parts[0][0]
    return [np.concatenate([o[i][:real] for o, real in parts], axis=0)
            for i in range(len(parts[0][0]))]


def raise_fixed_batch(backend: Backend, n: int):
    raise ShapeError(f"{backend.path.name}: the model's batch is fixed at "
                     f"{backend.input.shape[0]}; cannot bind a batch of {n}")


def first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:300]


def profile_rows(rows: dict[str, dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """{"name": {"type", "calls", "total_us"}} -> rows in ms, slowest first."""
    out = [{"name": name, "type": r.get("type", ""), "calls": r["calls"],
            "total_ms": r["total_us"] / 1e3, "mean_ms": r["total_us"] / 1e3 / max(runs, 1)}
           for name, r in rows.items()]
    return sorted(out, key=lambda r: -r["total_ms"])
