"""The processes the local target runs, from the spec: commands, start order, health checks.

A process belongs to a *stage*; ``fab up`` starts stage by stage and waits for every process
of a stage to be healthy before the next (PostgreSQL before the backend, the backend before
Nginx...). Health is checked from outside, as a client would: a real query, a PING, an HTTP
request.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import ssl
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from infra.layout import LocalLayout
from infra.spec import REPO_ROOT, StackSpec

PG_BIN = Path("/usr/lib/postgresql/15/bin")

# Debian package that provides each binary, for the error when one is missing.
PACKAGES = {
    "postgres": "postgresql-15", "redis-server": "redis-server", "redis-sentinel": "redis-sentinel",
    "nginx": "nginx", "prometheus": "prometheus", "prometheus-alertmanager": "prometheus-alertmanager",
    "prometheus-postgres-exporter": "prometheus-postgres-exporter",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "prometheus-node-exporter": "prometheus-node-exporter",
}


@dataclass
class Process:
    name: str
    argv: list[str]
    stage: int
    kind: str
    """postgres, redis, sentinel, backend, worker, nginx, prometheus, alertmanager, exporter"""
    port: int | None = None
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


@dataclass(frozen=True)
class Unavailable:
    """A service of the spec this target cannot run, with the reason (shown by status)."""

    name: str
    reason: str


def binary(name: str) -> str:
    if name == "postgres" or name in ("initdb", "pg_basebackup", "pg_ctl", "pg_isready"):
        return str(PG_BIN / name)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    return found or name


def missing_binaries() -> list[str]:
    """Debian packages whose binaries the local target needs but cannot find."""
    missing = []
    for exe, pkg in PACKAGES.items():
        path = binary(exe)
        if not Path(path).exists():
            missing.append(f"{exe} (apt-get install {pkg})")
    return missing


def app_env(spec: StackSpec, layout: LocalLayout, slot: str | None = None) -> dict[str, str]:
    """The environment the reconciliation service reads (app/settings.py). No secret in it:
    the database password comes from the pgpass file libpq reads (PGPASSFILE)."""
    pg = spec.postgres
    # Every PostgreSQL node in one libpq multi-host URL: a new connection takes the node that
    # accepts writes (read-write) or, for reads, a standby when one answers. After
    # `fab db.failover` the service follows the promoted node without a restart (docs/releases.md).
    nodes = ",".join(str(layout.endpoint(p)) for p in ["postgres-primary", *layout.postgres_replicas()])
    env = {
        "RECON_DATABASE_URL": f"postgresql://{pg.user}@{nodes}/{pg.database}?target_session_attrs=read-write",
        "PGPASSFILE": layout.secret("pgpass"),
        "RECON_REDIS_MASTER_NAME": spec.redis.sentinel.master_name,
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    if layout.postgres_replicas():
        readers = ",".join(str(layout.endpoint(p)) for p in [*layout.postgres_replicas(), "postgres-primary"])
        env["RECON_DATABASE_REPLICA_URL"] = (f"postgresql://{pg.user}@{readers}/{pg.database}"
                                             "?target_session_attrs=prefer-standby")
    if layout.sentinels():
        env["RECON_REDIS_SENTINELS"] = ",".join(str(layout.endpoint(s)) for s in layout.sentinels())
    else:
        env["RECON_REDIS_URL"] = f"redis://{layout.endpoint('redis-primary')}/0"
    if slot:
        env["RECON_SLOT"] = slot
        env["RECON_VERSION"] = spec.backend.slots[slot].version
    return env


def run_app(spec: StackSpec, layout: LocalLayout, *args: str, slot: str | None = None,
            extra_env: dict[str, str] | None = None, capture: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` on this machine with the service's environment for ``slot``
    (default: the active one). Secrets go in ``extra_env``, never in ``args``."""
    env = {**os.environ, **app_env(spec, layout, slot or spec.backend.active_slot), **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, text=True,
                          capture_output=capture, timeout=timeout)


def plan(spec: StackSpec, layout: LocalLayout, slots: list[str] | None = None) -> list[Process]:
    """Every process of the local stack, in start order.

    ``slots``: backend slots to run (default: the ones serving traffic).
    """
    conf = layout.conf
    py = sys.executable
    procs: list[Process] = []

    # Stage 0: PostgreSQL primary. Stage 1: replicas, Redis. Stage 2: Sentinels.
    procs.append(Process("postgres-primary", [binary("postgres"), "-D", layout.data("postgres-primary"),
                                              "-c", f"config_file={conf('postgres/primary/postgresql.conf')}"],
                         0, "postgres", layout.ports["postgres-primary"], stop_signal="INT", stop_wait=60,
                         conf_files=("postgres/primary/postgresql.conf", "postgres/pg_hba.conf")))
    for proc in layout.postgres_replicas():
        short = proc.removeprefix("postgres-")
        procs.append(Process(proc, [binary("postgres"), "-D", layout.data(proc),
                                    "-c", f"config_file={conf(f'postgres/{short}/postgresql.conf')}"],
                             1, "postgres", layout.ports[proc], stop_signal="INT", stop_wait=60,
                             conf_files=(f"postgres/{short}/postgresql.conf", "postgres/pg_hba.conf")))
    for proc in ["redis-primary", *layout.redis_replicas()]:
        procs.append(Process(proc, [binary("redis-server"), str(Path(layout.data(proc)) / "redis.conf")],
                             1, "redis", layout.ports[proc], conf_files=(f"redis/{proc}.conf",)))
    for proc in layout.sentinels():
        procs.append(Process(proc, [binary("redis-sentinel"), str(Path(layout.data(proc)) / "sentinel.conf")],
                             2, "sentinel", layout.ports[proc], conf_files=(f"redis/{proc}.conf",)))

    # Stage 3: the service (web replicas of each running slot, workers) and the exporters.
    for slot in slots or layout.serving_slots():
        for proc in layout.backends(slot):
            procs.append(Process(proc, [py, "-m", "app", "serve", "--host", spec.host,
                                        "--port", str(layout.ports[proc])],
                                 3, "backend", layout.ports[proc], env=app_env(spec, layout, slot),
                                 stop_wait=20, stop_as_group=True, directory=str(REPO_ROOT)))
    active = spec.backend.active_slot
    for i in range(1, spec.backend.workers + 1):
        procs.append(Process(f"worker-{i}", [py, "-m", "app", "worker"], 3, "worker",
                             env=app_env(spec, layout, active), stop_wait=60, startsecs=2,
                             stop_as_group=True, directory=str(REPO_ROOT)))
    primary = layout.endpoint("postgres-primary")
    procs.append(Process("postgres-exporter", [binary("prometheus-postgres-exporter"),
                                               f"--web.listen-address={layout.endpoint('postgres-exporter')}",
                                               "--auto-discover-databases"],
                         3, "exporter", layout.ports["postgres-exporter"],
                         env={"DATA_SOURCE_URI": f"{primary.host}:{primary.port}/postgres?sslmode=disable",
                              "DATA_SOURCE_USER": "exporter",
                              "DATA_SOURCE_PASS_FILE": layout.secret("exporter-password")}))
    procs.append(Process("redis-exporter", [binary("prometheus-redis-exporter"),
                                            "-redis.addr", f"redis://{layout.endpoint('redis-primary')}",
                                            "-web.listen-address", str(layout.endpoint("redis-exporter"))],
                         3, "exporter", layout.ports["redis-exporter"]))
    procs.append(Process("node-exporter", [binary("prometheus-node-exporter"),
                                           f"--web.listen-address={layout.endpoint('node-exporter')}",
                                           f"--collector.textfile.directory={layout.data('node-exporter')}"],
                         3, "exporter", layout.ports["node-exporter"]))

    # Stage 4: the edge and the observers.
    procs.append(Process("nginx", [binary("nginx"), "-e", "stderr", "-c", conf("nginx/nginx.conf"),
                                   "-g", "daemon off;"],
                         4, "nginx", layout.ports["nginx-https" if spec.nginx.tls else "nginx-http"],
                         stop_signal="QUIT", reload_signal="HUP", conf_files=("nginx/nginx.conf",)))
    procs.append(Process("prometheus", [binary("prometheus"), f"--config.file={conf('prometheus/prometheus.yml')}",
                                        f"--storage.tsdb.path={layout.data('prometheus')}",
                                        f"--storage.tsdb.retention.time={spec.prometheus.retention_days}d",
                                        f"--web.listen-address={layout.endpoint('prometheus')}",
                                        "--web.enable-lifecycle"],
                         4, "prometheus", layout.ports["prometheus"], reload_signal="HUP",
                         conf_files=("prometheus/prometheus.yml", "prometheus/rules/recon.rules.yml")))
    procs.append(Process("alertmanager", [binary("prometheus-alertmanager"),
                                          f"--config.file={conf('alertmanager/alertmanager.yml')}",
                                          f"--storage.path={layout.data('alertmanager')}",
                                          f"--web.listen-address={layout.endpoint('alertmanager')}",
                                          "--cluster.listen-address="],
                         4, "alertmanager", layout.ports["alertmanager"], reload_signal="HUP",
                         conf_files=("alertmanager/alertmanager.yml",)))
    return procs


def unavailable(spec: StackSpec) -> list[Unavailable]:
    out = []
    if spec.grafana.enabled:
        out.append(Unavailable("grafana", "not available on the local target: no Debian package; "
                               "runs on the docker and kubernetes targets"))
    if spec.jaeger.enabled:
        out.append(Unavailable("jaeger", "not available on the local target: no Debian package; "
                               "runs on the docker and kubernetes targets (traces are off locally)"))
    return out


# -- health ------------------------------------------------------------------------------

def http_get(url: str, timeout: float = 2.0, cafile: str | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    req = urllib.request.Request(url, headers={"User-Agent": "recon-stack-health"})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
