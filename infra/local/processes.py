"""The processes the local target runs, from the service catalogue: commands, start order, health.

Each service of infra/services.py that runs on the local target becomes one supervisord
program per member, its command line filled from the local layout. A process belongs to a
*stage*; ``fab up`` starts stage by stage and waits for every process of a stage to be healthy
before the next (PostgreSQL before the backend, the backend before Nginx...). Health is checked
from outside, as a client would: a real query, a PING, an HTTP request.
"""

from __future__ import annotations

import os
import shlex
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from infra import services
from infra.layout import LocalLayout
from infra.services import PG_PRIMARY
from infra.spec import REPO_ROOT, StackSpec


@dataclass
class Process:
    name: str
    argv: list[str]
    stage: int
    kind: str
    """postgres, redis, sentinel, backend, worker, nginx, prometheus, alertmanager, exporter"""
    port: int | None = None
    service: str = ""
    """Its catalogue entry (infra/services.py)."""
    health: str | None = None
    """The health check to run (LocalTarget._check_<health>); None: the supervisor state."""
    env: dict[str, str] = field(default_factory=dict)
    stop_signal: str = "TERM"
    stop_wait: int = 30
    startsecs: int = 1
    autorestart: bool = True
    stop_as_group: bool = False
    """Signal the whole process group on stop (not for PostgreSQL: the postmaster stops its children)."""
    directory: str | None = None
    reload_signal: str | None = None
    """Signal that reloads a changed config without a restart (nginx, prometheus: HUP)."""
    conf_files: tuple[str, ...] = ()
    """Rendered config files (relative to conf/) this process reads; a change restarts or reloads it."""

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


def app_env(spec: StackSpec, layout: LocalLayout, slot: str | None = None) -> dict[str, str]:
    """The environment the reconciliation service reads (app/settings.py). No secret in it:
    the database password comes from the pgpass file libpq reads (PGPASSFILE)."""
    pg = spec.postgres
    # Every PostgreSQL node in one libpq multi-host URL: a new connection takes the node that
    # accepts writes (read-write) or, for reads, a standby when one answers. After
    # `fab db.failover` the service follows the promoted node without a restart (docs/releases.md).
    env = {
        "RECON_DATABASE_URL": _writer_dsn(spec, layout, pg.user),
        "PGPASSFILE": layout.secret("pgpass"),
        "RECON_REDIS_MASTER_NAME": spec.redis.sentinel.master_name,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    if layout.postgres_replicas():
        readers = ",".join(str(layout.endpoint(p)) for p in [*layout.postgres_replicas(), PG_PRIMARY])
        env["RECON_DATABASE_REPLICA_URL"] = (f"postgresql://{pg.reader_user}@{readers}/{pg.database}"
                                             f"?target_session_attrs=prefer-standby&{pg_tls_query(layout)}")
    # the service's own Redis ACL user; passwords in 0600 files, never in the environment
    env["RECON_REDIS_USERNAME"] = "app"
    env["RECON_REDIS_PASSWORD_FILE"] = layout.secret("redis-app-password")
    if layout.sentinels():
        env["RECON_REDIS_SENTINELS"] = ",".join(str(layout.endpoint(s)) for s in layout.sentinels())
        env["RECON_REDIS_SENTINEL_PASSWORD_FILE"] = layout.secret("sentinel-password")
    else:
        env["RECON_REDIS_URL"] = f"redis://{layout.endpoint('redis-primary')}/0"
    if slot:
        env["RECON_SLOT"] = slot
        env["RECON_VERSION"] = spec.backend.slots[slot].version
    return env


def migrate_env(spec: StackSpec, layout: LocalLayout, slot: str | None = None) -> dict[str, str]:
    """The environment ``python -m app migrate`` runs with: the service's, but as the owner role
    (the service's own role cannot change the schema), with the owner's password file."""
    env = app_env(spec, layout, slot)
    env.pop("RECON_DATABASE_REPLICA_URL", None)
    env["RECON_DATABASE_URL"] = _writer_dsn(spec, layout, spec.postgres.owner_user)
    env["PGPASSFILE"] = layout.secret("pgpass-migrate")
    return env


def _writer_dsn(spec: StackSpec, layout: LocalLayout, user: str) -> str:
    """Every PostgreSQL node in one libpq multi-host URL; a new connection takes the node that
    accepts writes, so after `fab db.failover` the service follows the promoted node."""
    nodes = ",".join(str(layout.endpoint(p)) for p in layout.postgres_nodes())
    return f"postgresql://{user}@{nodes}/{spec.postgres.database}?target_session_attrs=read-write&{pg_tls_query(layout)}"


def pg_tls_query(layout: LocalLayout) -> str:
    """``sslmode=verify-full&sslrootcert=<the stack's CA>`` for a PostgreSQL URL."""
    return urlencode(layout.pg_tls(), quote_via=quote)


def run_app(spec: StackSpec, layout: LocalLayout, *args: str, slot: str | None = None,
            extra_env: dict[str, str] | None = None, capture: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` on this machine with the service's environment for ``slot``
    (default: the active one). Secrets go in ``extra_env``, never in ``args``."""
    base = migrate_env if args[:1] == ("migrate",) else app_env
    env = {**os.environ, **base(spec, layout, slot or spec.backend.active_slot), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, text=True,
                          capture_output=capture, timeout=timeout)


def plan(spec: StackSpec, layout: LocalLayout, slots: list[str] | None = None,
         primary: str = PG_PRIMARY) -> list[Process]:
    """Every process of the local stack, in start order.

    ``slots``: backend slots to run (default: the ones serving traffic); ``primary``: the
    PostgreSQL node holding the primary role (the exporter watches it).
    """
    wanted = slots or layout.serving_slots()
    fill = services.Fill(layout, python=sys.executable, primary=primary, pg_tls=pg_tls_query(layout),
                         app_env=lambda member: app_env(spec, layout, _slot_of(spec, member)))
    procs: list[Process] = []
    for svc, m in services.members(spec, "local"):
        if m.slot and m.slot not in (wanted if svc.kind != "worker" else services.worker_slots(spec, "local")):
            continue
        ports = svc.port_defs(spec)
        procs.append(Process(
            m.name, services.command(svc, m.name, fill), svc.stage, svc.kind,
            layout.ports[ports[0].endpoint(m.name)] if ports else None,
            service=svc.name, health=svc.health, env=services.environment(svc, m.name, fill),
            stop_signal=svc.stop_signal, stop_wait=svc.stop_wait_s, startsecs=svc.startsecs,
            stop_as_group=svc.stop_as_group, reload_signal=svc.reload_signal,
            conf_files=svc.configs(m.name),
            directory=str(REPO_ROOT) if svc.kind in ("backend", "worker") else None))
    return procs


def _slot_of(spec: StackSpec, member: str) -> str:
    """A backend or worker member's slot."""
    _, m = services.owner(spec, member)
    return m.slot or spec.backend.active_slot


# -- health ------------------------------------------------------------------------------

def http_get(url: str, timeout: float = 2.0, cafile: str | None = None,
             auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    headers = {"User-Agent": "recon-stack-health"}
    if auth:
        import base64
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
