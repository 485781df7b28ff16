"""The Grafana dashboards (application, infrastructure, business), written as code.

    Dashboard ── Panel ── Target (one PromQL expression, one legend)

:func:`dashboards` builds the three from the spec (the SLO's objectives, the alert thresholds
drawn as reference lines); :meth:`Dashboard.render` is the JSON Grafana provisions.
The JSON is generated at render time and never checked in: infra/components/observability.py
writes it into Grafana's provisioning files (a Docker upload, a Kubernetes ConfigMap), so there
is no file to hand-edit and nothing to keep in sync. A small typed model of our own rather than
grafanalib or grafana-foundation-sdk: the dashboards use one panel type and one datasource, and
a dependency (and its lock) would buy nothing here.

Every panel's queries run against the live local stack in tests/observability/test_dashboards.py,
which requires data for each and that every metric named here is exported by something in the
stack; tests/infra parses each expression with promtool.

Trap: a PromQL expression that selects nothing draws an empty panel, not an error. A selector
on a metric with no series yet (no 5xx so far) is written ``(... or <same shape> * 0)``, never
``or vector(0)`` on the whole expression, which would draw 0 for a misspelled metric too.

Trap: the worker's metrics (job ``recon-worker``) are scraped on Kubernetes only: the local and
Docker targets give the worker no metrics port, so the panels on them stay empty there (the
live test names them in its allow-list).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra import services

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # templates/grafana/datasources.yml.j2
BACKEND = f'job="{services.service("backend").scrape}"'
WORKER = 'job="recon-worker"'  # infra/kubernetes/prometheus.py
WIDTH, HEIGHT, COLUMNS = 12, 8, 2
BURN_WINDOWS = (("1h", 14.4), ("6h", 6.0), ("1d", 3.0), ("3d", 1.0))
"""The burn-rate alerts' long windows and factors (templates/prometheus/recon.rules.yml.j2)."""


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """One time series panel; ``thresholds`` are drawn as dashed lines (value, colour)."""

    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    thresholds: tuple[tuple[float, str], ...] = ()

    def to_json(self, panel_id: int) -> dict[str, Any]:
        col, row = (panel_id - 1) % COLUMNS, (panel_id - 1) // COLUMNS
        steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        steps += [{"color": colour, "value": value} for value, colour in self.thresholds]
        return {
            "id": panel_id, "type": "timeseries", "title": self.title, "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"x": col * WIDTH, "y": row * HEIGHT, "w": WIDTH, "h": HEIGHT},
            "fieldConfig": {"defaults": {
                "unit": self.unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "custom": {"thresholdsStyle": {"mode": "dashed" if self.thresholds else "off"}},
            }, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"},
                        "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + i), "expr": t.expr, "legendFormat": t.legend,
                         "datasource": DATASOURCE} for i, t in enumerate(self.targets)],
        }


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    tags: tuple[str, ...]
    panels: tuple[Panel, ...] = field(default=())

    @property
    def file_name(self) -> str:
        return self.uid.removeprefix("recon-") + ".json"

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "title": self.title, "tags": list(self.tags), "timezone": "utc",
            "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"}, "templating": {"list": []}, "annotations": {"list": []},
            "panels": [p.to_json(i) for i, p in enumerate(self.panels, start=1)],
        }

    def render(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"


def _panel(title: str, unit: str, *targets: tuple[str, str], description: str = "",
           thresholds: tuple[tuple[float, str], ...] = ()) -> Panel:
    return Panel(title, unit, tuple(Target(e, legend) for e, legend in targets), description, thresholds)


def _rate(selector: str, window: str = "5m", by: str = "") -> str:
    grouping = f" by ({by}) " if by else ""
    return f"sum{grouping}(rate({selector}[{window}]))"


# -- application -------------------------------------------------------------------------------

def error_ratio(window: str, by: str = "") -> str:
    """Share of the backend's requests answered with a 5xx: 0, not nothing, before any 5xx."""
    total = _rate(f"http_requests_total{{{BACKEND}}}", window, by)
    errors = _rate(f'http_requests_total{{{BACKEND},status=~"5.."}}', window, by)
    return f"({errors} or {total} * 0) / {total}"


def slow_ratio(window: str, threshold_s: float) -> str:
    """Share of the backend's requests slower than the latency objective (recording rule recon:slo_slow)."""
    within = _rate(f'http_request_duration_seconds_bucket{{{BACKEND},le="{threshold_s}"}}', window)
    return f"1 - {within} / {_rate(f'http_request_duration_seconds_count{{{BACKEND}}}', window)}"


def _burn_panel(title: str, ratio: Callable[[str], str], budget: float, what: str) -> Panel:
    return _panel(
        title, "short",
        *((f"({ratio(w)}) / {budget:.6g}", f"{w} (alert at {factor:g}x)") for w, factor in BURN_WINDOWS),
        description=f"How fast the error budget ({budget:.6g} of requests {what}) burns: 1 spends it "
                    "exactly over the objective's period. The alerts page at 14.4x over 1h (and 5m) "
                    "or 6x over 6h (and 30m), open a ticket at 3x over 1d or 1x over 3d.",
        thresholds=((1.0, "yellow"), (6.0, "orange"), (14.4, "red")))


def latency_quantile(q: float, by: str = "") -> str:
    return (f"histogram_quantile({q}, sum by (le{', ' + by if by else ''}) "
            f"(rate(http_request_duration_seconds_bucket{{{BACKEND}}}[5m])))")


def application(spec: Any) -> Dashboard:
    a, slo = spec.prometheus.alerts, spec.prometheus.slo
    return Dashboard("recon-application", "Recon / Application", ("recon", "application"), (
        _panel("Request rate by slot", "reqps", (_rate(f"http_requests_total{{{BACKEND}}}", by="slot"), "{{slot}}")),
        _panel("Response time p50 / p95 / p99", "s",
               *((latency_quantile(q), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)),
               thresholds=((a.p95_seconds, "red"),), description="HighResponseTime fires when p95 stays above the line."),
        _panel("Error rate (5xx share) by slot", "percentunit", (error_ratio("5m", "slot"), "{{slot}}"),
               thresholds=((a.error_rate, "red"),), description="HighErrorRate fires when it stays above the line."),
        _panel("Responses by status code", "reqps", (_rate(f"http_requests_total{{{BACKEND}}}", by="status"), "{{status}}")),
        _panel("p95 response time by slot", "s", (latency_quantile(0.95, "slot"), "{{slot}}")),
        _panel("Requests by route (top 10)", "reqps",
               (f"topk(10, {_rate(f'http_requests_total{{{BACKEND}}}', by='method, path')})", "{{method}} {{path}}")),
        _panel("Active sessions: client connections at the edge", "short",
               ("sum(nginx_connections_active)", "open"), ("sum(nginx_connections_waiting)", "idle keep-alive"),
               ("sum(http_requests_in_flight{%s})" % BACKEND, "in flight at the backends"),
               description="Connections Nginx holds open (a browser or API client keeps one per session "
                           "while it is active) and requests being served. The service has no per-user "
                           "metric: distinct active users are not measured."),
        _panel("Backend replicas up", "short", (f"sum by (slot, version) (up{{{BACKEND}}})", "{{slot}} {{version}}")),
        _burn_panel(f"Availability SLO burn rate ({slo.availability_percent:g}% without a 5xx)", error_ratio,
                    (100 - slo.availability_percent) / 100, "answered with a 5xx"),
        _burn_panel(f"Latency SLO burn rate ({slo.latency_percent:g}% within {slo.latency_seconds:g}s)",
                    lambda w: slow_ratio(w, slo.latency_seconds), (100 - slo.latency_percent) / 100,
                    f"slower than {slo.latency_seconds:g}s"),
    ))


# -- infrastructure ----------------------------------------------------------------------------

def replication_lag() -> str:
    """Seconds of the primary's WAL a replica has not replayed (ReplicationLagHigh's measure)."""
    return ("max by (application_name) (pg_stat_replication_pg_wal_lsn_diff"
            " / clamp_min(rate(pg_stat_replication_pg_current_wal_lsn_bytes[5m]), 1))")


def infrastructure(spec: Any) -> Dashboard:
    a = spec.prometheus.alerts
    disks = 'device!~"(ram|loop|zram|fd).*"'
    nics = 'device!~"lo|veth.*|docker.*|br-.*"'
    db = f'datname="{spec.postgres.database}"'
    return Dashboard("recon-infrastructure", "Recon / Infrastructure", ("recon", "infrastructure"), (
        _panel("CPU busy", "percentunit", ('1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))', "{{instance}}")),
        _panel("Memory used", "percentunit",
               ("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes", "{{instance}}")),
        _panel("Disk I/O", "Bps", (f"sum by (device) (rate(node_disk_read_bytes_total{{{disks}}}[5m]))", "read {{device}}"),
               (f"sum by (device) (rate(node_disk_written_bytes_total{{{disks}}}[5m]))", "written {{device}}")),
        _panel("Network traffic", "Bps",
               (f"sum by (device) (rate(node_network_receive_bytes_total{{{nics}}}[5m]))", "in {{device}}"),
               (f"sum by (device) (rate(node_network_transmit_bytes_total{{{nics}}}[5m]))", "out {{device}}")),
        _panel("Filesystem used", "percentunit",
               ('1 - node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"}'
                ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"}', "{{mountpoint}}")),
        _panel("Edge requests per second", "reqps", ("sum(rate(nginx_http_requests_total[5m]))", "nginx")),
        _panel("PostgreSQL connections / max_connections", "percentunit",
               ("sum by (instance) (pg_stat_activity_count) / on (instance) max by (instance) (pg_settings_max_connections)",
                "{{instance}}"), thresholds=((a.db_connections_ratio, "red"),),
               description="DatabaseConnectionsHigh fires when it stays above the line."),
        _panel("PostgreSQL connections by state", "short",
               (f"sum by (state) (pg_stat_activity_count{{{db}}})", "{{state}}")),
        _panel("PostgreSQL transactions per second", "ops",
               (f"sum(rate(pg_stat_database_xact_commit{{{db}}}[5m]))", "commit"),
               (f"sum(rate(pg_stat_database_xact_rollback{{{db}}}[5m]))", "rollback")),
        _panel("PostgreSQL rows per second (queries)", "ops",
               *((f"sum(rate(pg_stat_database_tup_{op}{{{db}}}[5m]))", op)
                 for op in ("returned", "fetched", "inserted", "updated", "deleted"))),
        _panel("Replication lag", "s", (replication_lag(), "{{application_name}}"),
               thresholds=((a.replication_lag_seconds, "red"),),
               description="Measured on the primary: bytes not replayed over the WAL write rate "
                           "(ReplicationLagHigh fires above the line)."),
        _panel("Replication lag (bytes)", "bytes",
               ("max by (application_name) (pg_stat_replication_pg_wal_lsn_diff)", "{{application_name}}")),
        _panel("WAL archiving", "ops", ("sum(rate(pg_stat_archiver_archived_count[5m]))", "archived"),
               ("sum(rate(pg_stat_archiver_failed_count[5m]))", "failed")),
        _panel("Last successful backup age", "s",
               ("time() - max(recon_backup_last_success_timestamp_seconds)", "age"),
               thresholds=((a.backup_max_age_hours * 3600, "red"),)),
        _panel("Redis nodes by role", "short",
               ('count by (role) (redis_instance_info{job="redis-nodes"})', "{{role}}"),
               ('sum(redis_up{job="redis-sentinels"})', "sentinels up")),
        _panel("Redis memory used / max", "percentunit",
               ('redis_memory_used_bytes{job="redis"} / clamp_min(redis_memory_max_bytes{job="redis"}, 1)', "{{instance}}")),
        _panel("Redis commands per second", "ops", ('sum(rate(redis_commands_processed_total{job="redis"}[5m]))', "commands")),
        _panel("Redis connected clients", "short", ('sum(redis_connected_clients{job="redis"})', "clients")),
        _panel("Scrape targets up", "short", ("sum by (job) (up)", "up {{job}}"), ("count by (job) (up)", "of {{job}}")),
    ))


# -- business ----------------------------------------------------------------------------------

def business(spec: Any) -> Dashboard:
    finished = f"sum(rate(recon_reconciliations_total{{{WORKER}}}[1h]))"
    post = f'http_requests_total{{{BACKEND},method="POST",status=~"[23].."'  # the UI answers a POST with 303
    return Dashboard("recon-business", "Recon / Business", ("recon", "business"), (
        _panel("File upload success rate", "percentunit",
               ('sum(rate(recon_uploads_total{outcome="success"}[1h])) / sum(rate(recon_uploads_total[1h]))', "success"),
               description="Accepted uploads over all uploads (rejected, duplicate, unsupported, too large)."),
        _panel("Uploads by outcome", "short", ("sum by (outcome) (increase(recon_uploads_total[1h]))", "{{outcome}}")),
        _panel("Records imported by side", "short",
               ("sum by (side) (increase(recon_records_imported_total[1h]))", "{{side}}")),
        _panel("User engagement: reconciliations created and runs started per hour", "short",
               (f'sum(increase({post},path=~"/(api/v1|ui)/reconciliations"}}[1h]))', "reconciliations created"),
               (f'sum(increase({post},path=~"/(api/v1|ui)/reconciliations/.+/(imports|upload/[^/]+)"}}[1h]))',
                "files uploaded"),
               (f'sum(increase({post},path=~"/(api/v1|ui)/reconciliations/.+/runs?"}}[1h]))', "runs started")),
        _panel("User engagement: review decisions per hour", "short",
               (f'sum by (path) (increase({post},path=~"/(api/v1|ui)/(matches/.+|reconciliations/.+/(links?|bulk-confirm))"}}[1h]))',
                "{{path}}"),
               description="Matches confirmed, rejected, unlinked and linked by hand, through the API and the UI."),
        _panel("Reconciliation processing time", "s",
               *((f"histogram_quantile({q}, sum by (le) (rate(recon_reconciliation_duration_seconds_bucket{{{WORKER}}}[30m])))",
                  f"p{round(q * 100)}") for q in (0.5, 0.95))),
        _panel("Reconciliations by outcome", "short",
               (f"sum by (outcome) (increase(recon_reconciliations_total{{{WORKER}}}[1h]))", "{{outcome}}")),
        _panel("Failed reconciliation share", "percentunit",
               (f'(sum(rate(recon_reconciliations_total{{{WORKER},outcome="failed"}}[1h])) or {finished} * 0)'
                f" / clamp_min({finished}, 1e-9)", "failed")),
        _panel("Match rate (last reconciliation)", "percentunit", (f"max(recon_match_rate{{{WORKER}}})", "match rate")),
        _panel("Records processed per minute", "short",
               (f"sum(rate(recon_records_processed_total{{{WORKER}}}[5m])) * 60", "records/min")),
        _panel("Jobs claimed (reclaimed = taken over from a dead worker)", "ops",
               (f"sum by (reclaimed) (rate(recon_jobs_claimed_total{{{WORKER}}}[5m]))", "reclaimed={{reclaimed}}")),
    ))


def dashboards(spec: Any) -> list[Dashboard]:
    """The three dashboards for ``spec``'s stack."""
    return [application(spec), infrastructure(spec), business(spec)]
