"""Each component on each target: what it declares follows from the spec, nothing else."""

from __future__ import annotations

import json

import pytest
import yaml

from infra.components.observability import dashboard_files
from testing.pulumi_mocks import resolve

CONTAINER = "docker:index/container:Container"
STS = "kubernetes:apps/v1:StatefulSet"
DEPLOY = "kubernetes:apps/v1:Deployment"


def children(run, component: str) -> list:
    return [r for r in run.records if r.parent.endswith(f"$recon:components:{component}::{component.lower()}")]


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def docker_env(rec) -> dict[str, str]:
    return dict(e.split("=", 1) for e in rec.props["envs"])


def main_container(rec) -> dict:
    return rec.props["spec"]["template"]["spec"]["containers"][0]


# -- Database --------------------------------------------------------------------------------

def test_database_docker(staging):
    names = sorted(r.name for r in children(staging, "Database") if r.type == CONTAINER)
    assert names == ["postgres-primary"] + [f"postgres-replica-{i}" for i in range(1, staging.spec.postgres.replicas + 1)]
    primary = staging.get(CONTAINER, "postgres-primary")
    assert not primary.props.get("ports"), "a database port is published"
    assert {n["name"] for n in primary.props["networksAdvanced"]} == {"recon-staging-data"}
    replica = staging.get(CONTAINER, "postgres-replica-1")
    files = {u["file"]: u for u in replica.props["uploads"]}
    # delivered where the rendered primary_conninfo's passfile= and the script's PGPASSFILE look
    assert files["/etc/recon/secrets/pgpass-replication"]["permissions"] == "0600"
    conf = files["/etc/recon/postgres/replica-1/postgresql.conf"]["content"]
    assert "passfile=/etc/recon/secrets/pgpass-replication" in conf
    assert docker_env(replica)["RECON_PGPASS"] == "/etc/recon/secrets/pgpass-replication"
    assert "primary_slot_name = 'replica_1'" in files["/etc/recon/postgres/replica-1/postgresql.conf"]["content"]
    assert docker_env(primary)["RECON_REPLICA_SLOTS"] == "replica_1"


def test_database_kubernetes(production):
    pg = production.spec.postgres
    primary, replica = production.get(STS, "postgres-primary"), production.get(STS, "postgres-replica")
    assert primary.props["spec"]["replicas"] == 1 and replica.props["spec"]["replicas"] == pg.replicas
    claim = primary.props["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == f"{pg.storage_gib}Gi"
    c = main_container(primary)
    assert c["resources"]["limits"] == {"cpu": "1000m", "memory": f"{pg.resources.memory_limit_mib}Mi"}
    assert env_of(c)["RECON_APP_PASSWORD"] == {"secretKeyRef": {"name": "recon-secrets", "key": "postgres_password"}}
    assert env_of(c)["RECON_SUPERUSER_PASSWORD"] == {"secretKeyRef": {"name": "recon-secrets",
                                                                       "key": "superuser_password"}}
    # the replica's pgpass is copied by an init container so it can be 0600 and owned by postgres
    init = replica.props["spec"]["template"]["spec"]["initContainers"][0]
    assert "chmod 600 /etc/recon/secrets/pgpass-replication" in init["command"][2]
    assert '/etc/recon/postgres/${RECON_MEMBER#postgres-}/postgresql.conf' in main_container(replica)["command"][2]


# -- Cache -----------------------------------------------------------------------------------

def test_cache_docker(staging):
    r = staging.spec.redis
    sentinels = sorted(x.name for x in children(staging, "Cache") if x.type == CONTAINER and x.name.startswith("sentinel"))
    assert sentinels == [f"sentinel-{i}" for i in range(1, r.sentinel.count + 1)]
    conf = {u["file"]: u["content"] for u in staging.get(CONTAINER, "sentinel-1").props["uploads"]}
    assert f"sentinel monitor {r.sentinel.master_name} redis-primary {r.port} {r.sentinel.quorum}" in \
        conf["/etc/recon/redis/sentinel-1.conf"]
    for rec in children(staging, "Cache"):
        if rec.type == CONTAINER:
            assert not rec.props.get("ports")
            assert all("requirepass" not in u["content"] for u in rec.props.get("uploads", []))


def test_cache_kubernetes(production):
    r = production.spec.redis
    assert production.get(STS, "redis-replica").props["spec"]["replicas"] == r.replicas
    sentinel = production.get(STS, "sentinel")
    assert sentinel.props["spec"]["replicas"] == r.sentinel.count
    script = main_container(sentinel)["command"][2]
    assert f"  {r.sentinel.count - 1}) RECON_MEMBER=sentinel-{r.sentinel.count};" in script
    pdb = production.get("kubernetes:policy/v1:PodDisruptionBudget", "sentinel")
    assert pdb.props["spec"]["maxUnavailable"] == r.sentinel.count - r.sentinel.quorum


# -- Backend ---------------------------------------------------------------------------------

@pytest.mark.parametrize("slot", ["blue", "green"])
def test_backend_docker_slot(staging, slot):
    b = staging.spec.backend
    rec = staging.get(CONTAINER, f"backend-{slot}-1")
    env = docker_env(rec)
    assert env["RECON_SLOT"] == slot and env["RECON_VERSION"] == b.slots[slot].version
    assert env["RECON_REDIS_SENTINELS"].count(":") == staging.spec.redis.sentinel.count
    assert rec.props["memory"] == b.resources.memory_limit_mib and rec.props["cpus"] == str(b.resources.cpu_limit)
    assert rec.props["entrypoints"][:4] == ["python", "-m", "app", "serve"]
    assert not rec.props.get("ports")
    assert len([r for r in staging.of_type(CONTAINER) if r.name.startswith(f"backend-{slot}-")]) == b.replicas


def test_backend_kubernetes(production):
    b = production.spec.backend
    for slot in ("blue", "green"):
        d = production.get(DEPLOY, f"backend-{slot}")
        assert d.props["spec"]["replicas"] == b.replicas
        assert main_container(d)["image"] == b.slots[slot].image
        assert d.props["spec"]["template"]["metadata"]["labels"]["recon/slot"] == slot
        hpa = production.get("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", f"backend-{slot}")
        assert (hpa.props["spec"]["minReplicas"], hpa.props["spec"]["maxReplicas"]) == (b.replicas, b.autoscale_max)
    active = production.get("kubernetes:core/v1:Service", "backend-active")
    preview = production.get("kubernetes:core/v1:Service", "backend-preview")
    assert active.props["spec"]["selector"]["recon/slot"] == b.active_slot
    assert preview.props["spec"]["selector"]["recon/slot"] == b.idle_slot
    job = production.get("kubernetes:batch/v1:Job", "migrate-0-1-0")
    assert main_container(job)["command"] == ["python", "-m", "app", "migrate"]


# -- Proxy -----------------------------------------------------------------------------------

def test_proxy_docker(staging):
    n = staging.spec.nginx
    rec = staging.get(CONTAINER, "nginx")
    assert sorted(p["external"] for p in rec.props["ports"]) == sorted([n.http_port, n.https_port])
    files = {u["file"]: u for u in rec.props["uploads"]}
    assert "split_clients" in files["/etc/recon/nginx/nginx.conf"]["content"]
    assert files["/etc/recon/tls/server.key"]["permissions"] == "0600"
    assert "uploads" in rec.secret_paths  # the TLS key travels as a secret


def test_proxy_kubernetes(production):
    n, b = production.spec.nginx, production.spec.backend
    stable = production.get("kubernetes:networking.k8s.io/v1:Ingress", "recon")
    canary = production.get("kubernetes:networking.k8s.io/v1:Ingress", "recon-canary")
    svc = lambda ing: ing.props["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]  # noqa: E731
    assert (svc(stable), svc(canary)) == ("backend-active", "backend-preview")
    ann = canary.props["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/canary"] == "true"
    assert ann["nginx.ingress.kubernetes.io/canary-weight"] == str(b.canary_weight)
    assert stable.props["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == \
        f"{n.client_max_body_size_mib}m"
    assert stable.props["spec"]["rules"][0]["host"] == n.server_name
    assert not [r for r in production.records if r.name == "nginx" and r.custom]


# -- Observability ---------------------------------------------------------------------------

def test_grafana_is_provisioned_with_three_dashboards(any_stack):
    names = set(dashboard_files(any_stack.spec))
    assert names == {"application.json", "infrastructure.json", "business.json"}
    if any_stack.spec.target == "docker":
        files = {u["file"]: u["content"] for u in any_stack.get(CONTAINER, "grafana").props["uploads"]}
    else:
        cm = any_stack.get("kubernetes:core/v1:ConfigMap", "grafana-config").props["data"]
        files = {f"/etc/recon/grafana/dashboards/{n}": cm[f"grafana_dashboards_{n}"] for n in names} | {
            "/etc/recon/grafana/provisioning/datasources/recon.yml": cm["grafana_provisioning_datasources_recon.yml"]}
    ds = yaml.safe_load(files["/etc/recon/grafana/provisioning/datasources/recon.yml"])["datasources"]
    uids = {d["uid"] for d in ds}
    assert uids == {"prometheus", "jaeger"}
    prom = next(d for d in ds if d["uid"] == "prometheus")
    assert prom["url"].endswith(f":{any_stack.spec.prometheus.port}")
    generated = dashboard_files(any_stack.spec)
    for name in names:
        assert files[f"/etc/recon/grafana/dashboards/{name}"] == generated[name], name
        dash = json.loads(files[f"/etc/recon/grafana/dashboards/{name}"])
        assert dash["panels"], name
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] in uids


def test_prometheus_kubernetes_discovers_pods(production):
    cm = production.get("kubernetes:core/v1:ConfigMap", "prometheus-config").props["data"]
    conf = yaml.safe_load(cm["prometheus_prometheus.yml"])
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert len(jobs) == len(conf["scrape_configs"]), [j["job_name"] for j in conf["scrape_configs"]]
    for job in ("recon-backend", "recon-worker"):  # the template's static targets replaced by pod discovery
        assert jobs[job]["kubernetes_sd_configs"][0]["namespaces"]["names"] == [production.spec.namespace], job
        assert "static_configs" not in jobs[job], job
    assert "node" not in jobs
    sts = production.get(STS, "prometheus")
    assert f"--storage.tsdb.retention.time={production.spec.prometheus.retention_days}d" in main_container(sts)["command"]
    role = production.get("kubernetes:rbac.authorization.k8s.io/v1:Role", "prometheus-discovery")
    assert role.props["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]


# -- Backups ---------------------------------------------------------------------------------

def test_backups_kubernetes(production):
    b = production.spec.backup
    cron = production.get("kubernetes:batch/v1:CronJob", "backup-logical")
    assert cron.props["spec"]["schedule"] == b.schedule_diff
    assert cron.props["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron.props["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert env_of(pod["containers"][0])["RECON_KEEP"] == str(b.retention.diff)
    pvc = production.get("kubernetes:core/v1:PersistentVolumeClaim", "backup-logical-data")
    assert pvc.props["spec"]["resources"]["requests"]["storage"] == f"{production.spec.postgres.storage_gib * 2}Gi"


def test_backups_docker_is_created_not_started(staging):
    rec = staging.get(CONTAINER, "backup-logical")
    assert rec.props["start"] is False and rec.props["mustRun"] is False and rec.props["restart"] == "no"
    schedule = resolve(staging.stack.outputs["inventory"]["backup"])
    assert schedule["runs_in_target"] is False
    assert schedule["full"] == staging.spec.backup.schedule_full


# -- each component alone, on each target -----------------------------------------------------

ALONE = {
    # component -> (what it declares on Docker, on Kubernetes), for the committed stacks
    "Database": ({CONTAINER: 2, "docker:index/volume:Volume": 4},
                 {STS: 2, "kubernetes:core/v1:Service": 2, "kubernetes:core/v1:ConfigMap": 2}),
    "Cache": ({CONTAINER: 5, "docker:index/volume:Volume": 10},
              {STS: 3, "kubernetes:core/v1:Service": 3, "kubernetes:core/v1:ConfigMap": 3}),
    # Docker: prometheus data + conf, alertmanager conf, grafana conf; Kubernetes: no node- or nginx-exporter
    # the postgres and redis exporters read their passwords from 0600 files (a conf volume on Docker)
    "Observability": ({CONTAINER: 8, "docker:index/volume:Volume": 6},
                      {STS: 1, DEPLOY: 5, "kubernetes:core/v1:Service": 6, "kubernetes:core/v1:ConfigMap": 5,
                       "kubernetes:core/v1:ServiceAccount": 1, "kubernetes:rbac.authorization.k8s.io/v1:Role": 1,
                       "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 1}),
    "Backups": ({CONTAINER: 1, "docker:index/volume:Volume": 1},
                {"kubernetes:batch/v1:CronJob": 1, "kubernetes:core/v1:PersistentVolumeClaim": 1}),
}


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("component", sorted(ALONE))
def test_component_declares_alone(component, stack):
    """A component needs only the platform's foundation: constructed alone, it declares its
    own resources, all parented to it, and nothing of the other concerns."""
    import infra.components as components
    from infra.components.stack import prepare
    from infra.spec import load_spec
    from testing.pulumi_mocks import run

    def program(spec):
        platform = prepare(spec)
        return getattr(components, component)(component.lower(), platform)

    result = run(load_spec(stack), program=program)
    mine = [r for r in result.records if r.parent.endswith(f"$recon:components:{component}::{component.lower()}")]
    counts: dict[str, int] = {}
    for r in mine:
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts == ALONE[component][0 if stack == "staging" else 1]
