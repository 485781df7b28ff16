"""Every `fab ...` task a runbook names exists in the fab collection (all runbooks/*.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ops.tasks import ns

RUNBOOKS = sorted((Path(__file__).resolve().parents[2] / "runbooks").glob("*.md"))
FAB = re.compile(r"`fab ([a-z][a-z0-9_.-]*)")
FENCED_FAB = re.compile(r"^\s*fab ([a-z][a-z0-9_.-]*)", re.M)


def task_names() -> set[str]:
    return set(ns.task_names) | {alias for aliases in ns.task_names.values() for alias in aliases}


def named_tasks(path: Path) -> set[str]:
    text = path.read_text()
    return set(FAB.findall(text)) | set(FENCED_FAB.findall(text))


def test_there_are_runbooks():
    assert any(p.name == "disaster-recovery.md" for p in RUNBOOKS)


@pytest.mark.parametrize("path", RUNBOOKS, ids=[p.name for p in RUNBOOKS])
def test_every_task_a_runbook_names_exists(path):
    named = named_tasks(path)
    assert named, f"{path.name} names no fab task"
    missing = sorted(named - task_names())
    assert not missing, f"{path.name} names tasks that do not exist: {missing}; known: {sorted(task_names())}"


def test_the_checker_catches_a_missing_task(tmp_path):
    p = tmp_path / "x.md"
    p.write_text("run `fab restore --yes` then\n```sh\nfab no-such-task\n```\n")
    assert named_tasks(p) == {"restore", "no-such-task"}
    assert "no-such-task" not in task_names()
