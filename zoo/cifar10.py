"""The ``*.cifar10`` models: 32x32, 10 classes, each family's ``small_input`` adaptation.

Each entry ships the weights that ``deploy train`` produced (zoo/weights/<name>.pt, an fp32
state_dict) with the record measured when it was made (zoo/weights/cifar10.json): top-1 on
all 10,000 CIFAR-10 test images, the recipe, epochs, wall time and the exact command. ``tests/test_cifar10_weights.py``
re-checks the sha256 of every file and (marked slow) re-measures every top-1.
An entry whose weights are not trained yet has ``weights=None`` and is a random-init model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.models import small_input_adaptation
from zoo.registry import (CIFAR10, ModelEntry, Weights, architecture_defaults, get_entry, register,
                          register_alias, register_trained_default)

# name -> (base zoo entry, builder kwargs over the base's, family alias)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "shufflenet_v2_x0_5.cifar10": ("shufflenet_v2_x0_5", {}, "shufflenet_v2.cifar10"),
    "mobilenet_v3_small.cifar10": ("mobilenet_v3_small", {}, "mobilenet_v3.cifar10"),
    "mobilenet_v2_x0_5.cifar10": ("mobilenet_v2", {"width_mult": 0.5}, "mobilenet_v2.cifar10"),
    "mobilenet_v1_x0_5.cifar10": ("mobilenet_v1_x0_5", {}, "mobilenet_v1.cifar10"),
    "squeezenet1_1.cifar10": ("squeezenet1_1", {}, "squeezenet.cifar10"),
    "shufflenet_v1_g3.cifar10": ("shufflenet_v1_g3", {}, "shufflenet_v1.cifar10"),
}

# The records `deploy train` wrote for the shipped files, merged by `python -m zoo.cifar10 ship`.
RECORDS = Path(__file__).parent / "weights" / "cifar10.json"
# what of a training record travels with the weights (Weights.recipe); history etc. stay out
RECORD_KEYS = ("recipe", "init", "wall_time_s", "cpu_time_s", "s_per_epoch", "command", "torch",
               "threads", "machine", "train_images", "test_images", "data_sha256")


def trained_records(path: Path = RECORDS) -> dict[str, dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def _weights(name: str, records: dict[str, dict[str, Any]]) -> Weights | None:
    rec = records.get(name)
    if rec is None:
        return None
    recipe = {**rec["recipe"], **{k: rec[k] for k in RECORD_KEYS if k != "recipe" and k in rec}}
    return Weights(file=rec["weights_file"], sha256=rec["sha256"], dataset="cifar10",
                   top1=rec["top1"], recipe=recipe)


def ship(record_path: str | Path, records_file: Path = RECORDS) -> str:
    """Copy a finished run's weights into zoo/weights and merge its record (package data)."""
    from edgebase.files import sha256_file, write_bytes_atomic, write_text_atomic

    record_path = Path(record_path)
    rec = json.loads(record_path.read_text())
    name = rec["model"]
    if name not in VARIANTS:
        raise SystemExit(f"{name} is not one of {', '.join(VARIANTS)}")
    src = record_path.with_name(rec["weights_file"])
    if sha256_file(src) != rec["sha256"]:
        raise SystemExit(f"{src} does not match the sha256 in {record_path}")
    write_bytes_atomic(records_file.parent / f"{name}.pt", src.read_bytes())
    records = trained_records(records_file)
    records[name] = {"weights_file": f"{name}.pt", "sha256": rec["sha256"], "top1": rec["top1"],
                     **{k: rec[k] for k in RECORD_KEYS if k in rec}}
    write_text_atomic(records_file, json.dumps(dict(sorted(records.items())), indent=2) + "\n")
    return f"{name}: {rec['top1']:.2f}% -> {records_file.parent / (name + '.pt')}"


def _register() -> None:
    records = trained_records()
    for name, (base_name, extra, alias) in VARIANTS.items():
        base = get_entry(base_name)
        weights = _weights(name, records)
        register(ModelEntry(
            name=name, arch=base.arch, builder=base.builder,
            kwargs={**base.kwargs, **extra, "num_classes": 10, "small_input": True},
            preprocess=CIFAR10, labels="cifar10", weights=weights,
            width_kwarg=base.width_kwarg, adaptation=small_input_adaptation(base.arch),
            doc=(f"{base_name} {extra or ''} for 32x32 CIFAR-10 ("
                 + (f"trained: {weights.top1:.2f}% top-1 on the 10,000 test images"
                    if weights else "untrained") + ")").replace("  ", " "),
        ))
        register_alias(alias, name)
        family = alias.removesuffix(".cifar10")
        # timm's convention: a bare family name means its default trained entry when one
        # ships (mobilenet_v2 is a model name, not an alias: it keeps meaning that model)
        if weights is not None and family in architecture_defaults():
            register_trained_default(family, name)


def results_table() -> str:
    """The shipped records as the Markdown rows of docs/TRAINING.md's results table."""
    rows = []
    for name, rec in trained_records().items():
        r = rec["recipe"]
        extra = f" (lr {r['lr']})" if r["lr"] != 0.1 else ""
        epochs, wall = [r["epochs"]], rec["wall_time_s"]
        parent = (rec.get("init") or {}).get("parent")
        while parent:  # warm restarts: "15 + 15" epochs, wall time of the whole chain
            epochs.insert(0, parent["epochs"])
            wall += parent.get("wall_time_s") or 0
            parent = (parent.get("init") or {}).get("parent")
        rows.append(f"| `{name}` | {' + '.join(map(str, epochs))}{extra} | "
                    f"{rec['s_per_epoch']:.0f} | {wall / 60:.0f} min | {rec['top1']:.2f} % |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m zoo.cifar10 ship <run>/<name>.json ... | table
    import sys

    if sys.argv[1:] == ["table"]:
        print(results_table())
    elif len(sys.argv) >= 3 and sys.argv[1] == "ship":
        for arg in sys.argv[2:]:
            print(ship(arg))
    else:
        raise SystemExit("usage: python -m zoo.cifar10 ship RUN_DIR/NAME.json [...] | table")
else:  # as zoo.cifar10 (the registry imports it): register the entries once
    _register()
