"""The whole program per stack: resource counts, parenting, outputs, secrets, the entry point."""

from __future__ import annotations

import asyncio
import runpy
import subprocess
import sys

import pulumi
import pytest
from pulumi.runtime import mocks as pmocks
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from infra.components.stack import UnsupportedTarget, platform_class
from infra.spec import REPO_ROOT, load_spec
from testing.pulumi_mocks import (
    RecordingMocks,
    Unresolved,
    _Monitor,
    is_secret,
    resolve,
)

# What `pulumi up` creates, by type, for the committed stack files. Each number follows from
# the spec (see the comments); a change to the program or the stack file that changes the
# resource set must change this table in the same commit.
EXPECTED = {
    "staging": {
        # 2 postgres + 2 redis + 3 sentinels + 2x2 backend + 2x1 worker + 1 migrate (one version)
        # + nginx + prometheus, alertmanager, 4 exporters, grafana, jaeger + backup job
        "docker:index/container:Container": 24,
        # built here (infra/images.py): 9 service images from Debian packages + the app (both slots
        # run 0.1.0: one content tag, built once); Grafana and Jaeger are pulled upstream images
        "docker:index/image:Image": 10,
        "docker:index/remoteImage:RemoteImage": 2,
        "docker:index/network:Network": 3,      # front, back, data
        # data: 2 postgres + 2 redis + 3 sentinel + prometheus + backup; shared: the backup
        # repository, node-exporter's textfile directory; conf: every container with rendered or
        # secret files (2 pg, 2 redis, 3 sentinel, nginx, prometheus, alertmanager, grafana, the
        # postgres exporter, and the database's certificate in 4 backends, 2 workers, the migration)
        "docker:index/volume:Volume": 32,
        "random:index/randomPassword:RandomPassword": 15,  # SECRET_KEYS (infra/components/secrets.py)
        "tls:index/privateKey:PrivateKey": 2,    # self-signed staging TLS (no recon:tls_cert set), PostgreSQL's
        "tls:index/selfSignedCert:SelfSignedCert": 2,
    },
    "production": {
        "kubernetes:apps/v1:Deployment": 9,     # backend x2 slots, worker x2, alertmanager, 2 exporters, grafana, jaeger
        "kubernetes:apps/v1:StatefulSet": 6,    # postgres primary/replica, redis primary/replica, sentinel, prometheus
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": 2,  # one per slot
        "kubernetes:batch/v1:CronJob": 1,       # logical backup
        "kubernetes:batch/v1:Job": 1,           # migrations for the one version both slots run
        "kubernetes:core/v1:ConfigMap": 10,
        "kubernetes:core/v1:Namespace": 1,
        "kubernetes:core/v1:PersistentVolumeClaim": 1,  # backup volume (StatefulSets use claim templates)
        "kubernetes:core/v1:Secret": 1,
        "kubernetes:core/v1:Service": 17,       # 6 headless + 9 ClusterIP + active + preview
        "kubernetes:core/v1:ServiceAccount": 1,  # prometheus (pod discovery)
        "kubernetes:networking.k8s.io/v1:Ingress": 2,   # stable + canary
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": 19,  # default-deny, allow-dns, one per workload (17)
        "kubernetes:policy/v1:PodDisruptionBudget": 5,  # postgres(2), redis(3), sentinel(3), backend(6), worker(4)
        "kubernetes:rbac.authorization.k8s.io/v1:Role": 1,
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 1,
        "random:index/randomPassword:RandomPassword": 15,
    },
}

COMPONENTS = ["Database", "Cache", "Backend", "Proxy", "Observability", "Backups"]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_resource_count_per_type(stack, request):
    run = request.getfixturevalue(stack)
    assert run.counts() == EXPECTED[stack]


def test_every_concern_is_one_component(any_stack):
    types = [r.type for r in any_stack.records if not r.custom]
    for name in COMPONENTS:
        assert types.count(f"recon:components:{name}") == 1, name


def test_every_resource_has_a_component_parent(any_stack):
    """No orphan: everything but the generated secrets hangs under a component."""
    for r in any_stack.records:
        if r.type == "random:index/randomPassword:RandomPassword":
            assert r.parent.endswith("::" + any_stack.spec.name) or "pulumi:pulumi:Stack" in r.parent
            continue
        if r.type.startswith("recon:"):
            continue
        assert "$recon:" in r.parent, f"{r.type} {r.name} has parent {r.parent!r}"


def test_program_modules_declare_nothing_on_import():
    """Outside the engine, declaring a resource raises; importing every module must not."""
    code = ("import infra.components.stack, infra.docker.platform, infra.kubernetes.platform, "
            "infra.policy.rules, testing.stack_summary; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_unknown_target_is_named():
    with pytest.raises(UnsupportedTarget, match="'local' is not deployed by Pulumi"):
        platform_class("local")


# -- outputs -------------------------------------------------------------------------------

def test_outputs_resolve_and_dsns_are_secret(any_stack):
    outputs = any_stack.stack.outputs
    inv = outputs["inventory"]
    assert resolve(outputs["active_slot"]) == any_stack.spec.backend.active_slot
    pg = any_stack.spec.postgres
    for key, role in (("dsn", pg.user), ("replica_dsn", pg.reader_user)):
        dsn = inv["postgres"][key]
        assert is_secret(dsn), key
        assert resolve(dsn).startswith(f"postgresql://{role}:mocksecret"), key
    assert is_secret(inv["redis"]["password"]) and is_secret(inv["redis"]["sentinel_password"])
    assert inv["redis"]["username"] == "ops"
    assert resolve(outputs["endpoints"])["public"].startswith("https://")


def test_inventory_names_every_process_and_how_to_reach_it(staging, production):
    s = resolve(staging.stack.outputs["inventory"]["services"])
    assert s["postgres-primary"]["container"] == "recon-staging-postgres-primary"
    assert s["sentinel-3"]["port"] == staging.spec.redis.sentinel.port
    p = resolve(production.stack.outputs["inventory"]["services"])
    assert p["postgres-replica-1"]["pod"] == "postgres-replica-0"
    assert p["postgres-replica-1"]["host"] == "postgres-replica-0.postgres-replica.recon.svc.cluster.local"
    assert p["backend-blue-1"]["selector"] == "app.kubernetes.io/instance=production,recon/workload=backend-blue"
    layout_procs = {"postgres-primary", "postgres-replica-1", "redis-primary", "sentinel-1", "sentinel-3",
                    "prometheus", "alertmanager", "grafana", "jaeger", "postgres-exporter", "redis-exporter"}
    assert layout_procs <= set(s) and layout_procs <= set(p)
    assert "redis-replica-2" in p and "redis-replica-2" not in s  # production: redis.replicas = 2
    assert "nginx" in s and "nginx" not in p  # the Kubernetes edge is the cluster's ingress controller


def test_non_secret_outputs_carry_no_secret(any_stack):
    """Only the values marked secret may hold a secret; the rest is safe to print."""
    outputs = any_stack.stack.outputs
    inv = dict(outputs["inventory"])
    pg, redis = dict(inv.pop("postgres")), dict(inv.pop("redis"))
    pg.pop("dsn"), pg.pop("replica_dsn"), redis.pop("password"), redis.pop("sentinel_password")
    plain = resolve({**outputs, "inventory": {**inv, "postgres": pg, "redis": redis}})
    text = repr(plain)
    for value in any_stack.secret_values:
        assert value not in text


def test_resolve_fails_closed_on_an_output_that_never_resolves():
    loop = _ensure_event_loop()  # the loop Pulumi's runtime awaits on
    never: asyncio.Future = loop.create_future()
    known: asyncio.Future = loop.create_future()
    known.set_result(True)
    out = pulumi.Output(resources=set(), future=never, is_known=known, is_secret=known)
    with pytest.raises(Unresolved):
        resolve(out, timeout=0.2)
    never.set_result(None)  # let the runtime's bookkeeping finish cleanly


# -- the entry point -----------------------------------------------------------------------

def test_main_reads_config_secrets_and_exports_outputs():
    """infra/__main__.py under mocks, as `pulumi up -s staging` runs it, with one secret set."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="recon", stack="staging", preview=False, monitor=_Monitor(mocks))
    pulumi.runtime.set_all_config({"recon:postgres_password": "from-config-0123456789"},
                                  secret_keys=["recon:postgres_password"])
    try:
        _sync_await(pmocks.run_pulumi_func(lambda: runpy.run_path(str(REPO_ROOT / "infra" / "__main__.py"))))
    finally:
        pulumi.runtime.set_all_config({})
    generated = {r.name for r in mocks.records if r.type == "random:index/randomPassword:RandomPassword"}
    assert "postgres-password" not in generated  # the config secret wins
    assert {"replication-password", "redis-password", "grafana-admin-password", "backup-cipher-pass"} <= generated
    pg = next(r for r in mocks.records if r.type == "docker:index/container:Container" and r.name == "postgres-primary")
    assert "RECON_APP_PASSWORD=from-config-0123456789" in pg.props["envs"]
    assert "envs" in pg.secret_paths
    assert load_spec("staging").target == "docker"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_ops_reads_the_inventory_output(stack, request, tmp_path):
    """The contract with ops/: `pulumi stack output --json --show-secrets inventory` is what
    ops.inventory loads; service kinds match the local target's (postgres, redis, sentinel, ...)."""
    import json

    from ops.inventory import load_inventory

    run = request.getfixturevalue(stack)
    spec = load_spec(stack, overrides={"state_dir": str(tmp_path)})
    (tmp_path / "inventory.json").write_text(json.dumps(resolve(run.stack.outputs["inventory"])))
    inv = load_inventory(spec)
    assert sorted(s.name for s in inv.of_kind("postgres")) == ["postgres-primary"] + [
        f"postgres-replica-{i}" for i in range(1, spec.postgres.replicas + 1)]
    assert len(inv.of_kind("sentinel")) == spec.redis.sentinel.count
    assert len(inv.of_kind("redis")) == 1 + spec.redis.replicas
    primary = inv.get("postgres-primary")
    assert primary.port == spec.postgres.port and primary.data_dir == "/var/lib/postgresql/data"
    if stack == "production":
        assert primary.extra["pod"] == "postgres-primary-0" and primary.extra["namespace"] == spec.namespace
    else:
        assert primary.extra["container"] == "recon-staging-postgres-primary"
