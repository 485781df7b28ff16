"""Offline stand-ins for a cluster and a registry scan.

* every production Kubernetes object validates against the official JSON schemas
  (kubernetes-validate ships them), strict: an unknown field fails;
* every PromQL expression in the dashboards and the rendered rules parses (promtool), the
  Kubernetes-adapted prometheus.yml and the rendered alertmanager.yml pass the real checkers.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from infra.components.observability import dashboard_files
from tests.infra.conftest import find_tool, k8s_objects

# The oldest and the newest Kubernetes minor this program is checked against.
K8S_VERSIONS = ["1.29.0", "1.37.0"]
VENV_BIN = Path(sys.executable).parent


def _tool(name: str, *candidates: Path) -> str:
    return find_tool(name, *candidates) or pytest.fail(
        f"{name} is not installed; see docs/pulumi.md (Verification) for how to install it")


def _objects(production):
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in k8s_objects(production)}


def test_every_kubernetes_object_is_dumped(production):
    objs = _objects(production)
    assert len(objs) == sum(n for t, n in production.counts().items() if t.startswith("kubernetes:"))


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas():
    """kubernetes-validate re-reads the 2 MB definitions file per object; read each file once."""
    import kubernetes_validate.utils as kv_utils

    original = kv_utils.schema_contents
    kv_utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield
    kv_utils.schema_contents = original


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_objects_match_the_official_schemas(production, version):
    failures = []
    for key, obj in sorted(_objects(production).items()):
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{key}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert failures == []


def test_schema_validation_catches_a_bad_object(production):
    obj = json.loads(json.dumps(_objects(production)["StatefulSet/postgres-primary"]))
    obj["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)
    obj["spec"]["replicas"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSIONS[-1], strict=True)


# -- PromQL and the monitoring configs ---------------------------------------------------------------

def _promtool() -> str:
    return _tool("promtool")


def dashboard_exprs(spec) -> list[tuple[str, str]]:
    out = []
    for name, text in dashboard_files(spec).items():
        for panel in json.loads(text)["panels"]:
            for target in panel["targets"]:
                out.append((f"{name}: {panel['title']}", target["expr"]))
    return out


def test_dashboard_promql_parses(production, tmp_path):
    exprs = dashboard_exprs(production.spec)
    assert len(exprs) >= 60
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_expression(tmp_path):
    path = tmp_path / "bad.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "bad:expr", "expr": "sum(rate(http_requests_total[5m])"}]}]}))
    done = subprocess.run([_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


def test_kubernetes_prometheus_config_and_rules_pass_promtool(production, tmp_path):
    """promtool checks the adapted config and its rules.

    Debian's promtool is built without the Kubernetes service discovery plugin (upstream
    prom/prometheus, the image the cluster runs, has it), so the pod-discovery blocks are
    checked for shape here and swapped for an empty static config before promtool sees the
    rest of the file.
    """
    data = production.get("kubernetes:core/v1:ConfigMap", "prometheus-config").props["data"]
    rules = tmp_path / "recon.rules.yml"
    rules.write_text(data["prometheus_rules_recon.rules.yml"])
    conf = yaml.safe_load(data["prometheus_prometheus.yml"])
    conf["rule_files"] = [str(rules)]
    for job in conf["scrape_configs"]:
        sd = job.pop("kubernetes_sd_configs", None)
        if sd is not None:
            assert sd == [{"role": "pod", "namespaces": {"names": [production.spec.namespace]}}]
            assert {r["action"] for r in job["relabel_configs"] if "action" in r} == {"keep"}
            job["static_configs"] = [{"targets": []}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(conf))
    done = subprocess.run([_promtool(), "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_config_passes_amtool(production, tmp_path):
    data = production.get("kubernetes:core/v1:ConfigMap", "alertmanager-config").props["data"]
    path = tmp_path / "alertmanager.yml"
    path.write_text(data["alertmanager_alertmanager.yml"])
    done = subprocess.run([_tool("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
