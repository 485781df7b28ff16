"""testinfra checks of the running local stack, from outside, as an operator would check it."""

from __future__ import annotations

import os
import time

import psycopg
import pytest
import redis
import requests

from infra.local.bootstrap import superuser_conn

pytestmark = pytest.mark.stack


def pytest_generate_tests(metafunc):
    if "proc_name" in metafunc.fixturenames:
        from infra.local.target import LocalTarget
        from infra.spec import load_spec
        procs = LocalTarget(load_spec(os.environ.get("RECON_TEST_STACK", "local"))).processes()
        names = [p.name for p in procs if p.port]
        metafunc.parametrize("proc_name", names, ids=names)


def test_socket_listening(host, running_stack, proc_name):
    proc = next(p for p in running_stack.processes() if p.name == proc_name)
    sock = host.socket(f"tcp://{running_stack.spec.host}:{proc.port}")
    assert sock.is_listening, f"{proc_name} is not listening on {running_stack.spec.host}:{proc.port}"


def test_every_service_runs_and_is_healthy(running_stack):
    rows = running_stack.status()
    bad = [(r.service, r.state, r.detail) for r in rows if r.healthy is False]
    assert not bad, bad
    na = {r.service for r in rows if r.state == "NOT_AVAILABLE"}
    assert na == {"grafana", "jaeger"}, "grafana and jaeger are listed as not available locally"


def test_no_service_runs_as_root_when_started_by_root(host, running_stack):
    info = running_stack.supervisor.info()
    for name, st in info.items():
        if st["statename"] != "RUNNING":
            continue
        uid = host.file(f"/proc/{st['pid']}").uid
        if os.geteuid() == 0:
            assert uid != 0, f"{name} (pid {st['pid']}) runs as root"
        else:
            assert uid == os.geteuid()


def test_replication_streams_to_every_replica(running_stack, secrets):
    spec = running_stack.spec
    with superuser_conn(spec, running_stack.layout, secrets) as conn:
        rows = conn.execute("SELECT application_name, state FROM pg_stat_replication").fetchall()
    streaming = {name for name, state in rows if state == "streaming"}
    assert streaming == set(running_stack.layout.postgres_replicas())


def test_replica_is_read_only_and_sees_primary_writes(running_stack, secrets):
    spec, layout = running_stack.spec, running_stack.layout
    marker = f"m{time.time_ns()}"
    with superuser_conn(spec, layout, secrets) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS _recon_replication_check (v text)")
        conn.execute("INSERT INTO _recon_replication_check VALUES (%s)", (marker,))
    for replica in layout.postgres_replicas():
        with superuser_conn(spec, layout, secrets, proc=replica) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
            deadline = time.monotonic() + 15
            while not conn.execute("SELECT 1 FROM pg_class WHERE relname = '_recon_replication_check'"
                                   ).fetchone() or not conn.execute(
                    "SELECT 1 FROM _recon_replication_check WHERE v = %s", (marker,)).fetchone():
                assert time.monotonic() < deadline, f"{replica} did not replay the write within 15s"
                time.sleep(0.1)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("INSERT INTO _recon_replication_check VALUES ('x')")


def test_sentinels_agree_on_master_with_quorum(running_stack):
    spec, layout = running_stack.spec, running_stack.layout
    name = spec.redis.sentinel.master_name
    masters = set()
    for s in layout.sentinels():
        ep = layout.endpoint(s)
        r = redis.Redis(host=ep.host, port=ep.port, decode_responses=True, socket_timeout=2,
                        **running_stack.redis_auth("sentinel"))
        masters.add(tuple(r.execute_command("SENTINEL", "get-master-addr-by-name", name)))
        assert r.execute_command("SENTINEL", "ckquorum", name).startswith("OK")
        master_info = r.sentinel_master(name)
        assert master_info["num-other-sentinels"] == len(layout.sentinels()) - 1
    assert len(masters) == 1, f"sentinels disagree on the master: {masters}"
    host, port = masters.pop()
    master = redis.Redis(host=host, port=int(port), socket_timeout=2, **running_stack.redis_auth("ops"))
    assert master.info("replication")["role"] == "master"


def test_health_through_nginx_over_tls(running_stack):
    spec = running_stack.spec
    resp = requests.get(f"https://{spec.host}:{spec.nginx.https_port}/health",
                        verify=running_stack.cafile, timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_backend_reached_through_nginx_over_tls(running_stack):
    spec = running_stack.spec
    resp = requests.get(f"https://{spec.host}:{spec.nginx.https_port}/nginx/upstream-health",
                        verify=running_stack.cafile, timeout=5)
    assert resp.status_code == 200
    assert resp.headers.get("X-Recon-Slot") == spec.backend.active_slot


def test_tls_certificate_rejected_without_the_stack_ca(running_stack):
    spec = running_stack.spec
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://{spec.host}:{spec.nginx.https_port}/health", timeout=5)


def test_plain_http_redirects_to_https(running_stack):
    spec = running_stack.spec
    resp = requests.get(f"http://{spec.host}:{spec.nginx.http_port}/api/anything",
                        allow_redirects=False, timeout=5)
    assert resp.status_code == 301
    assert resp.headers["Location"].startswith(f"https://{spec.nginx.server_name}:{spec.nginx.https_port}/")


def test_prometheus_reports_every_scrape_target_up(running_stack):
    spec, layout = running_stack.spec, running_stack.layout
    url = f"http://{layout.endpoint('prometheus')}/api/v1/targets"
    expected_jobs = {"prometheus", "recon-backend", "recon-worker", "postgres", "redis", "node", "nginx",
                     "redis-nodes", "redis-sentinels", "alertmanager"}
    deadline = time.monotonic() + 3 * spec.prometheus.scrape_interval_s + 15
    while True:
        targets = requests.get(url, timeout=5).json()["data"]["activeTargets"]
        down = [(t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"])
                for t in targets if t["health"] != "up"]
        jobs = {t["labels"]["job"] for t in targets}
        if not down and jobs == expected_jobs:
            break
        assert time.monotonic() < deadline, f"targets not up: {down}; jobs {jobs}"
        time.sleep(1)
    backends = [t for t in targets if t["labels"]["job"] == "recon-backend"]
    assert len(backends) == spec.backend.replicas * len(layout.serving_slots())
    # every worker that runs (#15), labelled with its slot as the backends are
    workers = sorted((t["labels"]["instance"], t["labels"]["slot"]) for t in targets
                     if t["labels"]["job"] == "recon-worker")
    assert workers == sorted((f"{spec.host}:{p.port}", spec.backend.active_slot)
                             for p in running_stack.processes() if p.kind == "worker")
    assert len(workers) == spec.backend.workers


def test_prometheus_sees_exactly_one_redis_master_among_every_node(running_stack):
    """The redis-nodes job scrapes each Redis node through the exporter: RedisNoMaster and
    RedisMoreThanOneMaster count masters from it."""
    spec, layout = running_stack.spec, running_stack.layout
    url = f"http://{layout.endpoint('prometheus')}/api/v1/query"
    deadline = time.monotonic() + 3 * spec.prometheus.scrape_interval_s + 15
    while True:
        result = requests.get(url, params={"query": 'redis_instance_info{job="redis-nodes"}'}, timeout=5
                              ).json()["data"]["result"]
        roles = sorted(r["metric"]["role"] for r in result)
        if len(roles) == 1 + len(layout.redis_replicas()):
            break
        assert time.monotonic() < deadline, f"redis-nodes: {roles}"
        time.sleep(1)
    assert roles == ["master"] + ["slave"] * len(layout.redis_replicas())


def test_every_sentinel_reports_quorum_to_prometheus(running_stack):
    """The redis-sentinels job (SentinelQuorumLost) reads each Sentinel as its read-only exporter user."""
    spec, layout = running_stack.spec, running_stack.layout
    url = f"http://{layout.endpoint('prometheus')}/api/v1/query"
    deadline = time.monotonic() + 3 * spec.prometheus.scrape_interval_s + 15
    while True:
        result = requests.get(url, params={"query": 'redis_sentinel_master_ckquorum_status{job="redis-sentinels"}'},
                              timeout=5).json()["data"]["result"]
        if len(result) == len(layout.sentinels()):
            break
        assert time.monotonic() < deadline, f"redis-sentinels: {result}"
        time.sleep(1)
    assert {r["value"][1] for r in result} == {"1"}


def test_prometheus_loaded_the_alert_rules(running_stack):
    url = f"http://{running_stack.layout.endpoint('prometheus')}/api/v1/rules"
    groups = requests.get(url, timeout=5).json()["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"]}
    assert {"HighErrorRate", "HighResponseTime", "DatabaseConnectionsHigh", "ReplicationLagHigh",
            "RedisMasterUnreachable", "BackupTooOld"} <= names


def test_alertmanager_ready(running_stack, secrets):
    url = f"http://{running_stack.layout.endpoint('alertmanager')}/-/ready"
    assert requests.get(url, timeout=5).status_code == 401  # basic auth (#13)
    resp = requests.get(url, auth=("recon", secrets["alertmanager_web"].get_secret_value()), timeout=5)
    assert resp.status_code == 200


def test_nginx_exporter_reads_nginx_counters(running_stack):
    """The exporter reaches nginx's stub_status (its own port, nothing else on it): nginx_up is
    1 and the accepted-connections counter grows with a request through the edge."""
    spec, layout = running_stack.spec, running_stack.layout
    metrics_url = f"http://{layout.endpoint('nginx-exporter')}/metrics"

    def sample(name: str) -> float:
        for line in requests.get(metrics_url, timeout=5).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in the nginx exporter's metrics")

    assert sample("nginx_up") == 1
    before = sample("nginx_connections_accepted")
    requests.get(f"http://{spec.host}:{spec.nginx.http_port}/health", timeout=5)
    assert sample("nginx_connections_accepted") > before
    status = f"http://{layout.endpoint('nginx-status')}"
    assert requests.get(f"{status}/api/health", timeout=5).status_code == 404  # only stub_status there
