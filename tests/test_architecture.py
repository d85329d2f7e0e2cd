"""The import rules of docs/ARCHITECTURE.md, checked on the source: arrows point down the
floors (or across within one), nothing imports ``deploy``, and no module cycle exists.

Every import counts, also the ones inside functions (they run too). Read with ``ast``: nothing
is imported, so the check is fast and sees modules whose runtime is not installed.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = {"edgebase": 1, "zoo": 2, "device_runners": 2, "exporters": 3, "quant": 3, "deploy": 4}
# the one module allowed to import torch among the torch-free packages: ExecuTorch's runtime
# links libtorch, so its backend cannot be torch-free (loaded only for .pte files)
TORCH_FREE = ("edgebase", "device_runners")
TORCH_ALLOWED = {"device_runners.backends.executorch"}


def modules() -> dict[str, Path]:
    found = {}
    for pkg in FLOORS:
        for f in sorted((REPO / pkg).rglob("*.py")):
            parts = f.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = f
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``name`` imports (resolved to the deepest known module)."""
    def ours(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] or [base]
        else:
            continue
        for t in targets:
            m = ours(t)
            if m and m != name:
                out.add(m)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def external(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def floor(module: str) -> int:
    return FLOORS[module.split(".")[0]]


def test_arrows_point_down_the_floors():
    upward = sorted(f"{a} (floor {floor(a)}) -> {b} (floor {floor(b)})"
                    for a, deps in graph().items() for b in deps if floor(b) > floor(a))
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_nothing_imports_deploy():
    g = graph()
    users = sorted(f"{a} -> {b}" for a, deps in g.items() for b in deps
                   if b.split(".")[0] == "deploy" and a.split(".")[0] != "deploy")
    assert not users, "\n".join(users)


def test_no_import_cycles():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_base_and_runner_are_torch_free():
    known = modules()
    heavy = {"torch", "torchvision", "torchao", "nncf", "onnxscript"}
    found = sorted(f"{m}: {', '.join(sorted(external(p) & heavy))}"
                   for m, p in known.items() if m.split(".")[0] in TORCH_FREE
                   and m not in TORCH_ALLOWED and external(p) & heavy)
    assert not found, "\n".join(found)


def test_the_checker_sees_what_it_should():
    """The walk itself: real edges are found (a broken resolver would pass every rule)."""
    g = graph()
    assert "edgebase.errors" in g["deploy.export"]
    assert "device_runners.backends" in g["deploy.validate"]  # an import inside a function
    assert all(floor(m) for m in g)


def test_only_the_capability_table_names_targets():
    """A target or runtime name, or a model file suffix (``path.suffix == ".tflite"``), in code
    outside the table and that target's own modules (whose file names start with it:
    exporters/tflite.py, quant/onnx_ptq.py, backends/litert.py) is a second per-target source;
    adding a target would mean editing it. Format-specific release code sits behind the
    table's ``BundleHooks`` in the format's own modules."""
    from edgebase.capabilities import RUNTIMES, TARGETS, model_suffixes

    names = set(TARGETS) | {n for r in RUNTIMES.values() for n in (r.name, *r.aliases)}
    own_names = set(names)
    names |= set(model_suffixes()) | {t.suffix for t in TARGETS.values()}
    found = []
    for module, path in modules().items():
        own = path.stem.split("_")[0] in own_names or path.stem in own_names
        if module == "edgebase.capabilities" or own:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert not found, "\n".join(found)


def test_target_option_flags_come_from_the_table():
    """A flag that sets a target option (``--no-simplify``, ``--nchw-input``, ``--opset``) is
    made from the table's ``Target.options`` (deploy/target_flags.py); a command module that
    spelled one out would be a second per-target source."""
    from edgebase.capabilities import TARGETS

    flags = {o.flag_name(n) for t in TARGETS.values() for n, o in t.options.items()}
    assert {"--no-simplify", "--nchw-input", "--no-rewrite"} <= flags  # names scripts use
    found = []
    for module, path in modules().items():
        if module == "edgebase.capabilities":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(
                    node.value == f or node.value.startswith(f + " ") for f in flags):
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert not found, "\n".join(found)
