"""What a model file says about itself: the preprocessing and class names it carries inside.

Files from elsewhere often travel without a manifest but describe their input: Google's
TFLite files carry TFLite Support metadata (normalization in pixel units, a packed labels file
whose first line is ``background`` for the 1001-class ImageNet models), ONNX files may carry
``metadata_props`` (ONNX's ``Image.*`` keys, or the ``edgedeploy.*`` keys ``deploy export``
writes, also into OpenVINO's rt_info). Each backend reads its own format into an ``Embedded``;
``runner eval`` then takes a setting from the flags first, else from the manifest, else from
here, and says which.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

# labels whose first entry is this name put class 0 on "background" (TF-slim's 1001 classes)
BACKGROUND = ("background", "__background__")
# ONNX's metadata convention for images (onnx/docs/MetadataProps.md): the value range the
# network expects, as (mean, std) in 0..1 units of x/255
NOMINAL_PIXEL_RANGE = {"NominalRange_0_255": (0.0, 1 / 255), "Normalized_0_1": (0.0, 1.0),
                       "Normalized_1_1": (0.5, 0.5)}
BITMAP_COLOR = {"Rgb8": "RGB", "Rgba8": "RGB", "Bgr8": "BGR", "Bgra8": "BGR"}


@dataclass(frozen=True)
class Embedded:
    """Preprocessing and labels read from inside a model file (None: the file does not say).

    ``mean``/``std`` are per channel in 0..1 units, like a manifest's, whatever units the
    file used; ``problem`` is set when the file has metadata that could not be used."""

    where: str  # "TFLite metadata", "ONNX metadata_props", ...
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: int | None = None
    crop: int | None = None
    interpolation: str | None = None
    color: str | None = None
    layout: str | None = None
    labels: tuple[str, ...] | None = None
    label_offset: int | None = None  # said outright (``edgedeploy.label_offset``)
    problem: str | None = None

    @property
    def empty(self) -> bool:
        return all(getattr(self, k) is None for k in (
            "mean", "resize", "crop", "interpolation", "color", "layout", "labels",
            "label_offset"))


def fmt_values(v) -> str:
    """Per-channel values for a message: "0.5" when all three agree, else "(a, b, c)"."""
    return "(" + ", ".join(f"{x:g}" for x in v) + ")" if len(set(v)) > 1 else f"{v[0]:g}"


def background_first(labels: Sequence[str] | None) -> bool:
    return bool(labels) and labels[0].strip().lower() in BACKGROUND


def from_pixel_units(where: str, mean: Sequence[float] | None, std: Sequence[float] | None,
                     **other) -> Embedded:
    """TFLite Support's NormalizationOptions are in pixel units: input = (pixel - mean) / std."""
    if mean is None or std is None:
        return Embedded(where, **other)
    m, s = _three(mean), _three(std)
    if m is None or s is None or any(v <= 0 for v in s):
        return Embedded(where, problem=f"normalization mean {list(mean)} std {list(std)} is "
                                       f"not 1 or 3 values with a positive std", **other)
    return Embedded(where, mean=tuple(v / 255 for v in m), std=tuple(v / 255 for v in s),
                    **other)


def from_properties(props: Mapping[str, str], where: str) -> Embedded | None:
    """An Embedded from string key/value metadata (ONNX metadata_props, OpenVINO rt_info);
    None when none of the keys we know is there."""
    if any(k.startswith("edgedeploy.") for k in props):
        return _ours(props, where)
    if "Image.NominalPixelRange" in props or "Image.BitmapPixelFormat" in props:
        rng = props.get("Image.NominalPixelRange")
        color = BITMAP_COLOR.get(props.get("Image.BitmapPixelFormat", ""))
        if rng is not None and rng not in NOMINAL_PIXEL_RANGE:
            return Embedded(where, color=color, problem=f"Image.NominalPixelRange {rng!r} is "
                            f"not one of {', '.join(NOMINAL_PIXEL_RANGE)}")
        mean, std = NOMINAL_PIXEL_RANGE.get(rng, (None, None))
        return Embedded(where, mean=None if mean is None else (mean,) * 3,
                        std=None if std is None else (std,) * 3, color=color)
    return None


def _ours(props: Mapping[str, str], where: str) -> Embedded:
    """The keys ``deploy export`` writes: a Preprocess as JSON, and the labels one a line (or
    the name of a label set, which tells nothing about the classes here)."""
    fields: dict[str, Any] = {}
    text = props.get("edgedeploy.labels") or ""
    if "\n" in text:
        fields["labels"] = tuple(text.splitlines())
    if props.get("edgedeploy.label_offset", "").isdigit():
        fields["label_offset"] = int(props["edgedeploy.label_offset"])
    try:
        pre = json.loads(props.get("edgedeploy.preprocess") or "null")
        if pre is not None:
            fields.update(mean=_three(pre["mean"]), std=_three(pre["std"]),
                          resize=int(pre["resize"]), crop=int(pre["crop"]),
                          interpolation=str(pre.get("interpolation", "bilinear")),
                          color=str(pre.get("color", "RGB")), layout=pre.get("layout"))
    except (ValueError, KeyError, TypeError) as e:
        return Embedded(where, labels=fields.get("labels"),
                        problem=f"edgedeploy.preprocess is unreadable ({type(e).__name__})")
    if fields.get("mean") is None or fields.get("std") is None or min(fields["std"]) <= 0:
        bad = "std" in fields and fields["std"] is not None
        fields.pop("mean", None), fields.pop("std", None)
        if bad:
            return Embedded(where, problem="edgedeploy.preprocess has a std of 0 or less",
                            **fields)
    return Embedded(where, **fields)


def _three(values) -> tuple[float, ...] | None:
    try:
        v = tuple(float(x) for x in values)
    except (TypeError, ValueError):
        return None
    return v * 3 if len(v) == 1 else v if len(v) == 3 else None
