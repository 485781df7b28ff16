"""The blue/green switch and the canary weight change routing only (issue 6 §2).

Each test runs the program twice under mocks, with one spec key changed, and compares every
declared resource's inputs. Expected differences:

* Kubernetes: ``backend.active_slot`` flips the selectors of backend-active/backend-preview;
  ``backend.canary_weight`` changes the canary Ingress's weight annotation. Nothing else.
* Docker: the rendered nginx.conf (upstream choice, split_clients) and prometheus.yml (which
  slots are scraped, as the template decides) change, so the Nginx and Prometheus containers'
  uploads change. Nothing else, and within nginx.conf only the slot lines.
"""

from __future__ import annotations

import difflib

import pytest

from testing.pulumi_mocks import resolve, run
from tests.infra.conftest import spec_with


def diff(a, b, path=""):
    """Dotted paths where two input trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [path]


def changes(before, after) -> dict[tuple[str, str], list[str]]:
    a = {(r.type, r.name): r.props for r in before.records}
    b = {(r.type, r.name): r.props for r in after.records}
    assert set(a) == set(b), f"resources added/removed: {set(a) ^ set(b)}"
    return {key: d for key in a if (d := diff(a[key], b[key]))}


def upload(rec_props, path):
    return next(u["content"] for u in rec_props["uploads"] if u["file"] == path)


CANARY_BASE = {"backend": {"slots": {"green": {"version": "0.2.0", "image": "registry.example.com/recon-app:0.2.0"}}}}


@pytest.fixture(scope="module")
def k8s_canary_base():
    return run(spec_with("production", **CANARY_BASE))


def test_kubernetes_switch_flips_selectors_only(production):
    after = run(spec_with("production", backend={"active_slot": "green"}))
    assert changes(production, after) == {
        ("kubernetes:core/v1:Service", "backend-active"): ["spec.selector.recon/slot"],
        ("kubernetes:core/v1:Service", "backend-preview"): ["spec.selector.recon/slot"],
    }
    assert after.get("kubernetes:core/v1:Service", "backend-active").props["spec"]["selector"]["recon/slot"] == "green"
    assert resolve(after.stack.outputs["active_slot"]) == "green"


def test_kubernetes_canary_weight_changes_the_canary_ingress_only(k8s_canary_base):
    after = run(spec_with("production", backend={**CANARY_BASE["backend"], "canary_weight": 25}))
    assert changes(k8s_canary_base, after) == {
        ("kubernetes:networking.k8s.io/v1:Ingress", "recon-canary"):
            ["metadata.annotations.nginx.ingress.kubernetes.io/canary-weight"],
    }
    ann = after.get("kubernetes:networking.k8s.io/v1:Ingress", "recon-canary").props["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/canary-weight"] == "25"


def _nginx_diff_lines(before, after) -> list[str]:
    path = "/etc/recon/nginx/nginx.conf"
    a = upload(before.get("docker:index/container:Container", "nginx").props, path).splitlines()
    b = upload(after.get("docker:index/container:Container", "nginx").props, path).splitlines()
    return [line for line in difflib.unified_diff(a, b, lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_docker_switch_changes_nginx_and_prometheus_configs_only(staging):
    after = run(spec_with("staging", backend={"active_slot": "green"}))
    changed = changes(staging, after)
    assert {key for key in changed} == {("docker:index/container:Container", "nginx"),
                                        ("docker:index/container:Container", "prometheus")}
    assert all(p.startswith("uploads[") and p.endswith(".content") for paths in changed.values() for p in paths)
    lines = _nginx_diff_lines(staging, after)
    assert lines and all(("slot" in ln and "#" in ln) or "backend_" in ln or "Active slot" in ln for ln in lines), lines
    assert any(ln.startswith("+") and "* backend_green;" in ln for ln in lines)


def test_docker_canary_weight_changes_the_split_only():
    base = run(spec_with("staging", backend={"slots": {"green": {"version": "0.2.0", "image": "recon-app:0.2.0"}}}))
    after = run(spec_with("staging", backend={"slots": {"green": {"version": "0.2.0", "image": "recon-app:0.2.0"}},
                                              "canary_weight": 10}))
    changed = changes(base, after)
    assert set(changed) == {("docker:index/container:Container", "nginx"),
                            ("docker:index/container:Container", "prometheus")}
    lines = _nginx_diff_lines(base, after)
    assert "+        10% backend_green;" in lines
