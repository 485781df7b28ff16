"""Compute for processes the spec does not size.

The spec sizes PostgreSQL, Redis, the backend and Nginx (``<section>.resources``); those
numbers are read from the spec and never repeated here. Sentinels, exporters, the
observability services and the one-shot jobs are sized here, in one table, so a reviewer
finds every number that is not in the spec in one place. Moving them into the spec is a
follow-up (see docs/pulumi.md).
"""

from __future__ import annotations

from infra.spec import Resources, StackSpec

_FIXED: dict[str, Resources] = {
    "sentinel": Resources(cpu_limit=0.2, memory_limit_mib=128, cpu_request=0.05, memory_request_mib=32),
    "postgres-exporter": Resources(cpu_limit=0.2, memory_limit_mib=128, cpu_request=0.05, memory_request_mib=32),
    "redis-exporter": Resources(cpu_limit=0.2, memory_limit_mib=128, cpu_request=0.05, memory_request_mib=32),
    "node-exporter": Resources(cpu_limit=0.2, memory_limit_mib=128, cpu_request=0.05, memory_request_mib=32),
    "nginx-exporter": Resources(cpu_limit=0.1, memory_limit_mib=64, cpu_request=0.02, memory_request_mib=32),
    "prometheus": Resources(cpu_limit=1.0, memory_limit_mib=2048, cpu_request=0.25, memory_request_mib=512),
    "alertmanager": Resources(cpu_limit=0.2, memory_limit_mib=128, cpu_request=0.05, memory_request_mib=64),
    "grafana": Resources(cpu_limit=0.5, memory_limit_mib=512, cpu_request=0.1, memory_request_mib=128),
    "jaeger": Resources(cpu_limit=0.5, memory_limit_mib=1024, cpu_request=0.1, memory_request_mib=256),
    "config-copy": Resources(cpu_limit=0.1, memory_limit_mib=64, cpu_request=0.01, memory_request_mib=32),
    "backup": Resources(cpu_limit=1.0, memory_limit_mib=512, cpu_request=0.1, memory_request_mib=128),
}


def resources_for(spec: StackSpec, role: str) -> Resources:
    """Resources of ``role``: from the spec for the roles it sizes, else the table above."""
    from_spec = {
        "postgres": spec.postgres.resources,
        "redis": spec.redis.resources,
        "backend": spec.backend.resources,
        "worker": spec.backend.resources,
        "migrate": spec.backend.resources,
        "nginx": spec.nginx.resources,
    }
    if role in from_spec:
        return from_spec[role]
    try:
        return _FIXED[role]
    except KeyError:
        raise KeyError(f"no sizing for role {role!r}; known: {sorted([*from_spec, *_FIXED])}") from None

SENTINEL_STORAGE_GIB = 1
"""A Sentinel's state file is a few KiB; the smallest volume most storage classes offer."""

BACKUP_REPO_FACTOR = 2
"""The logical-export volume holds this many times the database volume."""
