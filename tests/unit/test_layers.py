"""The architecture, enforced: layers point one way, core stages follow the data flow, no cycles.

Layers, outermost first (``docs/architecture.md``):

3. ``churn.cli``
2. ``pipelines``, ``components``, ``serving``, ``monitoring``
1. the core ``churn`` package, whose stages follow the data flow:
   ``data`` -> ``features`` -> ``dataset`` -> ``model`` -> ``evaluation`` -> ``release``,
   on top of ``settings``, ``errors`` and ``io``.

A module may import its own layer or lower ones, and a core stage its own or earlier ones.
Every import counts, also one inside a function: it is a dependency all the same. ``make
layers`` (part of ``make lint`` and so of CI) runs this file alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("churn", "pipelines", "components", "serving", "monitoring")
OUTER = ("pipelines", "components", "serving", "monitoring")
STAGES = ("data", "features", "dataset", "model", "evaluation", "release")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Every project module and the project modules it imports (anywhere in its body)."""
    files = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    modules = {module_name(root, p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from pkg import mod` imports pkg.mod when that is a module.
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in modules and c != name)
        graph[name] = targets
    return graph


def layer(module: str) -> int:
    if module == "churn.cli" or module.startswith("churn.cli."):
        return 3
    if module.split(".")[0] in OUTER:
        return 2
    return 1


def stage(module: str) -> int:
    """0 for the shared base (settings, errors, io, the package), else 1 + the stage index."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in STAGES:
        return 1 + STAGES.index(parts[1])
    return 0


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer(target) > layer(source):
                found.append(
                    f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
                )
            elif layer(source) == layer(target) == 1 and stage(target) > stage(source):
                found.append(f"{source} imports a later stage: {target}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_layers_point_one_way_and_stages_follow_the_data_flow() -> None:
    assert violations(import_graph(ROOT)) == []


def test_no_module_imports_itself_back_through_a_cycle() -> None:
    assert cycles(import_graph(ROOT)) == []


def test_every_core_module_belongs_to_a_stage_or_the_shared_base() -> None:
    graph = import_graph(ROOT)
    base = {"churn", "churn.settings", "churn.errors"}
    loose = [
        m
        for m in graph
        if layer(m) == 1 and stage(m) == 0 and m not in base and not m.startswith("churn.io")
    ]
    assert loose == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for pkg in (*PACKAGES, "churn/data", "churn/release", "churn/cli"):
        (tmp_path / pkg).mkdir(parents=True, exist_ok=True)
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "churn/data/contract.py").write_text("from churn.errors import X\n")
    (tmp_path / "churn/errors.py").write_text("")
    (tmp_path / "pipelines/local.py").write_text("import churn.data.contract\n")
    return tmp_path


def test_the_checker_catches_a_core_module_that_imports_an_outer_layer(tree: Path) -> None:
    assert violations(import_graph(tree)) == []
    (tree / "churn/release/deploy.py").write_text("def f():\n    from pipelines.local import run\n")
    assert violations(import_graph(tree)) == [
        "churn.release.deploy (layer 1) imports pipelines.local (layer 2)"
    ]


def test_the_checker_catches_an_earlier_stage_importing_a_later_one(tree: Path) -> None:
    (tree / "churn/release/gate.py").write_text("")
    (tree / "churn/data/contract.py").write_text("from churn.release import gate\n")
    assert violations(import_graph(tree)) == [
        "churn.data.contract imports a later stage: churn.release",
        "churn.data.contract imports a later stage: churn.release.gate",
    ]


def test_the_checker_catches_a_cycle(tree: Path) -> None:
    (tree / "components/a.py").write_text("import components.b\n")
    (tree / "components/b.py").write_text("from components import a\n")
    assert cycles(import_graph(tree)) == [["components.a", "components.b"]]
