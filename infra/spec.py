"""The stack spec: one typed description of the whole topology, read by every target.

    Pulumi.<stack>.yaml ──► load_spec() ──► StackSpec ──► infra.render (configs)
                                                   ├──► infra.local    (supervisord here)
                                                   ├──► infra.docker   (pulumi-docker)
                                                   └──► infra.kubernetes (pulumi-kubernetes)

The spec is read from the ``config:`` block of ``Pulumi.<stack>.yaml``: the same keys that
``pulumi.Config("recon")`` reads in infra/ (``recon:postgres``, ``recon:redis``, ...).
Environment variables override the file: ``RECON_POSTGRES__PORT=15999`` sets
``postgres.port`` (prefix ``RECON_``, nested keys joined by ``__``).

With no stack named, the local defaults apply (every service on loopback, on ports away from
the system defaults so a laptop's own PostgreSQL or Redis is not disturbed).

Validation happens once, here, at load. Every problem is reported together, each with its
key, the bad value and what is allowed (:class:`SpecError`). Secrets are ``SecretStr``: they
print as ``**********`` and never appear in an error.
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from infra import services

PROJECT = "recon"
"""Pulumi project name; config keys are ``recon:<section>``."""

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_STACK = "local"

Target = Literal["local", "docker", "kubernetes"]
SlotName = Literal["blue", "green"]


class SpecError(ValueError):
    """The stack spec is invalid. ``problems`` lists each one as (key, value, allowed).

    The message is written for the operator: one line per problem, secrets never shown.
    """

    def __init__(self, source: str, problems: list[tuple[str, str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the stack spec:"]
        lines += [f"  - {key}: got {value}; {allowed}" for key, value, allowed in problems]
        super().__init__("\n".join(lines))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


Port = int  # validated by the ``port`` field factory below


def port(default: int, description: str) -> Any:
    return Field(default, ge=1024, le=65535, description=description)


class Resources(_Section):
    """Compute for one container: limits and reservations (requests).

    CPU is in cores (0.5 = half a core), memory in MiB. Docker maps these to
    ``cpus``/``memory`` and ``memory_reservation``; Kubernetes to limits and requests.
    """

    cpu_limit: float = Field(1.0, gt=0, le=64)
    memory_limit_mib: int = Field(1024, ge=64, le=262144)
    cpu_request: float = Field(0.5, gt=0, le=64)
    memory_request_mib: int = Field(512, ge=32, le=262144)


class PostgresSpec(_Section):
    """PostgreSQL primary plus ``replicas`` streaming replicas (physical, with slots)."""

    version: Literal[15] = 15
    port: Port = port(15432, "primary port; replica i listens on port + i on the local target")
    replicas: int = Field(1, ge=0, le=5, description="streaming replicas")
    database: str = Field("recon", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    user: str = Field("recon", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                      description="the service's runtime role: DML only, audit_log INSERT-only")
    password: SecretStr | None = Field(None, description="generated per stack when not set")
    owner_user: str = Field("recon_owner", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                            description="owns the database and its tables; migrations run as it")
    reader_user: str = Field("recon_reader", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                             description="read-only role the service reads the replica with")
    replication_user: str = Field("replicator", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    replication_password: SecretStr | None = None
    max_connections: int = Field(100, ge=10, le=5000)
    shared_buffers_mib: int = Field(128, ge=16, le=65536)
    archive_timeout_s: int = Field(30, ge=1, le=60, description="WAL switch at least this often: bounds the RPO (objective 30 s)")
    synchronous_commit: Literal["on", "off", "local", "remote_write", "remote_apply"] = "on"
    storage_gib: int = Field(10, ge=1, le=16384)
    resources: Resources = Resources(cpu_limit=1.0, memory_limit_mib=2048, cpu_request=0.5, memory_request_mib=1024)


class SentinelSpec(_Section):
    count: int = Field(3, ge=1, le=9)
    port: Port = port(26379, "sentinel i listens on port + i on the local target")
    master_name: str = Field("recon", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    quorum: int = Field(2, ge=1, le=9)
    down_after_ms: int = Field(5000, ge=100, le=600000)
    failover_timeout_ms: int = Field(60000, ge=1000, le=3600000)
    parallel_syncs: int = Field(1, ge=1, le=16)


class RedisSpec(_Section):
    """Redis primary, ``replicas`` replicas and a Sentinel group watching them."""

    port: Port = port(16379, "primary port; replica i listens on port + i on the local target")
    replicas: int = Field(1, ge=0, le=5)
    password: SecretStr | None = None
    maxmemory_mib: int = Field(256, ge=16, le=262144)
    appendonly: bool = True
    failover: bool = Field(True, description="run Sentinels; when on, count is odd and >= 3")
    sentinel: SentinelSpec = SentinelSpec()
    storage_gib: int = Field(2, ge=1, le=16384)
    resources: Resources = Resources(cpu_limit=0.5, memory_limit_mib=512, cpu_request=0.1, memory_request_mib=128)


class SlotSpec(_Section):
    version: str = Field("0.1.0", pattern=r"^[A-Za-z0-9_.+-]{1,64}$")
    image: str = Field("recon-app:0.1.0", min_length=1, max_length=256)


class BackendSpec(_Section):
    """The reconciliation service: web replicas per blue/green slot, and job workers."""

    port: Port = port(18000, "web port in a container (a worker's /metrics: port + 1); on the local "
                      "target replica i of the blue slot listens on port + i, of the green slot on "
                      "port + 100 + i, worker i's /metrics on port + 200 + i (blue), + 300 + i (green)")
    replicas: int = Field(2, ge=1, le=50)
    workers: int = Field(1, ge=0, le=50)
    active_slot: SlotName = "blue"
    slots: dict[SlotName, SlotSpec] = Field(
        default_factory=lambda: {"blue": SlotSpec(), "green": SlotSpec()})
    canary_weight: int = Field(0, ge=0, le=100, description="percent of traffic to the idle slot")
    autoscale_max: int = Field(6, ge=1, le=200)
    autoscale_cpu_percent: int = Field(70, ge=10, le=100)
    resources: Resources = Resources()

    @field_validator("slots")
    @classmethod
    def _both_slots(cls, v: dict[str, SlotSpec]) -> dict[str, SlotSpec]:
        missing = {"blue", "green"} - set(v)
        if missing:
            raise ValueError(f"both slots blue and green must be declared; missing {sorted(missing)}")
        return v

    @property
    def idle_slot(self) -> SlotName:
        return "green" if self.active_slot == "blue" else "blue"


class RateLimit(_Section):
    requests_per_second: int = Field(50, ge=1, le=100000)
    burst: int = Field(100, ge=0, le=100000)
    upload_requests_per_second: int = Field(5, ge=1, le=100000)


class NginxSpec(_Section):
    http_port: Port = port(18080, "plain HTTP; redirects to HTTPS except /health")
    https_port: Port = port(18443, "TLS")
    status_port: Port = port(18091, "stub_status for the nginx exporter; never published")
    server_name: str = Field("localhost", pattern=r"^[A-Za-z0-9.*-]{1,253}$")
    publish_address: str = Field("0.0.0.0", pattern=r"^[0-9.]{7,15}$",
                                 description="docker target: host address the edge ports are published on")
    tls: bool = True
    client_max_body_size_mib: int = Field(50, ge=1, le=4096)
    rate_limit: RateLimit = RateLimit()
    worker_connections: int = Field(1024, ge=64, le=65536)
    upstream_max_fails: int = Field(3, ge=0, le=100, description="failed attempts that take a backend out of rotation")
    upstream_fail_timeout_s: int = Field(5, ge=1, le=600,
                                         description="for how long (and the window the failures are counted in)")
    resources: Resources = Resources(cpu_limit=0.5, memory_limit_mib=256, cpu_request=0.1, memory_request_mib=64)


class AlertThresholds(_Section):
    """The specification's three alerts by default: HighErrorRate (5xx share > 0.1 for 2m,
    warning), HighResponseTime (p95 > 1 s for 2m, warning), DatabaseConnectionsHigh (> 0.8 of
    max_connections for 2m, critical)."""

    error_rate: float = Field(0.1, gt=0, lt=1, description="5xx share of requests (HighErrorRate)")
    error_rate_for: str = Field("2m", pattern=r"^[1-9][0-9]*[smh]$", description="HighErrorRate's for:")
    p95_seconds: float = Field(1.0, gt=0, le=60, description="HighResponseTime")
    p95_for: str = Field("2m", pattern=r"^[1-9][0-9]*[smh]$", description="HighResponseTime's for:")
    db_connections_ratio: float = Field(0.8, gt=0, le=1, description="of max_connections")
    db_connections_for: str = Field("2m", pattern=r"^[1-9][0-9]*[smh]$", description="DatabaseConnectionsHigh's for:")
    replication_lag_seconds: int = Field(30, ge=1, le=3600)
    backup_max_age_hours: int = Field(26, ge=1, le=24 * 31)


HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 30.0)
"""The service's request-latency histogram buckets (app/metrics.py; a test keeps them equal):
a latency objective can only count requests at a bucket boundary."""


class SloSpec(_Section):
    """Service level objectives over the HTTP API, alerted on with multiwindow, multi-burn-rate
    rules (Google SRE workbook): the error budget spent 14.4x too fast over 1h and 5m or 6x over
    6h and 30m pages (critical); 3x over 1d and 2h or 1x over 3d and 6h opens a ticket (warning).
    Defaults: the specification's availability target (> 99.9 %) and its load-test ensure
    (p95 < 2 s)."""

    availability_percent: float = Field(99.9, ge=90, lt=100, description="requests answered without a 5xx")
    latency_seconds: float = Field(2.0, description="latency objective's threshold (a histogram bucket)")
    latency_percent: float = Field(95.0, ge=50, lt=100, description="requests answered within latency_seconds")

    @field_validator("latency_seconds")
    @classmethod
    def _a_bucket(cls, v: float) -> float:
        if v not in HTTP_LATENCY_BUCKETS:
            raise ValueError(f"one of the service's histogram buckets {list(HTTP_LATENCY_BUCKETS)}")
        return v


class PrometheusSpec(_Section):
    port: Port = port(19090, "web")
    scrape_interval_s: int = Field(5, ge=1, le=300)
    retention_days: int = Field(15, ge=1, le=3650)
    alerts: AlertThresholds = AlertThresholds()
    slo: SloSpec = SloSpec()
    storage_gib: int = Field(10, ge=1, le=16384)


class AlertmanagerSpec(_Section):
    port: Port = port(19093, "web")
    webhook_url: str | None = Field(None, pattern=r"^https?://",
                                    description="receiver for alerts (a webhook); none = shown in Alertmanager only")
    group_wait_s: int = Field(10, ge=0, le=600, description="wait this long to group a new alert before sending it")


class ExportersSpec(_Section):
    postgres_port: Port = port(19187, "postgres_exporter")
    redis_port: Port = port(19121, "redis_exporter")
    node_port: Port = port(19100, "node_exporter")
    nginx_port: Port = port(19113, "nginx exporter")


class GrafanaSpec(_Section):
    enabled: bool = True
    port: Port = port(13000, "web")
    admin_password: SecretStr | None = None


class JaegerSpec(_Section):
    enabled: bool = True
    ui_port: Port = port(16686, "query UI")
    otlp_port: Port = port(14318, "OTLP over HTTP")


class S3Spec(_Section):
    endpoint: str = Field(..., pattern=r"^https?://")
    bucket: str = Field(..., pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = "recon"
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    verify_tls: bool = True


class Retention(_Section):
    full: int = Field(2, ge=1, le=9999999, description="full backups kept")
    diff: int = Field(7, ge=1, le=9999999, description="differential backups kept")
    archive_months: int = Field(12, ge=1, le=1200, description="monthly archive backups kept")


class BackupSpec(_Section):
    """pgBackRest policy, the logical export, Redis and file backups, and the offsite copy."""

    enabled: bool = True
    stanza: str = Field("recon", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    compress_type: Literal["zst", "lz4", "gz", "none"] = "zst"
    compress_level: int = Field(1, ge=0, le=19)
    process_max: int = Field(2, ge=1, le=64)
    cipher_pass: SecretStr | None = Field(None, description="repository encryption key; generated per stack when not set")
    retention: Retention = Retention()
    schedule_full: str = Field("30 1 * * 0", description="cron: weekly full")
    schedule_diff: str = Field("30 1 * * 1-6", description="cron: daily differential")
    schedule_incr: str = Field("0 */6 * * *", description="cron: incremental")
    schedule_archive: str = Field("0 3 1 * *", description="cron: monthly archive")
    s3: S3Spec | None = None
    logical_export: bool = Field(True, description="also write a pg_dump -Fc logical export with each backup")
    verify_after_backup: bool = Field(True, description="run pgbackrest verify after each backup")
    cipher_type: Literal["aes-256-cbc", "none"] = Field(
        "aes-256-cbc", description="repository encryption; the key is backup.cipher_pass (a secret)")
    restore_timeout_s: int = Field(600, ge=30, le=86400, description="recovery must finish within this")

    @field_validator("schedule_full", "schedule_diff", "schedule_incr", "schedule_archive")
    @classmethod
    def _cron(cls, v: str) -> str:
        fields = v.split()
        if len(fields) != 5:
            raise ValueError(f"a cron schedule has 5 fields (minute hour day month weekday), got {len(fields)}")
        return v


class ReleaseSpec(_Section):
    """Gates for switch and canary steps (Argo Rollouts style analysis)."""

    max_error_rate: float = Field(0.01, ge=0, lt=1)
    max_p95_seconds: float = Field(0.5, gt=0, le=60)
    health_timeout_s: int = Field(60, ge=1, le=3600)
    analysis_window_s: int = Field(30, ge=5, le=3600)


class ImagesSpec(_Section):
    """Where the stack's images come from (infra/images.py): all built from Debian packages."""

    base: str = Field("debian:bookworm-slim", min_length=1, max_length=256,
                      description="base image to pull when base_source is pull")
    base_source: Literal["pull", "build"] = Field(
        "build", description="pull: the base from a registry; build: debootstrap --variant=minbase "
                             "bookworm here and docker import it (no registry needed)")
    registry: str = Field("", pattern=r"^([a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*)?$",
                          description="prefix of image references for a cluster (empty: the local engine)")
    debian_mirror: str = Field("http://deb.debian.org/debian", pattern=r"^https?://",
                               description="Debian mirror for debootstrap and apt inside builds")


class SshSpec(_Section):
    """How ops tasks reach the stack's hosts over SSH (Fabric). Unset: run commands locally."""

    host: str = "127.0.0.1"
    port: int = Field(22, ge=1, le=65535)
    login: str = Field("root", description="SSH user; commands run as the service user via runuser")
    key_filename: str | None = None
    connect_timeout_s: int = Field(10, ge=1, le=300)


class OpsSpec(_Section):
    ssh: SshSpec | None = None
    run_log: Path | None = Field(None, description="JSON-lines run log; default <state>/runlog.jsonl")


_STACK_FILE: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("stack_file", default={})


class _StackFileSource(PydanticBaseSettingsSource):
    """The ``recon:*`` keys of the stack file being loaded (below the environment)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_STACK_FILE.get())


class StackSpec(BaseSettings):
    """The whole stack. Defaults are the local stack's."""

    model_config = SettingsConfigDict(
        env_prefix="RECON_", env_nested_delimiter="__", extra="forbid", validate_default=True)

    name: str = Field(LOCAL_STACK, pattern=r"^[a-z][a-z0-9-]{0,39}$")
    target: Target = "local"
    host: str = Field("127.0.0.1", description="address services bind to on the local target")
    state_dir: Path | None = Field(None, description="local target: all state lives here; "
                                   "default <repo>/.state/<name>")
    namespace: str = Field("recon", pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    postgres: PostgresSpec = PostgresSpec()
    redis: RedisSpec = RedisSpec()
    backend: BackendSpec = BackendSpec()
    nginx: NginxSpec = NginxSpec()
    prometheus: PrometheusSpec = PrometheusSpec()
    alertmanager: AlertmanagerSpec = AlertmanagerSpec()
    exporters: ExportersSpec = ExportersSpec()
    grafana: GrafanaSpec = GrafanaSpec()
    jaeger: JaegerSpec = JaegerSpec()
    backup: BackupSpec = BackupSpec()
    release: ReleaseSpec = ReleaseSpec()
    images: ImagesSpec = ImagesSpec()
    ops: OpsSpec = OpsSpec()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence, highest first: explicit overrides (init kwargs), the environment
        # (RECON_*), the stack file, the defaults.
        return init_settings, env_settings, _StackFileSource(settings_cls)

    @property
    def state_path(self) -> Path:
        return (self.state_dir or REPO_ROOT / ".state" / self.name).resolve()

    def local_ports(self) -> dict[str, int]:
        """Every listening port of the local target, by endpoint name (infra/services.py)."""
        return services.local_ports(self)

    def cross_check(self) -> list[tuple[str, str, str]]:
        """Rules that span keys. Returns (key, value, allowed) for each problem."""
        problems: list[tuple[str, str, str]] = []
        s = self.redis.sentinel
        if self.redis.failover:
            if s.count < 3 or s.count % 2 == 0:
                problems.append(("redis.sentinel.count", repr(s.count),
                                 "with failover on, an odd number of Sentinels, at least 3"))
            majority = s.count // 2 + 1
            if not majority <= s.quorum <= s.count:
                problems.append(("redis.sentinel.quorum", repr(s.quorum),
                                 f"a majority of the {s.count} Sentinels: {majority}..{s.count}"))
        problems += services.port_problems(self)
        pg, seen = self.postgres, {"postgres": "the superuser", "exporter": "the exporter's role"}
        for key in ("owner_user", "user", "reader_user", "replication_user"):
            name = getattr(pg, key)
            if name in seen:
                problems.append((f"postgres.{key}", repr(name), f"a role of its own (not {seen[name]})"))
            seen.setdefault(name, f"postgres.{key}")
        if self.backend.canary_weight and self.backend.slots[self.backend.idle_slot].version == \
                self.backend.slots[self.backend.active_slot].version:
            problems.append(("backend.canary_weight", repr(self.backend.canary_weight),
                             "0 while both slots run the same version (a canary needs a new version "
                             "in the idle slot)"))
        if self.backend.autoscale_max < self.backend.replicas:
            problems.append(("backend.autoscale_max", repr(self.backend.autoscale_max),
                             f"at least backend.replicas ({self.backend.replicas})"))
        for section in ("postgres", "redis", "backend", "nginx"):
            r: Resources = getattr(self, section).resources
            if r.cpu_request > r.cpu_limit:
                problems.append((f"{section}.resources.cpu_request", repr(r.cpu_request),
                                 f"at most cpu_limit ({r.cpu_limit})"))
            if r.memory_request_mib > r.memory_limit_mib:
                problems.append((f"{section}.resources.memory_request_mib", repr(r.memory_request_mib),
                                 f"at most memory_limit_mib ({r.memory_limit_mib})"))
        return problems


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def read_stack_config(path: Path) -> dict[str, Any]:
    """The ``recon:*`` keys of a Pulumi stack file, without the project prefix.

    Pulumi secrets (``{secure: ...}``) are ciphertext only the Pulumi engine can open; they are
    skipped here and must reach the local tools through the environment (``RECON_...``).
    """
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [("(file)", "unparseable YAML", f"valid YAML ({exc})")]) from exc
    if not isinstance(doc, dict):
        raise SpecError(str(path), [("(file)", type(doc).__name__, "a mapping with a config: key")])
    config = doc.get("config") or {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        ns, _, name = str(key).partition(":")
        if ns != PROJECT:
            continue  # other providers' keys (docker:host, kubernetes:context, ...)
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue
        out[name] = _drop_secure(value)
    return out


def _drop_secure(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_secure(v) for k, v in value.items()
                if not (isinstance(v, dict) and set(v) == {"secure"})}
    return value


def load_spec(stack: str | None = None, *, root: Path = REPO_ROOT,
              overrides: dict[str, Any] | None = None) -> StackSpec:
    """Load and validate the spec of ``stack`` (None or "local": the local defaults).

    Precedence: ``overrides`` > ``RECON_*`` environment > the stack file > defaults.
    Raises :class:`SpecError` naming every problem.
    """
    stack = stack or os.environ.get("RECON_STACK") or LOCAL_STACK
    data: dict[str, Any] = {}
    path = stack_file(stack, root)
    source = str(path)
    if path.exists():
        data = read_stack_config(path)
    elif stack != LOCAL_STACK:
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))
        raise SpecError(source, [("--stack", repr(stack), f"one of {[LOCAL_STACK] + known}")])
    else:
        source = "local defaults"
    data.setdefault("name", stack)
    token = _STACK_FILE.set(data)
    try:
        spec = StackSpec(**(overrides or {}))
    except ValidationError as exc:
        raise SpecError(source, [_problem(err) for err in exc.errors()]) from None
    finally:
        _STACK_FILE.reset(token)
    problems = spec.cross_check()
    if problems:
        raise SpecError(source, problems)
    return spec


def _problem(err: dict[str, Any]) -> tuple[str, str, str]:
    key = ".".join(str(p) for p in err["loc"]) or "(root)"
    value = err.get("input")
    shown = "a secret value" if "password" in key or "secret" in key or "cipher" in key else repr(value)
    if err["type"] == "extra_forbidden":
        return key, shown, "no such key (check the spelling against docs/spec.md)"
    if err["type"] == "missing":
        return key, "nothing", "a value is required"
    return key, shown, err["msg"]
