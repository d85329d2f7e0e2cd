"""``--preset --mean --std --resize --labels``: the preprocessing and class names of a checkpoint
the zoo's metadata does not describe (a model trained on other data, or at another scale).

They replace the zoo entry's preprocessing before anything is exported, so validation,
calibration and the manifest all use them, and ``runner eval`` on the file needs no flags.
Flags given explicitly win over the preset's values; without a preset, --mean and --std go
together. Values are in 0..1 units, as in torchvision's ``Normalize``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from edgebase.errors import ConfigError, DataError

# name -> (mean, std, resize / crop): the short side is resized to crop * ratio, then cropped
PRESETS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 1.0),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 256 / 224),
}


def add_arguments(p) -> None:
    from edgebase.cli_flags import POSITIVE

    g = p.add_argument_group("preprocessing and labels of your checkpoint (default: the "
                             "model's own, see `deploy models`); recorded in the manifest")
    g.add_argument("--preset", choices=tuple(PRESETS), help="cifar10: no crop, CIFAR-10 "
                   "mean/std; imagenet: resize the short side to 256/224 of the input, "
                   "centre crop, ImageNet mean/std")
    g.add_argument("--mean", type=float, nargs="+", metavar="M",
                   help="per-channel mean, 1 or 3 values in 0..1 units (e.g. 0.5)")
    g.add_argument("--std", type=float, nargs="+", metavar="S",
                   help="per-channel std, 1 or 3 values in 0..1 units (e.g. 0.5)")
    g.add_argument("--resize", type=POSITIVE, metavar="N",
                   help="short side in pixels before the centre crop to the input size "
                        "(>= the input size; equal means no crop)")
    g.add_argument("--labels", metavar="FILE", help="class names, one a line, as many as "
                   "--num-classes")


def given(args) -> bool:
    return any(getattr(args, k, None) is not None for k in ("preset", "mean", "std", "resize"))


def _triple(values, flag: str, lo: float, hi: float, lo_open: bool) -> tuple[float, ...]:
    v = tuple(float(x) for x in values)
    if len(v) == 1:
        v = v * 3
    if len(v) != 3:
        raise ConfigError(f"{flag} takes 1 or 3 values (one per RGB channel), got {len(v)}")
    bad = [x for x in v if x > hi or x < lo or (lo_open and x == lo)]
    if bad:
        hint = " (0..255 units? divide by 255)" if any(x > 1 for x in bad) else ""
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise ConfigError(f"{flag} {bad[0]:g} is outside {interval}{hint}; values are in "
                          f"0..1 units, e.g. 0.5")
    return v


def normalization(preset=None, mean=None, std=None):
    """(mean, std, resize/crop ratio) of the flags, checked; None for what they leave open."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown --preset {preset!r}; valid: {', '.join(PRESETS)}")
    p_mean, p_std, ratio = PRESETS[preset] if preset else (None, None, None)
    mean = _triple(mean, "--mean", 0.0, 1.0, False) if mean is not None else p_mean
    std = _triple(std, "--std", 0.0, 1.0, True) if std is not None else p_std
    if (mean is None) != (std is None):
        missing = "--std" if std is None else "--mean"
        raise ConfigError(f"{missing} is missing: give --mean and --std together, or a "
                          f"--preset ({', '.join(PRESETS)}) for the other")
    return mean, std, ratio


def resolve(base, *, preset=None, mean=None, std=None, resize=None):
    """The Preprocess these flags describe, built on ``base`` (the entry's, after
    --input-size); None when no flag was given."""
    if preset is None and mean is None and std is None and resize is None:
        return None
    mean, std, ratio = normalization(preset, mean, std)
    crop = base.crop
    if resize is None:
        resize = round(crop * ratio) if ratio else base.resize
    elif resize < crop:
        raise ConfigError(f"--resize {resize} is smaller than the input size {crop}; use "
                          f">= {crop} ({crop} means no crop)")
    return dataclasses.replace(base, resize=int(resize), crop=crop,
                               mean=tuple(mean) if mean else base.mean,
                               std=tuple(std) if std else base.std)


def read_labels(path, num_classes: int) -> tuple[str, ...]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"--labels {p}: no such file")
    try:
        names = tuple(line.strip() for line in p.read_text(encoding="utf-8").splitlines()
                      if line.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"--labels {p}: unreadable ({e})") from None
    if len(names) != num_classes:
        raise ConfigError(f"--labels {p}: {len(names)} names for {num_classes} classes "
                          f"(one name a line)")
    return names


def apply(source, args):
    """``source`` (deploy.export.ModelSource) with the flags' preprocessing and labels."""
    pre = resolve(source.entry.preprocess, preset=args.preset, mean=args.mean, std=args.std,
                  resize=args.resize)
    if pre is not None:
        source = dataclasses.replace(source,
                                     entry=dataclasses.replace(source.entry, preprocess=pre))
    if args.labels is not None:
        source = dataclasses.replace(source, label_names=read_labels(
            args.labels, source.entry.num_classes))
    return source
