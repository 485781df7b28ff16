"""The service catalogue: every service of the stack, described once.

    Service                     one entry per service (postgres-primary, sentinel, nginx, grafana, ...)
    ├── members(spec)           its processes, each with a group, an ordinal and a local port offset
    ├── ports                   PortDef: spec key ("postgres.port"), extra offset, when it exists
    ├── package / binary        the Debian package and the program it runs
    ├── argv / env              the command line, as placeholders every target fills from its layout
    ├── data / templates        its container data directory; the rendered configs it reads
    ├── health / reload / stop  which health check, which reload signal, how it stops
    ├── stage                   start order (0 first): PostgreSQL before the service before Nginx
    ├── connects_to             Connection(service, port, secret): who it talks to, with what
    └── targets                 where it runs; elsewhere ``unavailable`` says why

Everything else derives from here: the spec's port-conflict check, the layouts' ports and
host names, the local target's supervisord programs and health checks, the inventory, the
status rows, ``ops/system-packages.sh``'s package list, the wiring checks' connection list and
the test helpers. Adding a service is one entry here plus its templates and tests.

This module imports nothing from the project and nothing outside the standard library: the
system-packages script runs it with Debian's python before any virtualenv exists. Services
read spec values by their dotted key (``value(spec, "redis.sentinel.count")``), the same keys
the operator writes in ``Pulumi.<stack>.yaml``.

Trap: process names are stable identities, not roles. ``postgres-primary`` is the node first
initialised as the primary; after ``fab db.failover`` a replica holds that role (release.json
says which) and ``postgres-primary`` may be a fenced or rebuilt replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""PostgreSQL 15's programs (Debian's postgresql-15 puts them here, off PATH)."""

PG_PRIMARY = "postgres-primary"
"""The PostgreSQL node initialised as the primary (see the Trap above)."""
REDIS_PRIMARY = "redis-primary"
SLOTS = ("blue", "green")
SLOT_PORT_OFFSET = {"blue": 0, "green": 100}
"""Local target: replica i of the blue slot listens on backend.port + i, of green on + 100 + i."""
WORKER_PORT_OFFSET = 200
"""Local target: worker i of the blue slot serves its metrics on backend.port + 1 + 200 + i - 1
(18201..), of green on + 300 + i - 1 (18301..): past both slots' backends (replicas <= 50)."""

SECRET_WORDS = ("password", "secret", "token", "key", "cipher", "pass")
"""Names that mark a value as a secret wherever names are checked (run log, --env, cron, spec errors)."""


def is_secret_name(name: str) -> bool:
    return any(w in name.lower() for w in SECRET_WORDS)


def value(spec: Any, key: str) -> Any:
    """The spec's value at a dotted key: ``value(spec, "redis.sentinel.port")``."""
    out = spec
    for part in key.split("."):
        out = getattr(out, part)
    return out


@dataclass(frozen=True)
class Member:
    """One process of a service."""

    name: str
    """``postgres-replica-2``: the identity every target, log and task uses."""
    group: str
    """Identical members share a group (a Kubernetes StatefulSet/Deployment): ``postgres-replica``."""
    ordinal: int | None
    """Position in a stateful group (StatefulSet pod ordinal); None for stateless groups."""
    offset: int = 0
    """Local target: added to each of the service's ports (one port per process on loopback)."""
    slot: str | None = None
    """Backend members: blue or green."""


@dataclass(frozen=True)
class PortDef:
    name: str
    """``main``, or a suffix: the endpoint is ``<member>`` for main, ``<member>-<name>`` otherwise."""
    key: str
    """Spec key holding the port number: ``nginx.https_port``."""
    offset: int = 0
    """Added to the key's value (Alertmanager's cluster port is its web port + 1)."""
    when: str | None = None
    """Spec key that must be true for this port to exist (``nginx.tls``)."""

    def endpoint(self, member: str) -> str:
        return member if self.name == "main" else f"{member}-{self.name}"


@dataclass(frozen=True)
class Connection:
    """This service opens connections to ``service``'s ``port``, authenticating with ``secret``."""

    service: str
    port: str = "main"
    secret: str | None = None
    """Name of the stack secret it presents (None: the peer does not authenticate it yet)."""


@dataclass(frozen=True)
class Service:
    name: str
    kind: str
    """What it is, for health checks and the inventory: postgres, redis, sentinel, backend, worker,
    exporter, nginx, prometheus, alertmanager, grafana, jaeger."""
    members: Callable[[Any], list[Member]]
    ports: tuple[PortDef, ...] = ()
    package: str | None = None
    """Debian package that provides ``binary`` (None: not packaged for Debian)."""
    binary: str | None = None
    """Where that package puts the program: the same path on this machine and in the images."""
    argv: tuple[str, ...] = ()
    """Command line with placeholders filled by :func:`command` from a target's layout."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment with the same placeholders (never a secret's value: ``{secret:NAME}`` is a path)."""
    data: str | None = None
    """Data directory in a container (the local target keeps ``<state>/data/<member>``)."""
    templates: tuple[str, ...] = ()
    """Rendered configs it reads, relative to the config directory; ``{short}`` is the member
    name without the service's prefix (``replica-1``), ``{member}`` the whole name."""
    health: str | None = None
    """Health check (the local target's ``_check_<health>``); None: the process state alone."""
    reload_signal: str | None = None
    stop_signal: str = "TERM"
    stop_wait_s: int = 30
    startsecs: int = 1
    stop_as_group: bool = False
    """Signal the process group on stop (not for PostgreSQL: the postmaster stops its children)."""
    stage: int = 3
    connects_to: tuple[Connection, ...] = ()
    scrape: str | None = None
    """Prometheus job name when Prometheus scrapes its main port's /metrics."""
    targets: frozenset[str] = frozenset({"local", "docker", "kubernetes"})
    unavailable: str | None = None
    """Why it does not run on the targets outside ``targets`` (shown by ``fab status``)."""
    enabled: str | None = None
    """Spec key that must be true for the service to exist (``redis.failover``, ``grafana.enabled``)."""

    def exists(self, spec: Any) -> bool:
        return self.enabled is None or bool(value(spec, self.enabled))

    def runs_on(self, target: str) -> bool:
        return target in self.targets

    def port_defs(self, spec: Any) -> list[PortDef]:
        return [p for p in self.ports if p.when is None or value(spec, p.when)]

    def configs(self, member: str) -> tuple[str, ...]:
        short = member.removeprefix(self.name.split("-")[0] + "-")
        return tuple(t.format(short=short, member=member) for t in self.templates)


# -- members -------------------------------------------------------------------------------

def _one(name: str) -> Callable[[Any], list[Member]]:
    return lambda spec: [Member(name, name, 0)]


def _stateless(name: str) -> Callable[[Any], list[Member]]:
    return lambda spec: [Member(name, name, None)]


def _numbered(group: str, count_key: str, first_offset: int) -> Callable[[Any], list[Member]]:
    """``<group>-1..n``; local port offset ``first_offset + i - 1``."""
    return lambda spec: [Member(f"{group}-{i}", group, i - 1, first_offset + i - 1)
                         for i in range(1, int(value(spec, count_key)) + 1)]


def _backends(spec: Any) -> list[Member]:
    return [Member(f"backend-{slot}-{i}", f"backend-{slot}", None, SLOT_PORT_OFFSET[slot] + i, slot)
            for slot in SLOTS for i in range(1, spec.backend.replicas + 1)]


def _workers(spec: Any) -> list[Member]:
    """``worker-<slot>-i``: each slot has its workers, as it has its backends (which of them run
    on a target: :func:`worker_slots`)."""
    return [Member(f"worker-{slot}-{i}", f"worker-{slot}", None,
                   WORKER_PORT_OFFSET + SLOT_PORT_OFFSET[slot] + i - 1, slot)
            for slot in SLOTS for i in range(1, spec.backend.workers + 1)]


# -- the catalogue ---------------------------------------------------------------------------

_PG = dict(kind="postgres", package="postgresql-15", binary=str(PG_BIN / "postgres"),
           argv=("{bin}", "-D", "{data}", "-c", "config_file={conf:postgres/{short}/postgresql.conf}"),
           data="/var/lib/postgresql/data", health="postgres", stop_signal="INT", stop_wait_s=60,
           ports=(PortDef("main", "postgres.port"),))
_REDIS = dict(kind="redis", package="redis-server", binary="/usr/bin/redis-server", argv=("{bin}", "{data}/redis.conf"),
              data="/data", templates=("redis/{member}.conf",), health="redis",
              ports=(PortDef("main", "redis.port"),))
_APP = (Connection(PG_PRIMARY, secret="postgres_app"), Connection("postgres-replica", secret="postgres_reader"),  # pragma: allowlist secret
        Connection("sentinel", secret="sentinel_auth"), Connection(REDIS_PRIMARY, secret="redis_app"),  # pragma: allowlist secret
        Connection("redis-replica", secret="redis_app"), Connection("jaeger", "otlp"))  # pragma: allowlist secret

CATALOGUE: tuple[Service, ...] = (
    Service(PG_PRIMARY, members=_one(PG_PRIMARY), stage=0,
            templates=("postgres/primary/postgresql.conf", "postgres/pg_hba.conf"),
            connects_to=(Connection("postgres-replica", secret="postgres_replication"),), **_PG),  # pragma: allowlist secret
    Service("postgres-replica", members=_numbered("postgres-replica", "postgres.replicas", 1), stage=1,
            templates=("postgres/{short}/postgresql.conf", "postgres/pg_hba.conf"),
            # after a failover a former replica is the primary the others stream from
            connects_to=(Connection(PG_PRIMARY, secret="postgres_replication"),  # pragma: allowlist secret
                         Connection("postgres-replica", secret="postgres_replication")), **_PG),  # pragma: allowlist secret
    # every Redis asks the Sentinels whom to follow when it starts (after a failover, the
    # process named redis-primary may be a replica of a former replica)
    Service(REDIS_PRIMARY, members=_one(REDIS_PRIMARY), stage=1,
            connects_to=(Connection("sentinel", secret="sentinel_auth"),  # pragma: allowlist secret
                         Connection("redis-replica", secret="redis_replication")), **_REDIS),  # pragma: allowlist secret
    Service("redis-replica", members=_numbered("redis-replica", "redis.replicas", 1), stage=1,
            connects_to=(Connection(REDIS_PRIMARY, secret="redis_replication"), Connection("sentinel", secret="sentinel_auth"),  # pragma: allowlist secret
                         Connection("redis-replica", secret="redis_replication")), **_REDIS),  # pragma: allowlist secret
    Service("sentinel", kind="sentinel", members=_numbered("sentinel", "redis.sentinel.count", 0), stage=2,
            package="redis-sentinel", binary="/usr/bin/redis-sentinel", argv=("{bin}", "{data}/sentinel.conf"),
            data="/data", templates=("redis/{member}.conf",), health="sentinel", enabled="redis.failover",
            ports=(PortDef("main", "redis.sentinel.port"),),
            connects_to=(Connection(REDIS_PRIMARY, secret="redis_sentinel"), Connection("redis-replica", secret="redis_sentinel"),  # pragma: allowlist secret
                         Connection("sentinel", secret="sentinel_auth"))),  # pragma: allowlist secret
    Service("backend", kind="backend", members=_backends, stage=3, binary="{python}",
            argv=("{python}", "-m", "app", "serve", "--host", "{host}", "--port", "{port}"),
            env=(("app", "{app_env}"),), health="backend", stop_wait_s=20, stop_as_group=True,
            ports=(PortDef("main", "backend.port"),), scrape="recon-backend", connects_to=_APP),
    # its one port serves /metrics (app/jobs/worker.py, RECON_WORKER_METRICS_*): the reconciliation
    # and job metrics only workers record; health "exporter" is a GET of it
    Service("worker", kind="worker", members=_workers, stage=3, binary="{python}",
            argv=("{python}", "-m", "app", "worker"),
            env=(("app", "{app_env}"), ("RECON_WORKER_METRICS_HOST", "{host}"),
                 ("RECON_WORKER_METRICS_PORT", "{port}")),
            health="exporter", stop_wait_s=60, startsecs=2, stop_as_group=True,
            ports=(PortDef("main", "backend.port", offset=1),), scrape="recon-worker", connects_to=_APP),
    Service("postgres-exporter", kind="exporter", members=_stateless("postgres-exporter"), stage=3,
            package="prometheus-postgres-exporter", binary="/usr/bin/prometheus-postgres-exporter",
            argv=("{bin}", "--web.listen-address={listen}", "--auto-discover-databases"),
            env=(("DATA_SOURCE_URI", "{primary_endpoint}/postgres?{pg_tls}"),
                 ("DATA_SOURCE_USER", "exporter"), ("DATA_SOURCE_PASS_FILE", "{secret:exporter-password}")),
            health="exporter", ports=(PortDef("main", "exporters.postgres_port"),), scrape="postgres",
            connects_to=(Connection(PG_PRIMARY, secret="postgres_exporter"),)),  # pragma: allowlist secret
    Service("redis-exporter", kind="exporter", members=_stateless("redis-exporter"), stage=3,
            package="prometheus-redis-exporter", binary="/usr/bin/prometheus-redis-exporter",
            argv=("{bin}", "-redis.addr", "redis://{endpoint:redis-primary}", "-web.listen-address", "{listen}"),
            # its own ACL user (infra/redisacl.py), on every target
            env=(("REDIS_USER", "exporter"), ("REDIS_PASSWORD_FILE", "{secret:redis-exporter.json}")),
            health="exporter", ports=(PortDef("main", "exporters.redis_port"),), scrape="redis",
            # -redis.addr is the primary; Prometheus's redis-nodes and redis-sentinels jobs have it
            # scrape every node and Sentinel (/scrape)
            connects_to=(Connection(REDIS_PRIMARY, secret="redis_exporter"),  # pragma: allowlist secret
                         Connection("redis-replica", secret="redis_exporter"),  # pragma: allowlist secret
                         Connection("sentinel", secret="redis_exporter"))),  # pragma: allowlist secret
    Service("node-exporter", kind="exporter", members=_stateless("node-exporter"), stage=3,
            package="prometheus-node-exporter", binary="/usr/bin/prometheus-node-exporter",
            argv=("{bin}", "--web.listen-address={listen}", "--collector.textfile.directory={data}"),
            data="/var/lib/node-exporter", health="exporter", ports=(PortDef("main", "exporters.node_port"),),
            scrape="node", targets=frozenset({"local", "docker"}),
            unavailable="reads the host's /proc and /sys: a namespace's pods get no host paths (the "
                        "cluster's own node metrics cover the nodes)"),
    Service("nginx", kind="nginx", members=_stateless("nginx"), stage=4, package="nginx", binary="/usr/sbin/nginx",
            argv=("{bin}", "-e", "stderr", "-c", "{conf:nginx/nginx.conf}", "-g", "daemon off;"),
            templates=("nginx/nginx.conf",), health="nginx", reload_signal="HUP", stop_signal="QUIT",
            ports=(PortDef("https", "nginx.https_port", when="nginx.tls"), PortDef("http", "nginx.http_port"),
                   PortDef("status", "nginx.status_port")),
            connects_to=(Connection("backend"),)),
    # stage 5, after nginx: the exporter gives up when stub_status does not answer at its start
    Service("nginx-exporter", kind="exporter", members=_stateless("nginx-exporter"), stage=5,
            package="prometheus-nginx-exporter", binary="/usr/bin/prometheus-nginx-exporter",
            argv=("{bin}", "-nginx.scrape-uri=http://{endpoint:nginx-status}/stub_status",
                  "-nginx.retries=30", "-nginx.retry-interval=1s", "-web.listen-address={listen}"),
            health="exporter", ports=(PortDef("main", "exporters.nginx_port"),), scrape="nginx",
            connects_to=(Connection("nginx", "status"),), targets=frozenset({"local", "docker"}),
            unavailable="the edge is the cluster's ingress-nginx controller, which serves its own metrics"),
    Service("prometheus", kind="prometheus", members=_one("prometheus"), stage=4, package="prometheus",
            binary="/usr/bin/prometheus",
            argv=("{bin}", "--config.file={conf:prometheus/prometheus.yml}", "--storage.tsdb.path={data}",
                  "--storage.tsdb.retention.time={prometheus.retention_days}d", "--web.listen-address={listen}"),
            # no --web.enable-lifecycle: /-/reload and /-/quit would answer anyone who reaches the
            # port; config changes reload with SIGHUP (reload_signal), as releases do
            data="/prometheus", templates=("prometheus/prometheus.yml", "prometheus/rules/recon.rules.yml"),
            health="prometheus", reload_signal="HUP", ports=(PortDef("main", "prometheus.port"),),
            scrape="prometheus",
            connects_to=(Connection("backend"), Connection("worker"), Connection("postgres-exporter"),
                         Connection("redis-exporter"), Connection("node-exporter"), Connection("nginx-exporter"),
                         Connection("alertmanager", secret="alertmanager_web"))),  # pragma: allowlist secret
    Service("alertmanager", kind="alertmanager", members=_stateless("alertmanager"), stage=4,
            package="prometheus-alertmanager", binary="/usr/bin/prometheus-alertmanager",
            argv=("{bin}", "--config.file={conf:alertmanager/alertmanager.yml}", "--storage.path={data}",
                  "--web.listen-address={listen}", "--cluster.listen-address=",
                  # basic auth on every endpoint: the silences API silenced alerts for anyone before
                  "--web.config.file={secret:alertmanager-web.yml}"),
            data="/alertmanager", templates=("alertmanager/alertmanager.yml",), health="alertmanager",
            reload_signal="HUP", scrape="alertmanager",
            ports=(PortDef("main", "alertmanager.port"), PortDef("cluster", "alertmanager.port", offset=1))),
    Service("grafana", kind="grafana", members=_stateless("grafana"), enabled="grafana.enabled",
            targets=frozenset({"docker", "kubernetes"}), data="/var/lib/grafana",
            unavailable="no Debian package; runs on the docker and kubernetes targets",
            ports=(PortDef("main", "grafana.port"),),
            connects_to=(Connection("prometheus"), Connection("jaeger", "ui"))),
    Service("jaeger", kind="jaeger", members=_stateless("jaeger"), enabled="jaeger.enabled",
            targets=frozenset({"docker", "kubernetes"}),
            unavailable="no Debian package; runs on the docker and kubernetes targets (traces are off locally)",
            ports=(PortDef("ui", "jaeger.ui_port"), PortDef("otlp", "jaeger.otlp_port"))),
)

SERVICES: dict[str, Service] = {s.name: s for s in CATALOGUE}


# -- questions every target asks ----------------------------------------------------------------

def service(name: str) -> Service:
    try:
        return SERVICES[name]
    except KeyError:
        raise KeyError(f"no service {name!r} in the catalogue; one of {sorted(SERVICES)}") from None


def services(spec: Any, target: str | None = None) -> list[Service]:
    """The services the spec declares (in start order), optionally only those ``target`` runs."""
    out = [s for s in CATALOGUE if s.exists(spec) and (target is None or s.runs_on(target))]
    return sorted(out, key=lambda s: s.stage)


def unavailable(spec: Any, target: str) -> list[Service]:
    """Services the spec declares that ``target`` cannot run (status shows them with the reason)."""
    return [s for s in CATALOGUE if s.exists(spec) and not s.runs_on(target)]


def members(spec: Any, target: str | None = None, service_name: str | None = None) -> Iterator[tuple[Service, Member]]:
    for s in services(spec, target):
        if service_name is None or s.name == service_name:
            for m in s.members(spec):
                yield s, m


def member_names(spec: Any, service_name: str) -> list[str]:
    return [m.name for m in service(service_name).members(spec)] if service(service_name).exists(spec) else []


def slot_members(spec: Any, service_name: str, slot: str) -> list[str]:
    """The members of a slotted service (backend, worker) in ``slot``: ``worker-blue-1``..."""
    return [m.name for m in service(service_name).members(spec) if m.slot == slot]


def worker_slots(spec: Any, target: str) -> list[str]:
    """Slots whose workers run on ``target``. The container targets run both slots' workers, as
    they run both slots. The local target runs the active slot's only: a worker claims any job of
    the shared queue, so an idle slot's version would run jobs before it takes traffic; a switch
    stops the old slot's workers and starts the new slot's (docs/releases.md)."""
    return [spec.backend.active_slot] if target == "local" else list(SLOTS)


def owner(spec: Any, member: str) -> tuple[Service, Member]:
    """The service and member entry of a process name (``backend-green-2``)."""
    for s in CATALOGUE:
        for m in s.members(spec):
            if m.name == member:
                return s, m
    raise KeyError(f"unknown process {member!r}; processes of this spec: "
                   f"{', '.join(m.name for _, m in members(spec))}")


def endpoint_members(spec: Any) -> dict[str, str]:
    """Endpoint name -> the process that listens there (``nginx-https`` -> ``nginx``)."""
    return {p.endpoint(m.name): m.name for s, m in members(spec) for p in s.port_defs(spec)}


def standard_ports(spec: Any) -> dict[str, int]:
    """Endpoint name -> the service's own port (containers: one host per process)."""
    out: dict[str, int] = {}
    for s, m in members(spec):
        for p in s.port_defs(spec):
            out[p.endpoint(m.name)] = int(value(spec, p.key)) + p.offset
    return out


def local_ports(spec: Any) -> dict[str, int]:
    """Endpoint name -> port on the local target, where every process shares one address."""
    out: dict[str, int] = {}
    for s, m in members(spec, "local"):
        for p in s.port_defs(spec):
            out[p.endpoint(m.name)] = int(value(spec, p.key)) + p.offset + m.offset
    return out


def port_key(spec: Any, endpoint: str) -> str:
    """The spec key an endpoint's port comes from, for error messages: ``nginx.http_port (nginx-http)``."""
    for s, m in members(spec):
        for p in s.port_defs(spec):
            if p.endpoint(m.name) == endpoint:
                return f"{p.key} ({endpoint})"
    return f"ports ({endpoint})"


def port_keys() -> list[str]:
    """Every spec key that holds a port (each once), in catalogue order."""
    return list(dict.fromkeys(p.key for s in CATALOGUE for p in s.ports))


def port_problems(spec: Any) -> list[tuple[str, str, str]]:
    """Two local processes on one port, or a port that is taken on these machines."""
    problems: list[tuple[str, str, str]] = []
    seen: dict[int, str] = {}
    for endpoint, port in local_ports(spec).items():
        if port in seen:
            problems.append((port_key(spec, endpoint), repr(port), f"a port not already used by {seen[port]}"))
        elif port == 2024:
            problems.append((port_key(spec, endpoint), "2024", "a free port (2024 is taken on these machines)"))
        else:
            seen[port] = endpoint
    return problems


def replica_slot(member: str) -> str:
    """The physical replication slot a PostgreSQL node streams from: ``replica_2``, ``primary``."""
    return member.removeprefix("postgres-").replace("-", "_")


def debian_packages(target: str = "local") -> list[str]:
    """Debian packages the services of ``target`` run from (every spec: the set does not vary)."""
    return sorted({s.package for s in CATALOGUE if s.package and s.runs_on(target)})


def connections(spec: Any) -> list[tuple[str, str, str, str | None]]:
    """Every edge of the stack: (from service, to service, port name, secret)."""
    present = {s.name for s in services(spec)}
    return [(s.name, c.service, c.port, c.secret) for s in services(spec) for c in s.connects_to
            if c.service in present]


# -- commands --------------------------------------------------------------------------------

@dataclass
class Fill:
    """What a target knows that the catalogue's placeholders ask for."""

    layout: Any
    """Has endpoint(name), bind(name), conf(rel), data(member), secret(name)."""
    python: str = "python3"
    app_env: Callable[[str], dict[str, str]] = field(default=lambda member: {})
    """The service's environment for a backend or worker member (its slot's version)."""
    primary: str = PG_PRIMARY
    """The PostgreSQL node holding the primary role now (``{primary_endpoint}``)."""
    pg_tls: str = "sslmode=disable"
    """``{pg_tls}``: the URL query a PostgreSQL client connects with (the local target: TLS,
    verified against the stack's CA; the containers' private network: plain)."""


def command(s: Service, member: str, fill: Fill) -> list[str]:
    """``s``'s argv for ``member`` with every placeholder filled from ``fill``."""
    return [_fill(arg, s, member, fill) for arg in s.argv]


def environment(s: Service, member: str, fill: Fill) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in s.env:
        if v == "{app_env}":
            out.update(fill.app_env(member))
        else:
            out[k] = _fill(v, s, member, fill)
    return out


def _fill(text: str, s: Service, member: str, fill: Fill) -> str:
    lay = fill.layout
    out, i = [], 0
    while i < len(text):
        if text[i] != "{":
            out.append(text[i])
            i += 1
            continue
        depth, j = 1, i + 1
        while depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        token = _fill(text[i + 1:j - 1], s, member, fill)  # inner placeholders first
        kind, _, arg = token.partition(":")
        if kind == "bin":
            out.append(binary(s.binary or "", fill))
        elif kind == "python":
            out.append(fill.python)
        elif kind == "data":
            out.append(lay.data(member))
        elif kind == "listen":
            out.append(str(lay.bind(s.port_defs(lay.spec)[0].endpoint(member))))
        elif kind == "host":
            out.append(lay.bind(member).host)
        elif kind == "port":
            out.append(str(lay.bind(member).port))
        elif kind == "conf":
            out.append(lay.conf(arg))
        elif kind == "endpoint":
            out.append(str(lay.endpoint(arg)))
        elif kind == "primary_endpoint":
            out.append(str(lay.endpoint(fill.primary)))
        elif kind == "pg_tls":
            out.append(fill.pg_tls)
        elif kind == "secret":
            out.append(lay.secret(arg))
        elif kind == "short":
            out.append(member.removeprefix(s.name.split("-")[0] + "-"))
        else:  # a spec key: {prometheus.retention_days}
            out.append(str(value(lay.spec, token)))
        i = j
    return "".join(out)


def binary(name: str, fill: Fill | None = None) -> str:
    """Where a service's program is: PostgreSQL's under PG_BIN, the rest on PATH or in sbin."""
    import shutil
    if name == "{python}":
        return fill.python if fill else "python3"
    if name.startswith("/"):
        return name
    if name in ("postgres", "initdb", "pg_basebackup", "pg_ctl", "pg_isready", "pg_controldata", "psql",
                "pg_dump", "pg_dumpall", "pg_restore", "pgbench"):
        return str(PG_BIN / name)
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin") or name


def missing_binaries(target: str = "local") -> list[str]:
    """Programs the target's services need that are not installed, with the package to install."""
    out = []
    for s in CATALOGUE:
        if s.package and s.binary and s.runs_on(target) and not Path(binary(s.binary)).exists():
            out.append(f"{s.binary} (apt-get install {s.package})")
    return out


if __name__ == "__main__":  # ops/system-packages.sh: the packages the local target runs from
    print(" ".join(debian_packages("local")))
