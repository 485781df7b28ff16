"""requirements.lock is the one source of versions: it pins every requirement pyproject.toml
names (within its specifier), and this virtualenv holds exactly those versions (the app image's
match is checked in tests/docker)."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#") and "==" in line:
            name, version = line.split("==", 1)
            out[_norm(name)] = version.split()[0]
    return out


def test_every_declared_requirement_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for group in project["optional-dependencies"].values():
        declared += group
    pins = _pins()
    problems = []
    for text in declared:
        req = Requirement(text)
        pin = pins.get(_norm(req.name))
        if pin is None:
            problems.append(f"{req.name}: not in requirements.lock")
        elif pin not in req.specifier:
            problems.append(f"{req.name}: locked {pin}, pyproject asks {req.specifier}")
    assert problems == [], "re-lock (docs/images.md): " + "; ".join(problems)


def test_the_virtualenv_holds_exactly_the_locked_versions():
    installed = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    drift = {name: (pin, installed.get(name)) for name, pin in _pins().items() if installed.get(name) != pin}
    assert drift == {}, "make venv installs requirements.lock; (locked, installed): " + str(drift)
