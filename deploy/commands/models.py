"""`deploy models`: the zoo as a table (or JSON) with parameters, MACs and memory access cost."""
from __future__ import annotations

HELP = "list the model zoo: params, MACs, memory access cost, input size, classes, weights"
RANDOM_NOTE = "random initialisation — latency only, no accuracy claims"


def add_arguments(p) -> None:
    p.add_argument("pattern", nargs="?", metavar="PATTERN",
                   help="glob (shufflenet_v2_*) or substring (mobilenet) of model names")
    from edgebase.cli_flags import add_json

    add_json(p, "the zoo (top-1 a number in percent, null without trained weights)")


def human(n: float) -> str:
    """1234567 -> '1.23M' (MACs, MAC cost); keeps three significant digits."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}" if n / div < 100 else f"{n / div:.0f}{unit}"
    return str(int(n))


def table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def line(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def weights_label(entry) -> str:
    if not entry.trained:
        return "random"
    return f"trained ({entry.weights.dataset}, top-1 {entry.weights.top1:.1f}%)"


def matching(pattern: str | None) -> list[str]:
    from edgebase.errors import UnknownNameError
    from zoo import list_models

    if pattern is None:
        return list_models()
    glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    names = list_models(glob)
    if not names:
        raise UnknownNameError("model pattern", pattern, list_models())
    return names


def run(args) -> int:
    import torch

    from zoo import aliases, get_entry
    from zoo.facts import entry_facts
    from zoo.registry import architecture_defaults

    torch.set_num_threads(1)  # counting needs no speed; extra threads only contend
    rows = []
    for name in matching(args.pattern):
        entry = get_entry(name)
        facts = entry_facts(entry)
        rows.append({
            "name": name, "arch": entry.arch, "params": facts.params, "macs": facts.macs,
            "mac_cost": facts.mac_cost, "input_size": entry.input_size,
            "num_classes": entry.num_classes, "trained": entry.trained,
            "weights": weights_label(entry),
            "top1": entry.weights.top1 if entry.trained else None,
            "dataset": entry.weights.dataset if entry.trained else None, "doc": entry.doc,
        })
    alias_map = {a: t for a, t in sorted(aliases().items()) if t in {r["name"] for r in rows}}
    # what a bare name means when --weights/--num-classes/--width replace the trained weights
    arch = {a: t for a, t in sorted(architecture_defaults().items()) if alias_map.get(a) != t
            and a in alias_map}
    if args.json:
        from edgebase.cli_flags import write_json

        write_json({"models": rows, "aliases": alias_map, "architecture_defaults": arch,
                    "units": {"macs": "multiply-accumulates", "mac_cost": "elements",
                              "top1": "percent, on the dataset's test split"}}, args.json)
        if args.json == "-":
            return 0
    print(table(
        ["name", "params", "MACs", "MAC cost", "input", "classes", "weights"],
        [[r["name"], f"{r['params']:,}", human(r["macs"]), human(r["mac_cost"]),
          f"{r['input_size']}x{r['input_size']}", str(r["num_classes"]), r["weights"]]
         for r in rows],
        right={1, 2, 3, 5},
    ))
    print()
    if alias_map:
        print("aliases: " + ", ".join(f"{a} -> {t}" for a, t in alias_map.items()))
    if arch:
        print("bare family names mean the trained entry above; with --weights, or a "
              "--num-classes/--width its weights do not fit: "
              + ", ".join(f"{a} -> {t}" for a, t in arch.items()))
    if any(not r["trained"] for r in rows):
        print(f"random = {RANDOM_NOTE}")
    print("MACs: multiply-accumulates of conv/linear layers; MAC cost: memory access cost in "
          "elements (ShuffleNet V2 definition, BN/activations fused); see `deploy inspect MODEL`")
    return 0
