"""Static analysis as tests (#13): bandit finds no medium or high issue that is not explained
(pyproject's [tool.bandit] skips, each with its reason; inline ``# nosec BXXX`` with its own),
and detect-secrets finds no secret that is not in the audited baseline (.secrets.baseline:
names of secrets and test fixtures, each marked not a secret)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        msg = f"{name} is not installed (make venv installs requirements.lock)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def test_bandit_finds_nothing_unexplained():
    res = subprocess.run([_tool("bandit"), "-q", "-c", "pyproject.toml", "-r", "app", "infra", "ops", "-ll",
                          "-f", "json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    found = json.loads(res.stdout)["results"]
    assert [f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in found] == []


def test_no_secret_outside_the_audited_baseline():
    """A fresh scan of the tracked files (read-only: the hook would rewrite the baseline's line
    numbers in place) finds nothing the audited baseline does not hold as not-a-secret."""
    res = subprocess.run([_tool("detect-secrets"), "scan", "--exclude-files", r"^(requirements\.lock|\.secrets\.baseline)$"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    found = json.loads(res.stdout)["results"]
    audited = json.loads((ROOT / ".secrets.baseline").read_text())["results"]
    allowed = {(f, s["hashed_secret"]) for f, secrets in audited.items() for s in secrets if s.get("is_secret") is False}
    new = [f"{f}:{s['line_number']} {s['type']}" for f, secrets in found.items() for s in secrets
           if (f, s["hashed_secret"]) not in allowed]
    assert new == [], "not in .secrets.baseline (audit with `detect-secrets audit .secrets.baseline`): " + ", ".join(new)
