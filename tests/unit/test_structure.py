"""The architecture, held as tests: layers import one way and nothing imports in a circle.

    infra.services (catalogue, stdlib only)
        ──► infra.spec ──► infra.layout / infra.render / infra.pgbackrest
        ──► targets: infra.local, infra.docker, infra.kubernetes (infra.components)
        ──► ops.inventory / ops.executors ──► ops tasks
    app/      the service: imports none of infra/, ops/, testing/
    testing/  harnesses for tests and benchmarks: imported by nothing shipped

Every import counts, also those inside functions (a lazy import is still a dependency);
only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("app", "infra", "ops", "testing")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _resolve(name: str) -> str | None:
    """The project module ``name`` refers to (a package's submodule or the package itself)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            target = _resolve(n)
            if target and target != module:
                out.add(target)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_the_project():
    # a walker that found nothing would pass every rule below
    assert len(MODULES) > 80
    assert "infra.spec" in GRAPH["infra.layout"]
    assert "infra.services" in GRAPH["infra.spec"]


def test_no_import_cycle_anywhere():
    assert _cycles() == []


def _violations(source: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if m.split(".")[0] == source
                  for t in targets if t.split(".")[0] in forbidden)


@pytest.mark.parametrize("source,forbidden", [
    ("app", ("infra", "ops", "testing")),
    ("infra", ("ops", "app", "testing")),
    ("ops", ("app", "testing")),
], ids=["app-imports-no-infra-ops-testing", "infra-imports-no-ops-app-testing", "ops-imports-no-app-testing"])
def test_layers_import_one_way(source, forbidden):
    assert _violations(source, forbidden) == []


def test_the_catalogue_is_the_bottom_layer():
    """infra.services imports nothing from the project, and only the standard library, so
    ops/system-packages.sh can run it with Debian's python before any virtualenv exists."""
    assert GRAPH["infra.services"] == set()
    tree = ast.parse(MODULES["infra.services"].read_text())
    top = {(a.name if isinstance(n, ast.Import) else n.module).split(".")[0]
           for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
           for a in (n.names if isinstance(n, ast.Import) else [n.names[0]])}
    assert top <= set(sys.stdlib_module_names) | {"__future__"}


def test_ops_uses_no_private_name_of_infra():
    """ops/ reaches the targets through their public methods, never a ``_private`` name."""
    bad = []
    for m in (m for m in MODULES if m.startswith("ops")):
        tree = ast.parse(MODULES[m].read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("infra"):
                bad += [f"{m}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = ast.unparse(node.value)
                if owner in ("t", "tt", "target", "driver.target()", "self.target()"):
                    bad.append(f"{m}:{node.lineno}: {owner}.{node.attr}")
    assert bad == []
