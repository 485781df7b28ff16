"""No target re-declares a number the spec holds (DESIGN.md, "One spec, three targets").

The ports are the numbers most tempting to hard-code. This test reads the source of the
components and both platforms and fails on any integer literal equal to a port of either
committed stack, so a port can only reach a resource through the spec or the layout.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra.spec import REPO_ROOT, load_spec

SOURCES = sorted([*(REPO_ROOT / "infra" / "components").glob("*.py"),
                  *(REPO_ROOT / "infra" / "docker").glob("*.py"),
                  *(REPO_ROOT / "infra" / "kubernetes").glob("*.py"), REPO_ROOT / "infra" / "__main__.py"])


def spec_ports() -> set[int]:
    ports: set[int] = set()

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, int) and not isinstance(value, bool) and "port" in key:
            ports.add(value)

    for stack in ("staging", "production"):
        walk(load_spec(stack).model_dump())
    return ports


def int_literals(path: Path) -> list[tuple[int, int]]:
    tree = ast.parse(path.read_text())
    return [(node.value, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and type(node.value) is int]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_no_spec_port_is_hard_coded(path):
    ports = spec_ports()
    assert {5432, 6379, 26379, 8000} <= ports  # the scan looks for the right numbers
    found = [(value, line) for value, line in int_literals(path) if value in ports]
    assert found == [], f"{path.name}: port literals {found} (read them from the spec or the layout)"
