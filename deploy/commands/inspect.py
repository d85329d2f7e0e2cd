"""`deploy inspect MODEL`: per-layer MACs and memory access cost, shares per layer kind."""
from __future__ import annotations

import dataclasses

from deploy.commands.models import RANDOM_NOTE, human, table

HELP = "show one model layer by layer: params, MACs, memory access cost, shares per layer kind"


def add_arguments(p) -> None:
    from edgebase.cli_flags import POSITIVE, above

    p.add_argument("model", metavar="MODEL", help="zoo name or alias (see `deploy models`)")
    p.add_argument("--num-classes", type=POSITIVE, help="classifier outputs (default: the model's)")
    p.add_argument("--width", type=above(0), help="width multiplier / scale, where the model has one")
    p.add_argument("--input-size", type=POSITIVE, help="square input side in pixels (default: the model's)")
    p.add_argument("--weights", metavar="PATH",
                   help="checkpoint to load (state dict or checkpoint dict; other formats by importer)")
    from edgebase.cli_flags import add_json

    add_json(p, "the per-layer facts")


def load(args):
    """(model, entry, loaded weights or None) for the command-line options."""
    import sys

    from zoo.registry import resolve_entry
    from zoo.weights import build_kwargs_for, load_weights

    resolved = resolve_entry(args.model, weights_given=bool(args.weights),
                             num_classes=args.num_classes, width=args.width,
                             input_size=args.input_size)
    entry = resolved.entry
    if resolved.note:
        print(resolved.note, file=sys.stderr)
    loaded = None
    if args.weights:
        extra = build_kwargs_for(entry.arch, args.weights)
        entry = dataclasses.replace(entry, kwargs={**entry.kwargs, **extra}, weights=None)
        model = entry.builder(**entry.kwargs)
        loaded = load_weights(model, args.weights, entry.arch)
        model.eval()
    else:
        model = entry.build()
    return model, entry, loaded


def weights_line(entry, loaded) -> str:
    if loaded is not None:
        return f"{loaded.path} (sha256 {loaded.sha256[:16]}…)"
    if entry.trained:
        return (f"packaged {entry.weights.file} ({entry.weights.dataset}, "
                f"top-1 {entry.weights.top1:.2f}%)")
    return RANDOM_NOTE


def run(args) -> int:
    import torch

    from zoo.facts import model_facts

    torch.set_num_threads(1)  # counting needs no speed; extra threads only contend
    model, entry, loaded = load(args)
    facts = model_facts(model, entry.input_size)
    kinds = facts.by_kind()
    random_init = loaded is None and not entry.trained
    if args.json:
        from edgebase.cli_flags import write_json

        write_json({
            "name": entry.name, "arch": entry.arch, "kwargs": dict(entry.kwargs),
            "input_size": entry.input_size, "num_classes": entry.num_classes,
            "adaptation": entry.adaptation, "random_init": random_init,
            "weights": loaded.to_dict() if loaded else (
                dataclasses.asdict(entry.weights) if entry.trained else None),
            "note": RANDOM_NOTE if random_init else None,
            "facts": facts.to_dict(),
        }, args.json)
        if args.json == "-":
            return 0
    kw = ", ".join(f"{k}={v}" for k, v in entry.kwargs.items())
    print(f"{entry.name}: {entry.doc}")
    print(f"build: {entry.builder.__name__}({kw}); input 1x3x{entry.input_size}x{entry.input_size}")
    print(f"weights: {weights_line(entry, loaded)}")
    print()
    shown = [l for l in facts.layers if l.macs or l.mac_cost]
    print(table(
        ["layer", "kind", "output", "params", "MACs", "MAC cost"],
        [[l.name, l.kind, "x".join(map(str, l.output_shape[1:])), f"{l.params:,}",
          human(l.macs), human(l.mac_cost)] for l in shown],
        right={3, 4, 5},
    ))
    print()
    print(table(
        ["kind", "count", "params", "MACs", "MACs %", "MAC cost", "MAC cost %"],
        [[k, str(r["count"]), f"{r['params']:,}", human(r["macs"]), f"{100 * r['macs_share']:.1f}",
          human(r["mac_cost"]), f"{100 * r['mac_cost_share']:.1f}"] for k, r in kinds.items()],
        right={1, 2, 3, 4, 5, 6},
    ))
    print()
    print(f"total: {facts.params:,} params, {human(facts.macs)} MACs ({facts.macs:,}), "
          f"MAC cost {human(facts.mac_cost)} elements ({facts.mac_cost:,})")
    print("BN and activations are fused into the preceding conv (counted 0); "
          "element-wise ops count what they read + write")
    if random_init:
        print(f"note: {RANDOM_NOTE}")
    return 0

