"""Loading weights into zoo models: PyTorch checkpoints, packaged weights, other formats.

``load_weights(model, path, arch)`` reads ``path`` with ``torch.load(weights_only=True)``. The
file may hold a raw state dict (torchvision key names) or a checkpoint dict that keeps one
under ``state_dict``, ``model_state_dict``, ``model``, ``ema``, ``state_dict_ema``, ``model_ema``
or ``net`` (the first present wins). ``module.`` (DataParallel/DDP) and ``_orig_mod.``
(torch.compile) prefixes are stripped. BatchNorm ``num_batches_tracked`` counters may be
absent (old checkpoints); everything else must match key for key and shape for shape, or a
one-line WeightsError lists the missing, unexpected and mis-shaped keys.

Other file formats are converted by importers registered per (arch pattern, suffix), e.g.
``register_importer("mobilenet_v1*", ".tflite", fn, build_kwargs={"tf_padding": True})``;
``fn(model, path)`` fills the model in place and may return a dict of facts about the import.
``build_kwargs`` are what the model must be built with for that file (see ``build_kwargs_for``).
Modules in the ``zoo.importers`` package register themselves when ``zoo`` is imported.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from edgebase.errors import WeightsError
from edgebase.files import sha256_file

TORCH_SUFFIXES = (".pt", ".pth", ".pth.tar", ".ckpt", ".bin", ".tar")
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "ema", "state_dict_ema",
                   "model_ema", "net")
PREFIXES = ("module.", "_orig_mod.")
PACKAGED_DIR = Path(__file__).parent / "weights"
_SHOW = 5  # keys shown per list in an error message

Importer = Callable[[Any, Path], Any]


@dataclass(frozen=True)
class _ImporterEntry:
    fn: Importer
    build_kwargs: Mapping[str, Any]
    entry_overrides: Mapping[str, Any] = None  # ModelEntry fields the file implies (preprocess, labels)


_IMPORTERS: dict[tuple[str, str], _ImporterEntry] = {}


@dataclass(frozen=True)
class LoadedWeights:
    """What was loaded, for manifests: the file, its sha256 and where the tensors came from."""

    path: str
    sha256: str
    format: str  # "torch" or the importer's suffix, e.g. ".tflite"
    source_key: str | None = None  # checkpoint key holding the state dict, None for a raw one
    stripped_prefix: str | None = None
    info: Mapping[str, Any] | None = None  # what an importer reported

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["info"] = dict(self.info) if self.info else None
        return d


def register_importer(arch_pattern: str, suffix: str, importer: Importer, *,
                      build_kwargs: Mapping[str, Any] | None = None,
                      entry_overrides: Mapping[str, Any] | None = None) -> None:
    """Register ``importer(model, path)`` for files ending in ``suffix`` and matching archs.

    ``entry_overrides``: ModelEntry fields that weights in this format imply, e.g. the
    preprocessing the network was trained with and its label set."""
    key = (arch_pattern, suffix.lower())
    if key in _IMPORTERS:
        raise ValueError(f"an importer for {key} is registered twice")
    _IMPORTERS[key] = _ImporterEntry(importer, dict(build_kwargs or {}),
                                     dict(entry_overrides or {}))


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in sorted(TORCH_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _find_importer(arch: str, suffix: str) -> _ImporterEntry | None:
    for (pattern, sfx), entry in _IMPORTERS.items():
        if sfx == suffix and fnmatch.fnmatchcase(arch, pattern):
            return entry
    return None


def build_kwargs_for(arch: str, path: str | Path) -> dict[str, Any]:
    """Builder kwargs that loading ``path`` into ``arch`` needs ({} for PyTorch checkpoints)."""
    suffix = _suffix(Path(path))
    if suffix in TORCH_SUFFIXES:
        return {}
    entry = _find_importer(arch, suffix)
    return dict(entry.build_kwargs) if entry else {}


def entry_overrides_for(arch: str, path: str | Path) -> dict[str, Any]:
    """ModelEntry fields implied by loading ``path`` into ``arch`` ({} for PyTorch checkpoints)."""
    suffix = _suffix(Path(path))
    if suffix in TORCH_SUFFIXES:
        return {}
    entry = _find_importer(arch, suffix)
    return dict(entry.entry_overrides or {}) if entry else {}


def supported_suffixes(arch: str) -> list[str]:
    extra = [s for (p, s) in _IMPORTERS if fnmatch.fnmatchcase(arch, p)]
    return sorted(set(TORCH_SUFFIXES) | set(extra))


def load_weights(model, path: str | Path, arch: str) -> LoadedWeights:
    """Fill ``model`` from ``path`` in place; raise WeightsError when it cannot or does not fit."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise WeightsError(f"weights file {path} {what}")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes)")
    suffix = _suffix(path)
    if suffix not in TORCH_SUFFIXES:
        importer = _find_importer(arch, suffix)
        if importer is None:
            raise WeightsError(
                f"cannot load {path.name} into {arch}: no importer for {suffix or 'files without a suffix'!r}; "
                f"valid suffixes: {', '.join(supported_suffixes(arch))}"
            )
        digest = sha256_file(path)
        info = importer.fn(model, path)
        return LoadedWeights(str(path), digest, suffix, info=info if isinstance(info, Mapping) else None)
    obj = load_tensors_only(path)
    state, source_key = extract_state_dict(obj, path)
    state, prefix = strip_prefixes(state)
    apply_state_dict(model, state, arch, path.name)
    return LoadedWeights(str(path), sha256_file(path), "torch", source_key, prefix)


def load_tensors_only(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights_only errors all mean "cannot read it"
        text = str(err).strip()
        called = _refused_global(text)
        if called:
            # torch's own text goes on to suggest weights_only=False: never repeat that advice
            raise WeightsError(f"refused {path.name}: its pickle calls {called} (code or "
                               f"objects, not tensors); only tensors are loaded (torch.load "
                               f"weights_only=True). Re-save the weights alone: "
                               f"torch.save(model.state_dict(), PATH)") from None
        if text.startswith("Weights only load failed"):  # not a pickle of tensors at all
            text = "not a pickle of tensors"
        reason = _first_sentence(text) if text else type(err).__name__
        raise WeightsError(
            f"cannot read {path.name} as a PyTorch checkpoint (weights_only=True): {reason}; "
            f"is it truncated, or another format?") from None


def _first_sentence(text: str, limit: int = 200) -> str:
    """A library's error up to its first full stop: never cut in the middle of advice."""
    line = text.splitlines()[0]
    end = line.find(". ")
    line = line[:end] if end > 0 else line.rstrip(".")
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " ..."


def _refused_global(text: str) -> str | None:
    """The callable a refused pickle names (torch's weights_only message), or None."""
    import re

    if not text.startswith("Weights only load failed"):
        return None
    m = re.search(r"unsupported (?:global: )?GLOBAL ([\w.]+)", text, re.IGNORECASE)
    return m.group(1) if m else None


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def extract_state_dict(obj: Any, path: Path) -> tuple[dict, str | None]:
    """The state dict inside ``obj`` and the key it was under (None for a raw state dict)."""
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in CHECKPOINT_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key]), key
        keys = ", ".join(map(str, list(obj)[:8]))
        raise WeightsError(
            f"{path.name} is a dict but holds no state dict (keys: {keys}); expected tensors by "
            f"name, or one of {', '.join(CHECKPOINT_KEYS)} holding them"
        )
    raise WeightsError(
        f"{path.name} holds a {type(obj).__name__}, not a state dict or checkpoint dict"
    )


def strip_prefixes(state: dict) -> tuple[dict, str | None]:
    stripped = []
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            stripped.append(prefix)
    return state, "".join(stripped) or None


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    more = f", +{len(items) - _SHOW} more" if len(items) > _SHOW else ""
    return f"{len(items)} {label} ({shown}{more})"


def apply_state_dict(model, state: Mapping, arch: str, source: str) -> None:
    """Strict load with a readable error; missing ``num_batches_tracked`` keep the model's."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(_listing("missing", missing))
        if unexpected:
            parts.append(_listing("unexpected", unexpected))
        if misshaped:
            parts.append(_listing("mis-shaped", [
                f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in misshaped]))
        hint = _num_classes_hint(model, state, misshaped)
        raise WeightsError(f"{source} does not fit {arch}: " + "; ".join(parts) + hint)
    merged = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(merged, strict=True)


def _num_classes_hint(model, state: Mapping, misshaped: list[str]) -> str:
    """When only the classifier's output count differs, say which --num-classes would fit."""
    own = model.state_dict()
    if not misshaped:
        return ""
    counts = {state[k].shape[0] for k in misshaped if state[k].dim() >= 1}
    same_rest = all(tuple(state[k].shape[1:]) == tuple(own[k].shape[1:]) for k in misshaped)
    if len(counts) == 1 and same_rest and len(misshaped) <= 2:
        return f" (the checkpoint has {counts.pop()} classes: pass --num-classes to match)"
    return ""


def load_packaged_weights(model, weights) -> LoadedWeights:
    """Load a registry ``Weights`` record from zoo/weights/, verifying its sha256 first."""
    path = (PACKAGED_DIR / weights.file).resolve()
    if PACKAGED_DIR.resolve() not in path.parents:
        raise WeightsError(f"packaged weights path {weights.file!r} leaves {PACKAGED_DIR}")
    if not path.is_file():
        raise WeightsError(f"packaged weights {weights.file} are missing from {PACKAGED_DIR}")
    digest = sha256_file(path)
    if digest != weights.sha256:
        raise WeightsError(
            f"packaged weights {weights.file} have sha256 {digest[:12]}..., expected "
            f"{weights.sha256[:12]}...: the file is corrupt or was replaced"
        )
    arch = getattr(weights, "arch", None) or path.stem
    obj = load_tensors_only(path)
    state, _ = extract_state_dict(obj, path)
    state, prefix = strip_prefixes(state)
    apply_state_dict(model, state, arch, path.name)
    return LoadedWeights(str(path), digest, "torch", None, prefix)
