"""Fixtures for tests/infra: the program run under Pulumi's mock runtime, once per stack.

Each run declares the whole stack from a spec and records every resource
(testing/pulumi_mocks.py). Runs are session-scoped: the program takes a few seconds per
stack on these machines, and the resources do not change between tests.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.spec import REPO_ROOT, load_spec, read_stack_config, stack_file
from testing.pulumi_mocks import Run, run

K8S_PREFIX = "kubernetes:"


def spec_with(stack: str, **changes):
    """The stack's spec with nested keys changed: ``spec_with("production", backend={"canary_weight": 10})``."""
    data = read_stack_config(stack_file(stack))
    merged = copy.deepcopy(data)

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = v

    merge(merged, changes)
    return load_spec(stack, overrides={k: merged[k] for k in changes})


@pytest.fixture(scope="session")
def staging() -> Run:
    return run(load_spec("staging"))


@pytest.fixture(scope="session")
def production() -> Run:
    return run(load_spec("production"))


@pytest.fixture(scope="session", params=["staging", "production"])
def any_stack(request) -> Run:
    return request.getfixturevalue(request.param)


def k8s_objects(r: Run) -> list[dict]:
    """Every Kubernetes object of a run, as the manifest the provider would send."""
    out = []
    for rec in r.records:
        if rec.type.startswith(K8S_PREFIX) and rec.custom:
            obj = dict(rec.props)
            group_version, kind = rec.type[len(K8S_PREFIX):].rsplit(":", 1)
            group, version = group_version.split("/")
            obj.setdefault("apiVersion", version if group == "core" else f"{group}/{version}")
            obj.setdefault("kind", kind)
            out.append(obj)
    return out


@pytest.fixture(scope="session")
def manifest_dir(production: Run, tmp_path_factory) -> Path:
    """All production objects as YAML files, plus the Dockerfile: what checkov scans."""
    root = tmp_path_factory.mktemp("manifests")
    for obj in k8s_objects(production):
        name = f"{obj['kind']}-{obj['metadata']['name']}.yaml".lower()
        (root / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    shutil.copy(REPO_ROOT / "Dockerfile", root / "Dockerfile")
    return root


CHECKOV_CANDIDATES = (REPO_ROOT / ".venv" / "checkov" / "bin" / "checkov",
                      Path(sys.executable).parent / "checkov")


def find_tool(name: str, *candidates: Path) -> str | None:
    """``$<NAME>_BIN``, then PATH, then the given paths."""
    for c in (os.environ.get(name.upper().replace("-", "_") + "_BIN"), shutil.which(name), *candidates):
        if c and Path(c).exists():
            return str(c)
    return None


@pytest.fixture(scope="session", autouse=True)
def checkov_scan(request):
    """checkov over the manifests, started at the beginning of the session in the background.

    checkov takes ~30 s here, nearly all of it importing itself; it runs on the second core
    while the other tests run, and tests/infra/test_scanners.py collects its report. Started
    only when a collected test asks for it.
    """
    if not any("checkov_scan" in getattr(item, "fixturenames", ()) and "checkov" in item.name
               for item in request.session.items):
        yield None
        return
    exe = find_tool("checkov", *CHECKOV_CANDIDATES)
    if exe is None:
        yield None
        return
    manifests = request.getfixturevalue("manifest_dir")
    proc = subprocess.Popen(
        [exe, "--config-file", str(REPO_ROOT / ".checkov.yaml"), "--directory", str(manifests), "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=manifests,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
