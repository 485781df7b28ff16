"""Third-party images, pinned by tag in one place.

The app image comes from the spec (``backend.slots.<slot>.image``); everything else is an
upstream image chosen for three properties: it runs as a non-root user (or accepts one),
tolerates a read-only root filesystem given the writable paths the workload declares, and
has a stable tag. Bump a tag here and both targets follow.
"""

from __future__ import annotations

IMAGES: dict[str, str] = {
    "postgres": "postgres:15.8-bookworm",
    "redis": "redis:7.2.5-bookworm",
    "nginx": "nginxinc/nginx-unprivileged:1.27.0-bookworm",
    "prometheus": "prom/prometheus:v2.53.1",
    "alertmanager": "prom/alertmanager:v0.27.0",
    "grafana": "grafana/grafana:11.1.3",
    "jaeger": "jaegertracing/all-in-one:1.59.0",
    "postgres-exporter": "quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
    "redis-exporter": "oliver006/redis_exporter:v1.62.0",
    "node-exporter": "prom/node-exporter:v1.8.2",
}

UIDS: dict[str, int] = {
    # The user each image's files belong to; the platform runs the process as this uid.
    "postgres": 999,
    "redis": 999,
    "nginx": 101,
    "prometheus": 65534,
    "alertmanager": 65534,
    "grafana": 472,
    "jaeger": 10001,
    "postgres-exporter": 65534,
    "redis-exporter": 59000,
    "node-exporter": 65534,
    "app": 10001,
}
