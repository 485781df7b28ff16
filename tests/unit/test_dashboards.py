"""The generated dashboards: the specification's list covered, valid Grafana JSON shape, and the
PromQL name extraction the live test (tests/observability/test_dashboards.py) relies on."""

from __future__ import annotations

import json

import pytest

from infra.dashboards import dashboards
from infra.spec import load_spec
from testing.promql import metric_names

# The specification's "Grafana Dashboards / Key Metrics", item by item: the panel titles that show it.
SPECIFIED = {
    "application": {
        "request rate": ["Request rate by slot", "Requests by route (top 10)"],
        "response time": ["Response time p50 / p95 / p99", "p95 response time by slot"],
        "error rate": ["Error rate (5xx share) by slot"],
        "status codes": ["Responses by status code"],
        "active sessions": ["Active sessions: client connections at the edge"],
        "SLO burn rate": ["Availability SLO burn rate (99.9% without a 5xx)", "Latency SLO burn rate (95% within 2s)"],
    },
    "infrastructure": {
        "CPU": ["CPU busy"], "memory": ["Memory used"], "disk I/O": ["Disk I/O"],
        "network traffic": ["Network traffic"],
        "database connections": ["PostgreSQL connections / max_connections", "PostgreSQL connections by state"],
        "database queries": ["PostgreSQL transactions per second", "PostgreSQL rows per second (queries)"],
        "replication lag": ["Replication lag", "Replication lag (bytes)"],
    },
    "business": {
        "file upload success rate": ["File upload success rate"],
        "reconciliation processing time": ["Reconciliation processing time"],
        "user engagement": ["User engagement: reconciliations created and runs started per hour",
                            "User engagement: review decisions per hour"],
        "reconciliation outcomes": ["Reconciliations by outcome", "Failed reconciliation share"],
    },
}


@pytest.fixture(scope="module")
def generated():
    return {d.file_name.removesuffix(".json"): d for d in dashboards(load_spec("production"))}


@pytest.mark.parametrize(("dashboard", "item"), [(d, i) for d, items in SPECIFIED.items() for i in items])
def test_every_specified_metric_has_its_panels(generated, dashboard, item):
    titles = {p.title for p in generated[dashboard].panels}
    assert set(SPECIFIED[dashboard][item]) <= titles, sorted(titles)


def test_dashboards_are_valid_grafana_json(generated):
    uids = set()
    for dash in generated.values():
        doc = json.loads(dash.render())
        uids.add(doc["uid"])
        titles = [p["title"] for p in doc["panels"]]
        assert len(titles) == len(set(titles)), titles
        cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in doc["panels"]]
        assert len(cells) == len(set(cells)), "panels overlap"
        for panel in doc["panels"]:
            assert [t["refId"] for t in panel["targets"]] == [chr(ord("A") + i) for i in range(len(panel["targets"]))]
            assert all(t["expr"] and t["datasource"]["uid"] == "prometheus" for t in panel["targets"])
    assert uids == {"recon-application", "recon-infrastructure", "recon-business"}


def test_burn_rate_panels_follow_the_spec_objectives(generated):
    spec = load_spec("production")
    burn = next(p for p in generated["application"].panels if p.title.startswith("Latency SLO"))
    budget = (100 - spec.prometheus.slo.latency_percent) / 100
    assert all(t.expr.endswith(f") / {budget:.6g}") for t in burn.targets)
    assert all(f'le="{spec.prometheus.slo.latency_seconds}"' in t.expr for t in burn.targets)


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (le) (rate(a_bucket{job="x",le="2.0"}[5m]))', {"a_bucket"}),
    ("x / on (instance) group_left (y) z + 1e-9 * clamp_min(w, 1) or vector(0)", {"x", "z", "w"}),
    ("count by (job) (up == 0) and time() - max(r:s:t offset 5m) > 2 * 3600", {"up", "r:s:t"}),
    ('sum(rate(m{path=~"/api/{id}/x"}[5m:1m])) by (path) unless absent(n)', {"m", "n"}),
], ids=["matchers", "binary-ops", "recorded-offset", "braces-in-string"])
def test_metric_names(expr, names):
    assert metric_names(expr) == names
