"""The package's layout: no import cycle in ``manifold_lab/``, and every arrow points down.

The graph is built from the source with ``ast``: every ``import`` and ``from ... import``
counts, at module level, inside a function or under ``if TYPE_CHECKING`` alike (a cycle
hidden in a function is still a cycle a reader has to hold in their head). An edge goes to
the module imported (``from manifold_lab.spec import sweep`` is an edge to
``manifold_lab.spec.sweep``; ``from manifold_lab.spec import load_spec`` one to the package
``manifold_lab.spec``).

The layers, lowest first; a module may import its own layer and the ones below it:

- the library (manifolds, metrics, models, data, training, the probe, ``stats``, ``io``...)
- ``kinds``: the experiment kinds, built on the library
- ``spec``: the experiment language
- ``execution``: runs planned into a results folder and executed
- ``reporting``: any study's tables, statistics and figures
- ``reproduction``: this paper's claim table and its analyses
- ``commands``, ``cli``, ``__main__``: the command line
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "manifold_lab"

#: Lowest first; a module belongs to the first layer one of whose prefixes it starts with,
#: else to the library (layer 0).
LAYERS = (
    ("library", ()),
    ("kinds", ("manifold_lab.kinds",)),
    ("spec", ("manifold_lab.spec",)),
    ("execution", ("manifold_lab.execution",)),
    ("reporting", ("manifold_lab.reporting",)),
    ("reproduction", ("manifold_lab.reproduction",)),
    ("command line", ("manifold_lab.commands", "manifold_lab.cli", "manifold_lab.__main__")),
)


def modules(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of every ``.py`` file under ``root`` (a package is its ``__init__``)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``, every import statement counted."""
    found = modules(root, package)

    def owner(name: str) -> str | None:  # the module that ``name`` is, or is defined in
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges.update(owner(alias.name) for alias in node.names if alias.name.split(".")[0] == package)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        here = here.rpartition(".")[0]
                    base = f"{here}.{base}" if base else here
                if base.split(".")[0] != package:
                    continue
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    edges.add(full if full in found else owner(base))
        edges.discard(None)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def layer(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return 0


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer into a higher one, as ``"a (layer) -> b (layer)"``."""
    return sorted(f"{a} ({LAYERS[layer(a)][0]}) -> {b} ({LAYERS[layer(b)][0]})"
                  for a, targets in graph.items() for b in targets if layer(b) > layer(a))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE, "manifold_lab")


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None


def test_no_import_points_up(graph):
    assert upward(graph) == []


def test_the_graph_sees_the_packages_and_function_level_imports(graph):
    # the four packages of the split exist, and an import inside a function is an edge
    # (execution.run_task imports the runner inside RunTask._run only)
    for package in ("spec", "execution", "reporting", "reproduction"):
        assert f"manifold_lab.{package}" in graph
    assert "manifold_lab.execution.runner" in graph["manifold_lab.execution.run_task"]
    assert "manifold_lab.reporting.aggregate" in graph["manifold_lab.reproduction.records"]
    assert not any(m.startswith("manifold_lab.experiment") for m in graph)


def test_the_checks_can_fail(tmp_path):
    # a constructed package: a -> b at module level, b -> a inside a function, c -> b relatively
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg import b\n")
    (root / "b.py").write_text("def f():\n    import pkg.a\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "c.py").write_text("from ..b import f\nfrom . import d\n")
    (root / "sub" / "d.py").write_text("import os\n")
    tiny = import_graph(root, "pkg")
    assert tiny == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.sub": set(),
                    "pkg.sub.c": {"pkg.b", "pkg.sub.d"}, "pkg.sub.d": set()}
    assert find_cycle(tiny) == ["pkg.a", "pkg.b", "pkg.a"]
    (root / "b.py").write_text("def f():\n    pass\n")
    assert find_cycle(import_graph(root, "pkg")) is None
    # a longer cycle, and the layer rule on names of this package
    assert find_cycle({"w": {"x"}, "x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert upward({"manifold_lab.kinds.toy": {"manifold_lab.reporting.report", "manifold_lab.stats"}}) == [
        "manifold_lab.kinds.toy (kinds) -> manifold_lab.reporting.report (reporting)"]
    assert upward({"manifold_lab.reporting.report": {"manifold_lab.spec.sweep"}}) == []
