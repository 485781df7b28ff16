"""Hardening policy: both stacks comply, and each rule catches a planted violation.

The rules are the functions in infra/policy/rules.py; the CrossGuard pack wraps the same
functions, which the last tests prove by loading the pack with a stand-in PolicyPack.
"""

from __future__ import annotations

import copy
import runpy
import sys
import types

import pytest

from infra.policy import rules
from infra.policy.rules import Declared, check
from infra.spec import REPO_ROOT


def test_stack_complies(any_stack):
    violations = check(any_stack.declared(), any_stack.secret_values)
    assert violations == [], "\n".join(map(str, violations))


def _mutated(run, type_, name, mutate) -> list[Declared]:
    out = []
    hit = False
    for d in run.declared():
        if d.type == type_ and d.name == name:
            props = copy.deepcopy(d.props)
            mutate(props)
            d = Declared(d.type, d.name, props, d.secret_paths)
            hit = True
        out.append(d)
    assert hit, f"no {type_} {name}"
    return out


def _pod(props):
    return props["spec"]["template"]["spec"]


STS, DEPLOY = "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:Deployment"
CONTAINER = "docker:index/container:Container"

PLANTED_K8S = {
    "k8s-pod-security": (STS, "postgres-primary",
                         lambda p: _pod(p)["containers"][0]["securityContext"]["capabilities"].update(drop=[])),
    "k8s-pod-security/escalation": (DEPLOY, "backend-blue",
                                    lambda p: _pod(p)["containers"][0]["securityContext"].update(
                                        allowPrivilegeEscalation=True)),
    "k8s-pod-security/root": (DEPLOY, "grafana", lambda p: _pod(p)["securityContext"].update(runAsNonRoot=False)),
    "k8s-pod-security/hostpath": (DEPLOY, "jaeger", lambda p: _pod(p)["volumes"].append(
        {"name": "host", "hostPath": {"path": "/"}})),
    "k8s-resources": (DEPLOY, "alertmanager", lambda p: _pod(p)["containers"][0]["resources"].pop("limits")),
    "k8s-probes": (STS, "sentinel", lambda p: _pod(p)["containers"][0].pop("readinessProbe")),
    "k8s-image-pinned": (DEPLOY, "jaeger", lambda p: _pod(p)["containers"][0].update(image="jaegertracing/all-in-one")),
    "k8s-secret-env": (DEPLOY, "backend-green", lambda p: _pod(p)["containers"][0]["env"].append(
        {"name": "RECON_REDIS_PASSWORD", "value": "hunter2hunter2"})),
    "k8s-network-policy": ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny",
                           lambda p: p["spec"].update(policyTypes=["Ingress"])),
    "k8s-pdb": ("kubernetes:policy/v1:PodDisruptionBudget", "redis",
                lambda p: p["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "prometheus"})),
}

PLANTED_DOCKER = {
    "docker-hardening": (CONTAINER, "backend-blue-1", lambda p: p.update(readOnly=False)),
    "docker-hardening/root": (CONTAINER, "redis-primary", lambda p: p.update(user="0:0")),
    "docker-hardening/caps": (CONTAINER, "nginx", lambda p: p["capabilities"].update(drops=[])),
    "docker-healthcheck": (CONTAINER, "prometheus", lambda p: p.pop("healthcheck")),
    "docker-published-ports": (CONTAINER, "postgres-primary",
                               lambda p: p.update(ports=[{"internal": 5432, "external": 5432}])),
    "docker-published-ports/ui": (CONTAINER, "grafana", lambda p: p["ports"][0].update(ip="0.0.0.0")),
    "docker-internal-tiers": ("docker:index/network:Network", "data", lambda p: p.update(internal=False)),
}


@pytest.mark.parametrize("case", sorted(PLANTED_K8S))
def test_planted_kubernetes_violation_is_caught(production, case):
    type_, name, mutate = PLANTED_K8S[case]
    violations = check(_mutated(production, type_, name, mutate), production.secret_values)
    assert violations and {v.rule for v in violations} == {case.split("/")[0]}, violations


@pytest.mark.parametrize("case", sorted(PLANTED_DOCKER))
def test_planted_docker_violation_is_caught(staging, case):
    type_, name, mutate = PLANTED_DOCKER[case]
    violations = check(_mutated(staging, type_, name, mutate), staging.secret_values)
    assert violations and {v.rule for v in violations} == {case.split("/")[0]}, violations


def test_missing_pdb_for_a_multi_pod_role_is_caught(production):
    declared = [d for d in production.declared()
                if not (d.type == "kubernetes:policy/v1:PodDisruptionBudget" and d.name == "backend")]
    assert [str(v) for v in rules.k8s_pdb(declared)] == \
        ["[k8s-pdb] role backend: 6 pods and no PodDisruptionBudget"]


def test_secret_copied_into_a_configmap_is_caught(production):
    leaked = production.secret_values[0]
    declared = _mutated(production, "kubernetes:core/v1:ConfigMap", "alertmanager-config",
                        lambda p: p["data"].update(leak=f"password: {leaked}"))
    violations = check(declared, production.secret_values)
    assert [(v.rule, v.resource) for v in violations] == [("no-plaintext-secret", "ConfigMap alertmanager-config")]


def test_secret_in_a_plain_docker_input_is_caught(staging):
    leaked = staging.secret_values[0]
    declared = []
    for d in staging.declared():
        if d.type == CONTAINER and d.name == "backend-blue-1":
            d = Declared(d.type, d.name, {**d.props, "hostname": leaked}, d.secret_paths)
        declared.append(d)
    assert [v.rule for v in check(declared, staging.secret_values)] == ["no-plaintext-secret"]


def test_secret_env_not_marked_secret_is_caught(staging):
    """The same env var, but the program forgot Output.secret: the path is not a secret path."""
    declared = []
    for d in staging.declared():
        if d.type == CONTAINER and d.name == "postgres-primary":
            d = Declared(d.type, d.name, d.props, frozenset(p for p in d.secret_paths if p != "envs"))
        declared.append(d)
    violations = check(declared, staging.secret_values)
    assert violations and {(v.rule, v.resource) for v in violations} == {("no-plaintext-secret",
                                                                           "Container postgres-primary")}


# -- the CrossGuard pack wraps the same rules ------------------------------------------------------

class _Args:
    def __init__(self, d: Declared):
        self.resource_type, self.name, self.props = d.type, d.name, d.props


@pytest.fixture(scope="module")
def pack(monkeypatch_module):
    captured = {}
    fake = types.ModuleType("pulumi_policy")

    class PolicyPack:
        def __init__(self, name, enforcement_level, policies):
            captured.update(name=name, level=enforcement_level, policies=policies)

    class _Policy:
        def __init__(self, name, description, validate, **kw):
            self.name, self.description, self.validate = name, description, validate

    fake.PolicyPack = PolicyPack
    fake.EnforcementLevel = types.SimpleNamespace(MANDATORY="mandatory")
    fake.ResourceValidationPolicy = fake.StackValidationPolicy = _Policy
    fake.ReportViolation = fake.ResourceValidationArgs = fake.StackValidationArgs = object
    monkeypatch_module.setitem(sys.modules, "pulumi_policy", fake)
    runpy.run_path(str(REPO_ROOT / "infra" / "policy" / "__main__.py"))
    return captured


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_pack_has_every_rule_mandatory(pack):
    names = {p.name for p in pack["policies"]}
    assert names == set(rules.RESOURCE_RULES) | set(rules.stack_rules())
    assert pack["level"] == "mandatory"


def test_pack_reports_a_planted_violation(pack, staging):
    policy = next(p for p in pack["policies"] if p.name == "docker-published-ports")
    bad = next(d for d in _mutated(staging, CONTAINER, "redis-primary",
                                   lambda p: p.update(ports=[{"internal": 6379, "external": 6379}]))
               if d.type == CONTAINER and d.name == "redis-primary")
    reports: list[str] = []
    policy.validate(_Args(bad), reports.append)
    assert reports == ["[docker-published-ports] Container redis-primary: data service 'redis' "
                       "publishes port 6379 to the host"]
    good = staging.get(CONTAINER, "redis-primary").declared()
    reports.clear()
    policy.validate(_Args(good), reports.append)
    assert reports == []


def test_pack_stack_policy_sees_all_resources(pack, production):
    policy = next(p for p in pack["policies"] if p.name == "k8s-network-policy")
    declared = [d for d in production.declared() if d.name != "default-deny"]
    reports: list[str] = []
    policy.validate(types.SimpleNamespace(resources=[_Args(d) for d in declared]), reports.append)
    assert len(reports) == 1 and "no default-deny" in reports[0]
