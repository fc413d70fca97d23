"""The package's layers point one way, there are no import cycles, and files stay small.

Layers, lowest first (a module may import its own layer and the ones below, never above):

    core      losscli, errors, registry, serialize, atomic, environment, lossspec, device, safeload, plugins
    domain    losses, data, models, metrics, config, stats
    services  engine, report, profiling, calibrate   (independent of each other)
    app       app (what each command does: grids, resume, executors, report writing)
    cli       cli, __main__

Every import counts, also those inside functions (they are imports all the same; lazy ones
only move the cost). The check parses the source (ast): nothing is imported to run it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "losscli"
MAX_LINES = 400

LAYERS = {
    "core": ["losscli", "losscli.errors", "losscli.registry", "losscli.serialize", "losscli.atomic",
             "losscli.environment", "losscli.lossspec", "losscli.device", "losscli.safeload", "losscli.plugins"],
    "domain": ["losscli.losses", "losscli.data", "losscli.models", "losscli.metrics", "losscli.config", "losscli.stats"],
    "services": ["losscli.engine", "losscli.report", "losscli.profiling", "losscli.calibrate"],
    "app": ["losscli.app"],
    "cli": ["losscli.cli", "losscli.__main__"],
}
ORDER = list(LAYERS)
SERVICES = LAYERS["services"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """losscli modules imported anywhere in ``path`` (``from a import b`` counts as ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # attribute of a module: attribute the import to the module
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t.startswith("losscli") and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> tuple[str, str]:
    best = ("", "")
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            # "losscli" is the package's __init__ only: as a prefix it put every unlisted module in core
            inside = module.startswith(prefix + ".") and prefix != "losscli"
            if (module == prefix or inside) and len(prefix) > len(best[1]):
                best = (layer, prefix)
    assert best[0], f"{module} is in no layer; add it to LAYERS in tests/test_architecture.py"
    return best


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)
    with pytest.raises(AssertionError, match="in no layer"):  # a new top-level module must be placed
        _layer("losscli.newmodule")


def test_nothing_outside_the_cli_imports_the_cli():
    bad = [(m, t) for m, targets in GRAPH.items() for t in targets
           if t.startswith("losscli.cli") and not m.startswith("losscli.cli") and m != "losscli.__main__"]
    assert not bad, bad


def test_layers_point_one_way():
    bad = []
    for module, targets in GRAPH.items():
        layer, prefix = _layer(module)
        for t in targets:
            t_layer, t_prefix = _layer(t)
            if ORDER.index(t_layer) > ORDER.index(layer):
                bad.append(f"{module} ({layer}) imports {t} ({t_layer})")
            elif layer == t_layer == "services" and prefix != t_prefix:
                bad.append(f"{module} imports {t}: services are independent of each other")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, cycles


#: the package, its tests, benchmarks and examples: one purpose per file everywhere
SOURCES = sorted(p for d in ("losscli", "tests", "benchmarks", "examples") for p in (PACKAGE.parent / d).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_source_files_stay_small(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)} has {n} lines (at most {MAX_LINES}): split it by purpose"


def test_the_checker_sees_imports_inside_functions():
    """Guard against a checker that cannot fail: a function-level import is found."""
    assert "losscli.engine.evaluate" in GRAPH["losscli.engine.teacher"]
