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
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    files = [f for f in files if f != "requirements.lock" and (ROOT / f).is_file()]
    res = subprocess.run([_tool("detect-secrets-hook"), "--baseline", ".secrets.baseline", *files], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-1000:]
