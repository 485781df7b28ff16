"""prometheus.yml and the alert rules, checked by promtool.

The promtool unit tests in promtool/ are written against the local defaults' thresholds
(``test_promtool_tests_assume_the_default_thresholds`` pins them) and together cover every
alert the rendered rules declare, each both firing and staying quiet.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from infra.spec import AlertThresholds

PROMTOOL_DIR = Path(__file__).parent / "promtool"
RULES = "prometheus/rules/recon.rules.yml"
UNIT_TESTS = sorted(PROMTOOL_DIR.glob("*.test.yml"))


def alert_names(rules_text: str) -> list[str]:
    doc = yaml.safe_load(rules_text)
    return [r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_prometheus_config_local_full_check(render_local, find_tool, run_cmd):
    """Full check: the rule file it names exists at the rendered path and parses."""
    r = render_local()
    out = run_cmd([find_tool("promtool"), "check", "config", str(r.path("prometheus/prometheus.yml"))])
    assert "1 rule files found" in out.stdout + out.stderr


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_prometheus_config_container(stack, render_stack, find_tool, run_cmd):
    # Syntax only: the rule file is named by its path inside the container (/etc/recon/...),
    # which does not exist here; the rules themselves are checked in test_rules_check.
    r = render_stack(stack)
    run_cmd([find_tool("promtool"), "check", "config", "--syntax-only",
             str(r.path("prometheus/prometheus.yml"))])
    doc = yaml.safe_load(r.text("prometheus/prometheus.yml"))
    assert doc["rule_files"] == ["/etc/recon/prometheus/rules/recon.rules.yml"]


def test_prometheus_scrape_jobs_cover_every_exporter(render_local):
    r = render_local(overrides={"backend": {"replicas": 2}})
    doc = yaml.safe_load(r.text("prometheus/prometheus.yml"))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    ports = r.spec.local_ports()
    assert set(jobs) == {"prometheus", "recon-backend", "recon-worker", "postgres", "redis", "node", "nginx",
                         "redis-nodes", "redis-sentinels", "alertmanager"}
    assert jobs["redis-sentinels"]["static_configs"][0]["targets"] == [
        f"redis://127.0.0.1:{ports[s]}" for s in ("sentinel-1", "sentinel-2", "sentinel-3")]
    nodes = jobs["redis-nodes"]  # every Redis node, through the redis exporter's /scrape
    assert nodes["static_configs"][0]["targets"] == [f"redis://127.0.0.1:{ports['redis-primary']}",
                                                     f"redis://127.0.0.1:{ports['redis-replica-1']}"]
    assert nodes["metrics_path"] == "/scrape"
    assert nodes["relabel_configs"][-1]["replacement"] == f"127.0.0.1:{ports['redis-exporter']}"
    ports = r.spec.local_ports()
    backend = jobs["recon-backend"]["static_configs"]
    assert [c["labels"]["slot"] for c in backend] == ["blue"]
    assert backend[0]["targets"] == [f"127.0.0.1:{ports['backend-blue-1']}",
                                     f"127.0.0.1:{ports['backend-blue-2']}"]
    assert jobs["postgres"]["static_configs"][0]["targets"] == [f"127.0.0.1:{ports['postgres-exporter']}"]
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{ports['alertmanager']}"]


def test_prometheus_scrapes_both_slots_during_a_canary(render_local):
    r = render_local(overrides={"backend": {"canary_weight": 10, "slots": {
        "blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}}})
    doc = yaml.safe_load(r.text("prometheus/prometheus.yml"))
    backend = next(j for j in doc["scrape_configs"] if j["job_name"] == "recon-backend")
    assert [(c["labels"]["slot"], c["labels"]["version"]) for c in backend["static_configs"]] == [
        ("blue", "1.0.0"), ("green", "1.1.0")]


def _worker_job(doc: dict) -> list[tuple[str, str, list[str]]]:
    """(slot, version, targets) of each static config of the recon-worker job."""
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert "recon-worker" in jobs, f"no recon-worker job; jobs: {sorted(jobs)}"
    assert jobs["recon-worker"]["metrics_path"] == "/metrics"
    return [(c["labels"]["slot"], c["labels"]["version"], c["targets"]) for c in jobs["recon-worker"]["static_configs"]]


@pytest.mark.parametrize("target", ["local", "docker"])
def test_prometheus_scrapes_every_worker(target, render_local, render_stack, find_tool, run_cmd):
    """#15: the recon-worker job lists every worker that runs on the target, labelled with its
    slot and version as recon-backend is (the worker alone serves the reconciliation and job
    metrics). Local: the active slot's workers (18201.., past both slots' backends), exactly the
    processes the target starts; docker: both slots' worker containers on backend.port + 1."""
    from infra.local.processes import plan

    slots = {"blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}
    if target == "local":
        r = render_local(overrides={"backend": {"workers": 2, "slots": slots}})
        run_cmd([find_tool("promtool"), "check", "config", str(r.path("prometheus/prometheus.yml"))])
        started = [f"127.0.0.1:{p.port}" for p in plan(r.spec, r.layout) if p.kind == "worker"]
        expected = [("blue", "1.0.0", ["127.0.0.1:18201", "127.0.0.1:18202"])]
        assert started == expected[0][2]
    else:
        r = render_stack("staging")
        run_cmd([find_tool("promtool"), "check", "config", "--syntax-only",
                 str(r.path("prometheus/prometheus.yml"))])
        port = r.spec.backend.port + 1  # Backend.worker_metrics_port: the containers' RECON_WORKER_METRICS_PORT
        expected = [(slot, r.spec.backend.slots[slot].version,
                     [f"worker-{slot}-{i}:{port}" for i in range(1, r.spec.backend.workers + 1)])
                    for slot in ("blue", "green")]
    assert _worker_job(yaml.safe_load(r.text("prometheus/prometheus.yml"))) == expected


def test_prometheus_scrapes_the_new_slots_workers_after_a_switch(render_local):
    r = render_local(overrides={"backend": {"active_slot": "green", "slots": {
        "blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}}})
    assert _worker_job(yaml.safe_load(r.text("prometheus/prometheus.yml"))) == [
        ("green", "1.1.0", [f"127.0.0.1:{r.spec.local_ports()['worker-green-1']}"])]


@pytest.mark.parametrize("stack", ["local", "staging", "production"])
def test_rules_check(stack, render_local, render_stack, find_tool, run_cmd):
    r = render_local() if stack == "local" else render_stack(stack)
    out = run_cmd([find_tool("promtool"), "check", "rules", str(r.path(RULES))])
    rules = [r for g in yaml.safe_load(r.text(RULES))["groups"] for r in g["rules"]]
    assert f"{len(rules)} rules found" in out.stdout


def test_required_alerts_exist(render_local):
    names = set(alert_names(render_local().text(RULES)))
    assert {"HighErrorRate", "HighResponseTime", "DatabaseConnectionsHigh", "ReplicationLagHigh",
            "RedisMasterUnreachable", "BackupTooOld"} <= names


def test_promtool_tests_assume_the_default_thresholds():
    """The defaults are the specification's alerting rules (shared/specification.md, "Alerting
    Rules": HighErrorRate > 0.1 for 2m, HighResponseTime p95 > 1 for 2m, DatabaseConnectionsHigh
    > 0.8 for 2m); the static promtool tests encode them too: change all together."""
    assert AlertThresholds().model_dump() == {
        "error_rate": 0.1, "error_rate_for": "2m", "p95_seconds": 1.0, "p95_for": "2m",
        "db_connections_ratio": 0.8, "db_connections_for": "2m",
        "replication_lag_seconds": 30, "backup_max_age_hours": 26}


@pytest.mark.parametrize("alert,severity", [("HighErrorRate", "warning"), ("HighResponseTime", "warning"),
                                            ("DatabaseConnectionsHigh", "critical")])
def test_the_specifications_alerts_keep_its_severity(render_local, alert, severity):
    rules = {r["alert"]: r for g in yaml.safe_load(render_local().text(RULES))["groups"] for r in g["rules"] if "alert" in r}
    assert rules[alert]["labels"]["severity"] == severity and rules[alert]["for"] == "2m"


def test_every_alert_has_firing_and_quiet_unit_tests(render_local):
    covered: dict[str, set[str]] = {}
    for f in UNIT_TESTS:
        for t in yaml.safe_load(f.read_text())["tests"]:
            for case in t.get("alert_rule_test", []):
                covered.setdefault(case["alertname"], set()).add(
                    "firing" if case.get("exp_alerts") else "quiet")
    missing = {name: {"firing", "quiet"} - covered.get(name, set())
               for name in alert_names(render_local().text(RULES))}
    assert {k: v for k, v in missing.items() if v} == {}


@pytest.fixture
def rules_dir(render_local) -> Path:
    """The rendered rules with the promtool unit tests copied beside them."""
    d = render_local().path(RULES).parent
    for f in UNIT_TESTS:
        shutil.copy(f, d / f.name)
    return d


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda p: p.name.removesuffix(".test.yml"))
def test_promtool_unit_tests(unit_test, rules_dir, find_tool, run_cmd):
    run_cmd([find_tool("promtool"), "test", "rules", unit_test.name], cwd=rules_dir)


@pytest.mark.parametrize("overrides,unit_test,rendered", [
    # a stricter spec makes the 10%-errors case quiet: the rule reads spec.prometheus.alerts
    ({"alerts": {"error_rate": 0.5}}, "HighErrorRate.test.yml", "> 0.5"),
    # a 99.99 % objective (budget 0.01 %) makes the quiet 0.05 % case burn 5x: the rules read spec.prometheus.slo
    ({"slo": {"availability_percent": 99.99}}, "AvailabilityBudgetBurn.test.yml", "> 14.4 * 0.0001"),
], ids=["alert-threshold", "slo"])
def test_thresholds_come_from_the_spec(overrides, unit_test, rendered, render_local, find_tool, run_cmd):
    """The static promtool tests assume the defaults: with another spec value they fail."""
    r = render_local(overrides={"prometheus": overrides})
    d = r.path(RULES).parent
    shutil.copy(PROMTOOL_DIR / unit_test, d)
    out = run_cmd([find_tool("promtool"), "test", "rules", unit_test], cwd=d, check=False)
    assert out.returncode != 0
    assert rendered in r.text(RULES)


def test_slo_defaults_and_the_services_latency_buckets():
    """The objectives' defaults (the specification: availability > 99.9 %, load-test p95 < 2 s),
    and the latency threshold is one of the buckets the service really exports."""
    from app.metrics import HTTP_DURATION
    from infra.spec import HTTP_LATENCY_BUCKETS, SloSpec
    assert SloSpec().model_dump() == {"availability_percent": 99.9, "latency_seconds": 2.0, "latency_percent": 95.0}
    assert tuple(HTTP_DURATION._upper_bounds[:-1]) == HTTP_LATENCY_BUCKETS  # the last is +Inf
