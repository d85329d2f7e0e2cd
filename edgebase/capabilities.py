"""The capability table: one entry per export target and one per runtime, keyed by name.

The only place that knows each target: the CLI (choices, option checks), the export and int8
stages (converter, PTQ module, file names, which runtime validates, tool versions), the runner
(which backend reads which suffix, the pip extra that installs it), releases and the benchmark
all read it. A new target is an exporter module, a quantizer module, a backend module, one
``Target`` and one ``Runtime`` entry here, and one pip extra (plus, for a format that carries
release metadata or has its own app code, the modules its ``BundleHooks`` name). This module
imports no framework: code is named by ``module:attribute`` and imported only when used.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from edgebase.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class Tolerance:
    """What an exported model must meet against its PyTorch parent on real images.

    ``max_abs``: largest |logit difference| allowed (None: reported, not checked);
    ``min_top1``: share of images whose top-1 class agrees (a flip between two classes whose
    parent logits are within ``2 * max_abs`` of each other is within tolerance, not a
    disagreement); ``min_cosine``: per-image cosine
    similarity of the logit vectors, worst image (None: reported, not checked).
    """

    max_abs: float | None
    min_top1: float
    min_cosine: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "min_top1": self.min_top1, "min_cosine": self.min_cosine}


# fp32 conversions are exact up to operation order; fp16 weights move logits by ~1e-3 relative
FP16 = Tolerance(max_abs=None, min_top1=0.99, min_cosine=0.999)
# int8 PTQ (quant/): a working int8 file keeps most top-1 classes and the logits' direction;
# a broken one (saturating kernels, missing bias correction) falls below these
INT8 = Tolerance(max_abs=None, min_top1=0.75, min_cosine=0.9)


def resolve(ref: str) -> Any:
    """The object a ``"module:attribute"`` reference names (the module is imported now)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class BundleHooks:
    """A format's own release code, each a ``"module:function"`` (None: the format has none).

    ``pack(data, artifact, labels, version) -> (data, pass_record, entry_fields)``: the model
    file's bytes with the bundle's labels and normalization stored inside (``deploy release``
    then checks that the runtime gives identical outputs, records the pass and adds
    ``entry_fields`` to the file's entry in manifest.json);
    ``check(root, path, entry, bundle_manifest) -> [problem, ...]``: what ``runner verify``
    asks of a bundle's file of this format (torch-free: it runs on the device);
    ``app_guide(bundle_manifest, entries) -> str``: the model card's sections with app code
    for this format's files (empty string: none).
    """

    pack: str | None = None
    check: str | None = None
    app_guide: str | None = None

    def get(self, name: str) -> Callable[..., Any] | None:
        ref = getattr(self, name)
        return resolve(ref) if ref else None


@dataclass(frozen=True)
class TargetOption:
    """A keyword a target's converter takes, and the ``deploy export`` flag that sets it.

    A bool option's flag sets the opposite of its default (``--no-simplify`` turns off
    ``simplify``, default on); an int or str option's flag takes the value (``--opset 18``).
    ``flag`` None: ``--no-<name>`` for a bool on by default, ``--<name>`` otherwise (``_`` as
    ``-``). ``help`` says what the flag does. Only options given with a value other than the
    default are passed on and recorded (``Target.given_options``).
    """

    help: str
    kind: type = bool  # bool, int or str
    default: Any = True  # the converter's own default (a test checks they agree)
    flag: str | None = None
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None  # smallest value an int option takes

    def flag_name(self, name: str) -> str:
        if self.flag:
            return self.flag
        dashed = name.replace("_", "-")
        return f"--no-{dashed}" if self.kind is bool and self.default is True else f"--{dashed}"

    def check(self, target: str, name: str, value: Any) -> None:
        """One line naming the flag when ``value`` is not of the option's kind or range."""
        flag = self.flag_name(name)
        if self.kind is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, self.kind) and not isinstance(value, bool)
        if not ok:
            raise ConfigError(f"{target} option {name} ({flag}) takes a {self.kind.__name__}, "
                              f"got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{flag} {value}: not offered by {target}; valid: "
                              f"{', '.join(map(str, self.choices))}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{flag} {value}: {target} needs at least {self.minimum}")


def _is_default(option: TargetOption, value: Any) -> bool:
    # of the option's kind too: True == 1 in Python, yet 1 is no value of a bool option
    return type(value) is type(option.default) and value == option.default


@dataclass(frozen=True)
class Target:
    name: str
    suffix: str  # the model file's suffix
    runtime: str  # device_runners runtime that runs (and validates) the file
    extra: str  # pip extra that installs that runtime
    converter: str  # "module:function", called as fn(model, example, path, precision=..., **options)
    input_layout: str  # layout of the exported model's image input
    tolerances: Mapping[str, Tolerance]  # precision -> tolerance; its keys are the precisions
    options: Mapping[str, TargetOption] = field(default_factory=dict)  # converter keywords
    refused: Mapping[str, str] = field(default_factory=dict)  # precision -> why not offered
    companions: tuple[str, ...] = ()  # suffixes of files that travel with the model file
    embeds_metadata: bool = False  # the converter takes metadata= and stores it in the file
    tools: tuple[str, ...] = ()  # distributions whose versions the manifest records
    ptq: str | None = None  # module of the int8 pass (quant.<...>), None: no int8
    ptq_tools: tuple[str, ...] = ()  # distributions the int8 pass uses, recorded with ``tools``
    # the PTQ module reads an int8 file's weight tensors back (``int8_weights``), so a Deep
    # Compression container can carry the int8 file (``deploy compress --int8``)
    int8_container: bool = False
    # activation range estimation methods of the int8 pass (first: the default); the PTQ
    # module's METHODS (a test checks they agree)
    calib_methods: tuple[str, ...] = ()
    int8_io: tuple[str, ...] = ("float",)  # input/output types of its int8 files (first: default)
    bundle: BundleHooks = BundleHooks()  # format-specific release code (metadata, app snippets)

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(self.tolerances)

    def tolerance(self, precision: str) -> Tolerance:
        self.check_precision(precision)
        return self.tolerances[precision]

    def check_precision(self, precision: str) -> None:
        if precision in self.tolerances:
            return
        if precision in self.refused:
            raise ConfigError(f"{self.name} does not offer {precision}: {self.refused[precision]}")
        raise ConfigError(f"{self.name} does not offer {precision}; valid: "
                          f"{', '.join(self.precisions)}")

    def check_options(self, options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(f"{n} ({o.flag_name(n)})" for n, o in sorted(self.options.items()))
            valid = valid or "none"
            whose = "".join(f"; {n} ({o.flag_name(n)}) is {t.name}'s" for n in unknown
                            for t in TARGETS.values() for o in [t.options.get(n)] if o)
            raise ConfigError(f"{self.name} has no option {', '.join(unknown)}; valid: "
                              f"{valid}{whose}")
        for name, value in options.items():
            self.options[name].check(self.name, name, value)

    def given_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` less those set to their default: ``--opset 18`` (the default) and no
        ``--opset`` ask for the same file, so both are passed on and recorded alike and a
        file made with either is reused for the other. Names this target lacks are kept."""
        return {name: value for name, value in options.items()
                if name not in self.options or not _is_default(self.options[name], value)}

    def convert_fn(self) -> Callable[..., Any]:
        return resolve(self.converter)

    def file_name(self, stem: str, precision: str) -> str:
        """``mobilenet_v2.tflite`` for fp32, ``mobilenet_v2.fp16.tflite`` otherwise."""
        return f"{stem}{'' if precision == 'fp32' else '.' + precision}{self.suffix}"


@dataclass(frozen=True)
class Runtime:
    """A runtime the runner can load files with (device side: numpy plus this one library)."""

    name: str
    backend: str  # "module:Class" of its device_runners backend
    suffixes: tuple[str, ...]  # files it reads; a suffix's default runtime is the first listing it
    extra: str  # pip extra that installs it
    aliases: tuple[str, ...] = ()  # other names accepted for --runtime
    torch_free: bool = True  # installs and runs without torch (what a board wants)
    # "module:function" timing each operator of a file and naming the PyTorch layer it came
    # from (device_runners.layer_match); None: the runtime exposes no per-operator timer
    layer_profiler: str | None = None

    def layer_profiler_fn(self):
        if self.layer_profiler is None:
            return None
        module, _, fn = self.layer_profiler.partition(":")
        return getattr(importlib.import_module(module), fn)

    def backend_class(self):
        return resolve(self.backend)


TARGETS: dict[str, Target] = {}
RUNTIMES: dict[str, Runtime] = {}


def register_runtime(runtime: Runtime) -> Runtime:
    if runtime.name in RUNTIMES:
        raise ValueError(f"runtime {runtime.name!r} is registered twice")
    RUNTIMES[runtime.name] = runtime
    return runtime


def get_runtime(name: str) -> Runtime:
    """By name or alias; unknown names list the valid ones."""
    for r in RUNTIMES.values():
        if name == r.name or name in r.aliases:
            return r
    raise UnknownNameError("runtime", name, RUNTIMES)


def runtime_for_suffix(suffix: str) -> Runtime | None:
    return next((r for r in RUNTIMES.values() if suffix in r.suffixes), None)


def model_suffixes() -> list[str]:
    return sorted({s for r in RUNTIMES.values() for s in r.suffixes})


def register_target(target: Target) -> Target:
    if target.name in TARGETS:
        raise ValueError(f"target {target.name!r} is registered twice")
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UnknownNameError("target", name, TARGETS) from None


def target_names() -> list[str]:
    return list(TARGETS)


def all_precisions() -> list[str]:
    return sorted({p for t in TARGETS.values() for p in t.precisions})


def all_int8_io() -> list[str]:
    """Every int8 input/output type some target offers, the common default first."""
    return list(dict.fromkeys(io for t in TARGETS.values() if t.ptq for io in t.int8_io))


# what `deploy release` builds when no --target is given: the mobile format
DEFAULT_RELEASE_TARGETS = ("tflite",)


register_target(Target(
    name="onnx", suffix=".onnx", runtime="onnxruntime", extra="onnxruntime",
    converter="exporters.onnx:torch_to_onnx", input_layout="NCHW",
    tolerances={"fp32": Tolerance(max_abs=1e-4, min_top1=1.0, min_cosine=0.99999),
                "int8": INT8},
    options={"simplify": TargetOption("skip onnxslim graph simplification (by default kept "
                                      "only if outputs stay equal)"),
             "opset": TargetOption("ONNX opset of the file; the dynamo exporter cannot "
                                   "down-convert to 17", kind=int, default=18, minimum=18)},
    embeds_metadata=True, tools=("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime"),
    ptq="quant.onnx_ptq", int8_container=True, ptq_tools=("onnxruntime", "torch"),
    calib_methods=("image-percentile", "percentile", "minmax", "entropy"),
    refused={"fp16": "onnxruntime's CPU provider has no fp16 kernels for most of these ops and "
                     "would run them through inserted casts, so an fp16 ONNX file would be "
                     "neither smaller in use nor faster here; use --target openvino --fp16 or "
                     "--target tflite --fp16"},
))

register_target(Target(
    name="tflite", suffix=".tflite", runtime="litert", extra="litert",
    converter="exporters.tflite:torch_to_tflite", input_layout="NHWC",
    tools=("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
    ptq="quant.tflite_ptq", int8_container=True,
    ptq_tools=("ai-edge-quantizer", "ai-edge-litert"),
    calib_methods=("image-percentile", "minmax", "ema"),
    int8_io=("float", "int8", "uint8"),
    bundle=BundleHooks(pack="edgebase.tflite_bundle:pack", check="edgebase.tflite_bundle:check",
                       app_guide="deploy.tflite_app_guide:render"),
    tolerances={"fp32": Tolerance(max_abs=1e-3, min_top1=1.0, min_cosine=0.99999),
                "fp16": FP16, "int8": INT8},
    options={"nhwc_input": TargetOption("keep PyTorch's NCHW input (adds an input TRANSPOSE) "
                                        "instead of the NHWC input mobile apps feed",
                                        flag="--nchw-input"),
             "rewrite": TargetOption("skip the export-only rewrites that keep the graph in "
                                     "NHWC (channel shuffle as an NHWC reshape/transpose, "
                                     "global mean with kept dims)")},
))

register_target(Target(
    name="openvino", suffix=".xml", runtime="openvino", extra="openvino",
    converter="exporters.openvino:torch_to_openvino", input_layout="NCHW",
    tolerances={"fp32": Tolerance(max_abs=1e-4, min_top1=1.0, min_cosine=0.99999),
                "fp16": FP16, "int8": INT8},
    companions=(".bin",), embeds_metadata=True, tools=("torch", "openvino"),
    ptq="quant.openvino_ptq", int8_container=True, ptq_tools=("nncf", "openvino"),
    calib_methods=("image-percentile", "minmax", "nncf"),
))

register_target(Target(
    name="executorch", suffix=".pte", runtime="executorch", extra="executorch",
    converter="exporters.executorch:torch_to_executorch", input_layout="NCHW",
    tolerances={"fp32": Tolerance(max_abs=1e-4, min_top1=1.0, min_cosine=0.99999),
                "int8": INT8},
    tools=("torch", "executorch", "torchao"),
    ptq="quant.executorch_ptq", ptq_tools=("executorch", "torchao"),
    calib_methods=("image-percentile", "minmax", "histogram"),
    refused={"fp16": "the XNNPACK delegate computes fp16 only on CPUs with native fp16 "
                     "arithmetic (ARM v8.2+); on x86 it would run in f32 anyway"},
))

# runtimes: the first one listing a suffix is that suffix's default (OpenVINO also reads
# .onnx and .tflite, but only when asked)
register_runtime(Runtime(name="litert", backend="device_runners.backends.litert:LiteRTBackend",
                         suffixes=(".tflite",), extra="litert", aliases=("tflite",),
                         layer_profiler="device_runners.backends.litert_layers:profile_layers"))
register_runtime(Runtime(name="onnxruntime",
                         backend="device_runners.backends.onnxruntime:OnnxRuntimeBackend",
                         suffixes=(".onnx", ".ort"), extra="onnxruntime", aliases=("ort",),
                         layer_profiler="device_runners.backends.onnxruntime_layers:profile_layers"))
register_runtime(Runtime(name="openvino", backend="device_runners.backends.openvino:OpenVINOBackend",
                         suffixes=(".xml", ".onnx", ".tflite"), extra="openvino",
                         aliases=("ov",),
                         layer_profiler="device_runners.backends.openvino_layers:profile_layers"))
# not torch-free: executorch.runtime imports torch (its pybindings link libtorch)
register_runtime(Runtime(name="executorch",
                         backend="device_runners.backends.executorch:ExecuTorchBackend",
                         suffixes=(".pte",), extra="executorch", aliases=("et",),
                         torch_free=False))
