"""Render every service's configuration from the spec: one function for every target.

``render_all(spec, layout)`` returns the files each service reads, keyed by their path
relative to the target's config directory. The local target writes them under
``<state>/conf``; the Docker target mounts them; the Kubernetes target puts them in
ConfigMaps. So the configs that CI runs under real servers are the ones staging and
production run.

Trap: a rendered file must not carry a secret (it may end up in a ConfigMap or a stack
output). Secrets reach services through the environment or a file the target writes itself;
templates only refer to them by path (``secrets_dir``), never by value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from infra.layout import Layout
from infra.pgbackrest import BackupPaths
from infra import services
from infra.services import PG_PRIMARY, replica_slot
from infra.spec import REPO_ROOT, StackSpec

TEMPLATES = REPO_ROOT / "templates"


@dataclass(frozen=True)
class Rendered:
    path: str
    """Relative to the config directory, e.g. ``nginx/nginx.conf``."""
    content: str
    mode: int = 0o644


@dataclass
class RenderContext:
    """Target-specific facts the templates need beyond the spec and the layout."""

    tls_cert: str = "/etc/recon/tls/server.crt"
    tls_key: str = "/etc/recon/tls/server.key"
    archive_command: str | None = None
    """PostgreSQL archive_command; None turns WAL archiving off."""
    postgres_primary: str = PG_PRIMARY
    """The PostgreSQL node that holds the primary role now (after a failover, a former replica):
    pgBackRest backs up and archives from it."""
    pg_tls: dict[str, str] = field(default_factory=dict)
    """When set (the local target): PostgreSQL serves TLS with ``tls_cert``/``tls_key`` and
    accepts TCP clients over TLS only (``hostssl``); replicas connect to the primary with these
    libpq parameters (``LocalLayout.pg_tls``: verify-full against the stack's CA)."""


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one Jinja2 environment (it caches compiled templates, so it is built once)."""
    # Not HTML: these are config files (nginx, PostgreSQL, YAML); HTML escaping would corrupt
    # them. Values come from the validated spec, and YAML strings go through the yaml_str filter.
    env = jinja2.Environment(  # nosec B701
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson"] = lambda v: json.dumps(v)
    env.filters["yaml_str"] = lambda v: json.dumps(str(v))
    return env


def render(name: str, **context) -> str:
    """Render one template by its path under templates/."""
    return environment().get_template(name).render(**context)


def render_all(spec: StackSpec, layout: Layout, ctx: RenderContext | None = None,
               only: Iterable[str] | None = None) -> dict[str, Rendered]:
    """Every config file of the stack for ``layout``'s target (or just the paths in ``only``:
    a release reloads two files and should not compile every template)."""
    ctx = ctx or RenderContext()
    env = environment()
    base = {"spec": spec, "layout": layout, "ctx": ctx}
    wanted = None if only is None else set(only)
    out: dict[str, Rendered] = {}

    def add(path: str, template: str, mode: int = 0o644, **extra) -> None:
        if wanted is None or path in wanted:
            out[path] = Rendered(path, env.get_template(template).render(**base, **extra), mode)

    add("nginx/nginx.conf", "nginx/nginx.conf.j2")
    add("prometheus/prometheus.yml", "prometheus/prometheus.yml.j2",
        workers={slot: services.slot_members(spec, "worker", slot)
                 for slot in services.worker_slots(spec, layout.target)})
    add("prometheus/rules/recon.rules.yml", "prometheus/recon.rules.yml.j2")
    add("alertmanager/alertmanager.yml", "alertmanager/alertmanager.yml.j2")
    add("postgres/primary/postgresql.conf", "postgres/postgresql.conf.j2", proc=PG_PRIMARY, role="primary")
    for proc in layout.postgres_replicas():
        add(f"postgres/{proc.removeprefix('postgres-')}/postgresql.conf", "postgres/postgresql.conf.j2",
            proc=proc, role="replica", slot=replica_slot(proc))
    add("postgres/pg_hba.conf", "postgres/pg_hba.conf.j2")
    add("redis/redis-primary.conf", "redis/redis.conf.j2", proc="redis-primary", role="primary")
    for proc in layout.redis_replicas():
        add(f"redis/{proc}.conf", "redis/redis.conf.j2", proc=proc, role="replica")
    for proc in layout.sentinels():
        add(f"redis/{proc}.conf", "redis/sentinel.conf.j2", proc=proc)
    if spec.backup.enabled:
        add("pgbackrest/pgbackrest.conf", "pgbackrest/pgbackrest.conf.j2", paths=BackupPaths.of(layout))
    return out


def write_all(files: dict[str, Rendered], conf_dir: Path) -> list[str]:
    """Write rendered files under ``conf_dir``; returns the paths whose content changed."""
    changed = []
    for rel, f in sorted(files.items()):
        path = conf_dir / rel
        if path.exists() and path.read_text() == f.content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(f.content)
        tmp.chmod(f.mode)
        tmp.replace(path)
        changed.append(rel)
    return changed
