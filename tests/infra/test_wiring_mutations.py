"""The wiring checks catch wiring bugs: each mutation below, planted alone, must make at
least one check report a problem the committed stack does not have.

Two kinds of mutation:

* ``program``: the bug is planted where it would be written (a Workload as a component hands it
  to the platform, a rendered file, the Prometheus adaptation) and the program runs again under
  mocks, so every object that follows from it changes together (~0.5 s each);
* ``objects``: the bug is in one declared object (a NetworkPolicy rule, a Service selector,
  an HPA target, a key of the Secret): that object is changed in a copy of the capture.

Each case names the check expected to catch it; the test fails if the mutation survives every
check, or if the named check is not among those that caught it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from infra.components.model import Port, Workload
from infra.kubernetes import platform as k8s_platform
from infra.kubernetes import prometheus as k8s_prometheus
from infra.kubernetes.layout import KubernetesLayout
from infra.services import PG_PRIMARY
from infra.spec import load_spec
from tests.infra import wiring
from tests.infra.wiring_checks import CHECKS, problems

SPEC = load_spec("production")


@dataclass(frozen=True)
class Mutation:
    name: str
    kills: str
    """The check expected to catch it (a key of wiring_checks.CHECKS)."""
    program: Callable[[pytest.MonkeyPatch], None] | None = None
    objects: Callable[[list[dict]], None] | None = None


# -- planting in the program ----------------------------------------------------------------------

def on_workload(name: str, change: Callable[[Workload], None]) -> Callable[[pytest.MonkeyPatch], None]:
    """Change the Workload ``name`` as a component would have declared it (a copy: components
    share dicts between workloads)."""
    def plant(mp: pytest.MonkeyPatch) -> None:
        original = k8s_platform.KubernetesPlatform.deploy

        def deploy(self, w, parent):
            if w.name == name:
                w = dataclasses.replace(w, **{f.name: copy.copy(getattr(w, f.name)) for f in dataclasses.fields(w)
                                              if isinstance(getattr(w, f.name), (dict, list))})
                change(w)
            return original(self, w, parent)

        mp.setattr(k8s_platform.KubernetesPlatform, "deploy", deploy)
    return plant


def set_env(w: Workload, key: str, value: str) -> None:
    w.env[key] = value


def rename_env(w: Workload, old: str, new: str) -> None:
    w.env[new] = w.env.pop(old)


def replace_in_file(w: Workload, path_end: str, old: str, new: str) -> None:
    w.files = [dataclasses.replace(f, content=f.content.replace(old, new)) if f.path.endswith(path_end) else f
               for f in w.files]
    assert any(f.path.endswith(path_end) and new in f.content for f in w.files), (path_end, old)


def drop_peer(w: Workload, source: str) -> None:
    w.peers = [e for e in w.peers if e.source != source]


def move_port(w: Workload, name: str, by: int) -> None:
    w.ports = [Port(p.name, p.number + by, p.published, p.host_ip) if p.name == name else p for p in w.ports]


def drop_member_file(w: Workload, member: str) -> None:
    w.member_files = {m: files for m, files in w.member_files.items() if m != member}


def move_secret_file(w: Workload, key: str) -> None:
    path = next(p for p, k in w.secret_files.items() if k == key)
    w.secret_files = {**{p: k for p, k in w.secret_files.items() if k != key},
                      path.rsplit("/", 1)[0] + "/elsewhere/" + key: key}


def pod_discovery_port(mp: pytest.MonkeyPatch) -> None:
    original = k8s_prometheus._pod_job
    mp.setattr(k8s_prometheus, "_pod_job", lambda name, ns, role, port_name: original(
        name, ns, role, "metric" if port_name == "metrics" else port_name))


# -- planting in one object --------------------------------------------------------------------------

def on_object(kind: str, name: str, change: Callable[[dict], None]) -> Callable[[list[dict]], None]:
    def plant(objects: list[dict]) -> None:
        (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
        change(obj)
    return plant


def drop_object(kind: str, name: str) -> Callable[[list[dict]], None]:
    def plant(objects: list[dict]) -> None:
        objects[:] = [o for o in objects if not (o["kind"] == kind and o["metadata"]["name"] == name)]
    return plant


def main_container(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]["containers"][0]


def drop_ingress_from(role: str) -> Callable[[dict], None]:
    def change(policy: dict) -> None:
        rules = policy["spec"]["ingress"]
        policy["spec"]["ingress"] = [r for r in rules if not any(
            p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == role for p in r["from"])]
        assert len(policy["spec"]["ingress"]) < len(rules)
    return change


def rename_key(kind_data: str, old: str, new: str) -> Callable[[dict], None]:
    def change(obj: dict) -> None:
        obj[kind_data][new] = obj[kind_data].pop(old)
    return change


def point_exporter_at_replica(objects: list[dict]) -> None:
    """The exporter's connection (DSN in the Secret, or plain env) names the replica."""
    layout = KubernetesLayout(SPEC)
    primary, replica = layout.host_of(PG_PRIMARY), layout.host_of(layout.postgres_replicas()[0])
    (exporter,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "postgres-exporter"]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    hit = False
    for e in main_container(exporter)["env"]:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref and primary in secret["stringData"].get(ref["key"], ""):
            secret["stringData"][ref["key"]] = secret["stringData"][ref["key"]].replace(primary, replica)
            hit = True
        elif primary in e.get("value", ""):
            e["value"] = e["value"].replace(primary, replica)
            hit = True
    assert hit, "the exporter names no primary"


def rename_database(objects: list[dict]) -> None:
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    db = SPEC.postgres.database
    secret["stringData"]["database_url"] = secret["stringData"]["database_url"].replace(f"/{db}", f"/{db}_old")


def allow_everyone(policy: dict) -> None:
    policy["spec"]["ingress"].append({"from": [{"podSelector": {}}],
                                      "ports": [{"protocol": "TCP", "port": SPEC.postgres.port}]})


def probe_next_port(obj: dict) -> None:
    main_container(obj)["readinessProbe"]["httpGet"]["port"] = SPEC.backend.port + 1


def remount(obj: dict) -> None:
    (m,) = [m for m in main_container(obj)["volumeMounts"] if m["name"] == "config"]
    m["mountPath"] = m["mountPath"] + "-config"


def skip_await(obj: dict) -> None:
    obj["metadata"].setdefault("annotations", {})["pulumi.com/skipAwait"] = "true"


j, b, pg, r = SPEC.jaeger, SPEC.backend, SPEC.postgres, SPEC.redis

MUTATIONS = [
    # the list
    Mutation("grafana-provisioning-path", "files", program=on_workload(
        "grafana", lambda w: set_env(w, "GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"))),
    Mutation("grafana-to-jaeger-otlp-port", "addresses", program=on_workload(
        "grafana", lambda w: replace_in_file(w, "datasources/recon.yml", f":{j.ui_port}", f":{j.otlp_port}"))),
    Mutation("otlp-endpoint-to-ui-port", "addresses", program=on_workload(
        "backend-blue", lambda w: set_env(w, "RECON_OTLP_ENDPOINT",
                                          w.env["RECON_OTLP_ENDPOINT"].replace(str(j.otlp_port), str(j.ui_port))))),
    Mutation("networkpolicy-rule-removed", "network", objects=on_object(
        "NetworkPolicy", "jaeger", drop_ingress_from("worker"))),
    Mutation("peer-edge-removed-in-component", "network", program=on_workload(
        "redis-primary", lambda w: drop_peer(w, "worker"))),
    Mutation("redis-password-dropped", "credentials", program=on_workload(
        "backend-green", lambda w: w.secret_env.pop("RECON_REDIS_PASSWORD"))),
    Mutation("backends-not-after-migrations", "rollout", program=on_workload(
        "worker-blue", lambda w: w.after.clear())),
    Mutation("migrations-not-awaited", "rollout", objects=on_object("Job", "migrate-0-1-0", skip_await)),
    Mutation("exporter-dsn-to-replica", "addresses", objects=point_exporter_at_replica),
    Mutation("app-dsn-wrong-database", "credentials", objects=rename_database),
    Mutation("hpa-targets-missing-deployment", "rollout", objects=on_object(
        "HorizontalPodAutoscaler", "backend-green",
        lambda o: o["spec"]["scaleTargetRef"].update(name="backend-gren"))),
    # ports
    Mutation("component-port-not-the-process-port", "listeners", program=on_workload(
        "postgres-primary", lambda w: move_port(w, "postgres", 1))),
    Mutation("probe-port-wrong", "listeners", objects=on_object("Deployment", "backend-blue", probe_next_port)),
    Mutation("service-target-port-wrong", "services", objects=on_object(
        "Service", "postgres-primary", lambda o: o["spec"]["ports"][0].update(targetPort="pg"))),
    Mutation("replica-told-wrong-primary-port", "addresses", program=on_workload(
        "postgres-replica", lambda w: set_env(w, "RECON_PRIMARY_PORT", str(r.port)))),
    Mutation("ingress-to-missing-service-port", "rollout", objects=on_object(
        "Ingress", "recon", lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]
        .update(name="web"))),
    Mutation("pod-discovery-port-name", "addresses", program=pod_discovery_port),
    # selectors and policies
    Mutation("service-selector-changed", "services", objects=on_object(
        "Service", "sentinel", lambda o: o["spec"]["selector"].update({"recon/workload": "sentinels"}))),
    Mutation("networkpolicy-too-broad", "network", objects=on_object("NetworkPolicy", "postgres-primary",
                                                                      allow_everyone)),
    Mutation("dns-policy-removed", "network", objects=drop_object("NetworkPolicy", "allow-dns")),
    Mutation("prometheus-rbac-unbound", "addresses", objects=on_object(
        "RoleBinding", "prometheus-discovery", lambda o: o["subjects"][0].update(name="default"))),
    # secrets, files, environment
    Mutation("secret-key-renamed", "references", objects=on_object(
        "Secret", "recon-secrets", rename_key("stringData", "redis_password", "redis-password"))),
    Mutation("configmap-key-renamed", "references", objects=on_object(
        "ConfigMap", "prometheus-config", rename_key("data", "prometheus_prometheus.yml", "prometheus.yml"))),
    Mutation("config-mount-path-changed", "files", objects=on_object("StatefulSet", "postgres-replica", remount)),
    Mutation("pgpass-delivered-elsewhere", "files", program=on_workload(
        "postgres-replica", lambda w: move_secret_file(w, "pgpass"))),
    Mutation("redis-acl-file-delivered-elsewhere", "files", program=on_workload(
        "redis-replica", lambda w: move_secret_file(w, "redis_acl"))),
    Mutation("redis-exporter-given-the-apps-password", "credentials", program=on_workload(
        "redis-exporter", lambda w: w.secret_files.update(
            {next(p for p, k in w.secret_files.items() if k == "redis_exporter_json"): "redis_password"}))),
    Mutation("sentinel-without-its-own-password", "credentials", program=on_workload(
        "sentinel", lambda w: w.secret_env.pop("SENTINEL_PASSWORD"))),
    Mutation("member-config-missing", "files", program=on_workload(
        "redis-replica", lambda w: drop_member_file(w, w.members[-1]))),
    Mutation("app-env-key-misspelt", "environment", program=on_workload(
        "worker-green", lambda w: rename_env(w, "RECON_REDIS_SENTINELS", "RECON_REDIS_SENTINEL"))),
]


@pytest.fixture(scope="module")
def committed() -> dict[str, list[str]]:
    return problems(wiring.baseline())


def mutated(m: Mutation) -> wiring.Capture:
    if m.objects:
        cap = wiring.baseline().copy()
        m.objects(cap.objects)
        return cap
    with pytest.MonkeyPatch.context() as mp:
        m.program(mp)
        return wiring.capture(SPEC)


@pytest.mark.parametrize("m", MUTATIONS, ids=lambda m: m.name)
def test_mutation_is_caught(m: Mutation, committed):
    found = problems(mutated(m))
    new = {check: [p for p in problems if p not in committed[check]] for check, problems in found.items()}
    killers = sorted(check for check, problems in new.items() if problems)
    assert killers, f"mutation {m.name} survived every wiring check"
    assert m.kills in killers, f"{m.name}: expected {m.kills} to catch it; caught by {killers}: {new}"


def test_at_least_fifteen_mutations_with_unique_names():
    assert len(MUTATIONS) >= 15
    assert len({m.name for m in MUTATIONS}) == len(MUTATIONS)
    assert {m.kills for m in MUTATIONS} <= set(CHECKS)
