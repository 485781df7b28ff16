"""The local target: ``up``, ``down`` and ``status`` of the whole stack on this machine.

``up`` is idempotent: it renders every config, bootstraps what is missing, starts what is not
running in dependency order (stage by stage, waiting for health), restarts or reloads what
reads a changed config, and touches nothing else. A second ``up`` on a healthy stack reports
"no change".
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import redis

from infra.layout import LocalLayout
from infra.local import bootstrap
from infra.local.errors import LocalTargetError, TargetError
from infra.local.privileges import RunAs, service_identity
from infra.local.processes import Process, app_env, http_get, migrate_env, plan
from infra.local.secrets import load_or_create
from infra.local.supervisor import Supervisor, render_config
from infra.local.tls import ensure_certificates
from infra.pgbackrest import archive_command
from infra.render import RenderContext, Rendered, render_all, write_all
from infra.services import PG_PRIMARY, REDIS_PRIMARY, missing_binaries, unavailable
from infra.spec import StackSpec

Progress = Callable[[str], None]



@dataclass
class Health:
    ok: bool
    detail: str


@dataclass
class ServiceStatus:
    service: str
    kind: str
    state: str
    """supervisor state (RUNNING, STOPPED, FATAL...) or NOT_AVAILABLE"""
    pid: int | None
    port: int | None
    healthy: bool | None
    detail: str
    uptime_s: int | None = None
    release: dict | None = None
    """Only on the ``release`` row: active slot, versions, canary weight, database roles."""


@dataclass
class UpResult:
    started: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    bootstrapped: list[str] = field(default_factory=list)
    configs_changed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.started or self.restarted or self.reloaded or self.bootstrapped
                    or self.configs_changed)


class LocalTarget:
    def __init__(self, spec: StackSpec, progress: Progress | None = None, state=None):
        """``state``: a release state to see instead of release.json (a change not yet saved)."""
        from infra.local import release
        self.declared = spec
        self.release = state or release.load(spec)
        """Runtime release and database roles (release.json), laid over the spec."""
        self.spec = spec = release.effective_spec(spec, self.release)
        self.layout = LocalLayout(spec)
        self.root = self.layout.root
        self.supervisor = Supervisor(self.layout)
        self.say: Progress = progress or (lambda msg: None)
        self.starting = False
        """True while up() brings the stack up stage by stage (see _check_redis)."""

    # -- helpers -------------------------------------------------------------------------
    def with_release(self, state) -> "LocalTarget":
        """This stack as it will be once ``state`` (not yet saved) is applied."""
        return LocalTarget(self.declared, self.say, state=state)

    def render(self, only=None) -> dict[str, Rendered]:
        """The stack's configs as this target renders them (``only``: just these paths)."""
        return render_all(self.spec, self.layout, self.render_context(), only=only)

    def supervisor_config(self, procs: list[Process] | None = None) -> str:
        return render_config(self.spec, self.layout, procs if procs is not None else self.processes(),
                             service_identity(create=False).user)

    def app_env(self, slot: str | None = None) -> dict[str, str]:
        """The service's environment for ``slot`` (default: the active one); no secret in it."""
        return app_env(self.spec, self.layout, slot or self.spec.backend.active_slot)

    def migrate_env(self, slot: str | None = None) -> dict[str, str]:
        """What ``python -m app migrate`` runs with for ``slot``: as the owner role; no secret in it."""
        return migrate_env(self.spec, self.layout, slot or self.spec.backend.active_slot)

    @property
    def service_user(self) -> str | None:
        """The OS user the services run as (None: whoever runs fab)."""
        return service_identity(create=False).user

    def redis_auth(self, consumer: str) -> dict[str, str]:
        """Keyword arguments for a redis client acting as ``consumer``: ``app`` (the service's
        rights), ``ops`` (INFO, ROLE, BGSAVE: checks and backups) or ``sentinel`` (a Sentinel's
        own password, for SENTINEL commands)."""
        secrets = self.secrets()
        if consumer == "sentinel":
            return {"password": secrets["sentinel_auth"].get_secret_value()}
        if consumer not in ("app", "ops"):
            raise ValueError(f"redis consumer {consumer!r}: one of app, ops, sentinel")
        return {"username": consumer, "password": secrets[f"redis_{consumer}"].get_secret_value()}

    def render_context(self) -> RenderContext:
        return RenderContext(tls_cert=self.layout.tls("server.crt"), tls_key=self.layout.tls("server.key"),
                             pg_tls=self.layout.pg_tls(),
                             archive_command=self._archive_command(),
                             postgres_primary=self.release.postgres.primary)

    def _archive_command(self) -> str | None:
        if not self.spec.backup.enabled:
            return None
        return archive_command(self.spec, self.layout)

    def processes(self) -> list[Process]:
        procs = plan(self.spec, self.layout, slots=self.release.running_slots(),
                     primary=self.release.postgres.primary)
        roles = self.release.postgres
        procs = [p for p in procs if p.name not in roles.fenced]
        for p in procs:  # after a failover the promoted node starts first
            if p.kind == "postgres":
                p.stage = 0 if p.name == roles.primary else 1
            if p.kind == "backend":  # the slot's version settings (fab deploy --env)
                p.env.update(self.release.slots[p.name.split("-")[1]].env)
        return sorted(procs, key=lambda p: p.stage)

    def secrets(self):
        return load_or_create(self.spec, self.root / "secrets")

    @property
    def cafile(self) -> str:
        return str(self.root / "tls" / "ca.crt")

    # -- up ------------------------------------------------------------------------------
    def up(self, dry_run: bool = False) -> UpResult:
        self.starting = True
        try:
            return self._up(dry_run)
        finally:
            self.starting = False

    def _up(self, dry_run: bool) -> UpResult:
        t0 = time.monotonic()
        result = UpResult()
        missing = missing_binaries("local")
        if missing:
            raise TargetError("missing programs the local target needs: " + ", ".join(missing))
        procs = self.processes()
        if dry_run:
            for p in procs:
                self.say(f"would run {p.name} (stage {p.stage}): {p.command_line}")
            return result

        who = service_identity()
        self.say(f"state directory {self.root}" + (f"; services run as {who.user!r}" if who.user else ""))
        bootstrap.prepare_dirs(self.layout, who)
        secrets = self.secrets()
        bootstrap.write_credentials(self.spec, self.layout, secrets, who)
        if self.spec.backup.enabled:
            bootstrap.prepare_backup(self.spec, self.layout, secrets, who)
        if ensure_certificates(self.root / "tls", self.spec.nginx.server_name, self.spec.host):
            result.configs_changed.append("tls/server.crt")
        who.chown(self.root / "tls", recursive=True)

        files = self.render()
        result.configs_changed += write_all(files, self.root / "conf")
        sup_conf = self.supervisor_config(procs)
        sup_changed = _write_if_changed(Path(self.layout.conf("supervisord.conf")), sup_conf)

        if not self.supervisor.running():
            self.say("starting supervisord")
            self.supervisor.start_daemon()
        elif sup_changed:
            self.say("supervisord config changed: rereading")
            self.supervisor.reread()
        if sup_changed:
            result.configs_changed.append("supervisord.conf")

        changed_conf = set(result.configs_changed)
        info = self.supervisor.info()
        self._upgrade_replication_conninfo(info)
        for stage in sorted({p.stage for p in procs}):
            stage_procs = [p for p in procs if p.stage == stage]
            not_running = [p for p in stage_procs if info.get(p.name, {}).get("statename") != "RUNNING"]
            self._before_stage(stage, who, secrets, result, not_running)
            for p in stage_procs:
                running = info.get(p.name, {}).get("statename") == "RUNNING"
                touched = changed_conf.intersection(p.conf_files)
                if p.kind in ("nginx", "postgres") and "tls/server.crt" in changed_conf:
                    touched = touched | {"tls/server.crt"}  # a re-issued certificate (names changed, expiry)
                if p.kind in ("redis", "sentinel"):
                    src = self.root / "conf" / p.conf_files[0]
                    work = Path(self.layout.data(p.name)) / ("sentinel.conf" if p.kind == "sentinel" else "redis.conf")
                    extra = bootstrap.sentinel_secret_lines(self.spec, secrets) if p.kind == "sentinel" else ""
                    if bootstrap.sync_working_config(src, work, who, extra) and running:
                        touched = touched or {p.conf_files[0]}
                    elif not touched:
                        touched = set()
                if not running:
                    self.say(f"starting {p.name}")
                    self.supervisor.start(p.name, wait=False)
                    result.started.append(p.name)
                elif touched and p.reload_signal:
                    self.say(f"reloading {p.name} ({', '.join(sorted(touched))} changed)")
                    self.supervisor.signal(p.name, p.reload_signal)
                    result.reloaded.append(p.name)
                elif touched:
                    self.say(f"restarting {p.name} ({', '.join(sorted(touched))} changed)")
                    self.supervisor.stop(p.name)
                    self.supervisor.start(p.name)
                    result.restarted.append(p.name)
            self.wait_healthy(stage_procs, secrets)
            self._after_stage(stage, secrets, result)
        result.seconds = time.monotonic() - t0
        return result

    def _before_stage(self, stage: int, who: RunAs, secrets, result: UpResult,
                      not_running: list[Process]) -> None:
        primary = self.release.postgres.primary
        if stage == 0 and primary == PG_PRIMARY and bootstrap.init_primary(self.layout, secrets, who):
            self.say("initialised the PostgreSQL primary (initdb)")
            result.bootstrapped.append(PG_PRIMARY)
        if stage == 1:  # every node in the plan (not fenced) but the primary is a replica
            for proc in [p.name for p in self.processes() if p.kind == "postgres" and p.name != primary]:
                if bootstrap.clone_replica(self.spec, self.layout, proc, who, secrets, primary):
                    self.say(f"cloned {proc} from {primary} (pg_basebackup)")
                    result.bootstrapped.append(proc)
        if any(p.kind in ("backend", "worker") for p in not_running):
            self._migrate()  # before any copy of the service starts on an old schema

    def _after_stage(self, stage: int, secrets, result: UpResult) -> None:
        if stage == 0 and self.release.postgres.primary == PG_PRIMARY:
            bootstrap.configure_primary(self.spec, self.layout, secrets)
        if stage == 0 and self.spec.backup.enabled:
            bootstrap.stanza_create(self.spec, self.layout, service_identity())

    def _upgrade_replication_conninfo(self, info: dict) -> None:
        """Nodes cloned by an older release read the service's pgpass (which no longer holds the
        replication role's line) and ask for TLS only if offered: bring them up to date (a reload
        suffices)."""
        for proc in self.layout.postgres_nodes():
            auto = Path(self.layout.data(proc)) / "postgresql.auto.conf"
            if bootstrap.upgrade_primary_conninfo(auto, self.layout.secret("pgpass"),
                                                  self.layout.secret("pgpass-replication"), self.layout.pg_tls()):
                self.say(f"{proc}: primary_conninfo now uses the replication role's own password file and "
                         "verified TLS")
                if info.get(proc, {}).get("statename") == "RUNNING":
                    self.supervisor.signal(proc, "HUP")

    def _migrate(self) -> None:
        """Apply the service's migrations (``python -m app migrate``) before it starts."""
        from infra.local.processes import run_app
        res = run_app(self.spec, self.layout, "migrate")
        if res.returncode != 0:
            raise TargetError("database migrations failed (python -m app migrate):\n"
                              + (res.stderr or res.stdout).strip()[-1500:])
        last = (res.stdout.strip().splitlines() or ["migrations up to date"])[-1]
        self.say(f"migrations: {last}")

    def wait_healthy(self, procs: list[Process], secrets, timeout: float = 60) -> None:
        """Return once every process is healthy as ``status`` judges it (:meth:`assess`): the
        supervisor says RUNNING (past startsecs) and the real check passes. ``fab up`` returns only
        when ``fab status`` would exit 0."""
        deadline = time.monotonic() + timeout
        pending = list(procs)
        while True:
            info = self.supervisor.info()
            with ThreadPoolExecutor(max_workers=8) as pool:
                rows = list(pool.map(lambda p: (p, self.assess(p, info, secrets)), pending))
            pending = [p for p, row in rows if not row.healthy]
            if not pending:
                return
            last = {p.name: row for p, row in rows}
            for p in pending:
                if last[p.name].state in ("FATAL", "EXITED", "BACKOFF", "STOPPED"):
                    raise TargetError(f"{p.name} is {last[p.name].state}: {last[p.name].detail}\nlast lines of "
                                      f"{self.layout.log(p.name + '.log')}:\n{self.supervisor.tail(p.name)}")
            if time.monotonic() > deadline:
                raise TargetError("not healthy after %ds: " % timeout + "; ".join(
                    f"{p.name}: {last[p.name].state}, {last[p.name].detail}" for p in pending))
            time.sleep(0.25)

    def assess(self, p: Process, info: dict, secrets, now: float | None = None) -> ServiceStatus:
        """The one definition of healthy, for ``fab up``, ``fab status``, the drills and the tests:
        supervisord has the process RUNNING and its real health check passes."""
        st = info.get(p.name)
        if st is None:
            return ServiceStatus(p.name, p.kind, "DOWN" if not info else "NOT_CONFIGURED",
                                 None, p.port, False, "supervisord not running" if not info else
                                 "not in the supervisor config; run fab up")
        state = st["statename"]
        if state != "RUNNING":
            return ServiceStatus(p.name, p.kind, state, None, p.port, False,
                                 st.get("spawnerr") or st.get("description") or state.lower())
        h = self.check(p, secrets) if secrets else Health(False, "no secrets: run fab up")
        return ServiceStatus(p.name, p.kind, state, st["pid"], p.port, h.ok, h.detail,
                             int((now or time.time()) - st["start"]))

    # -- health --------------------------------------------------------------------------
    def check(self, p: Process, secrets) -> Health:
        try:
            return getattr(self, f"_check_{p.health or 'process'}")(p, secrets)
        except Exception as exc:  # a health check reports, it never raises
            return Health(False, f"{type(exc).__name__}: {exc}".splitlines()[0][:200])

    def _check_postgres(self, p: Process, secrets) -> Health:
        with bootstrap.superuser_conn(self.spec, self.layout, secrets, proc=p.name) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            if p.name == self.release.postgres.primary:
                if in_recovery:
                    return Health(False, "in recovery (expected a primary)")
                n = conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                                 ).fetchone()[0]
                return Health(True, f"primary, {n} replica(s) streaming")
            if not in_recovery:
                return Health(False, "not in recovery (expected a replica)")
            row = conn.execute("SELECT status FROM pg_stat_wal_receiver").fetchone()
            lag = conn.execute("SELECT COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"
                               ).fetchone()[0]
            if not row or row[0] != "streaming":
                return Health(False, f"wal receiver {row[0] if row else 'absent'}")
            return Health(True, f"replica, streaming, replay lag {float(lag):.1f}s")

    def _check_redis(self, p: Process, secrets) -> Health:
        r = redis.Redis(host=self.spec.host, port=p.port, socket_timeout=1, **self.redis_auth("ops"))
        repl = r.info("replication")
        role = repl["role"]
        if role == "slave":
            if repl.get("master_link_status") != "up":
                return Health(False, f"replica, link to master {repl.get('master_link_status')}")
            return Health(True, f"replica of {repl['master_host']}:{repl['master_port']}")
        # While `fab up` works stage by stage, the Sentinels (stage 2) may still run an old config
        # and name a master from before: their word counts once they are up to date, which the
        # invariant check at the end of up (one master, named by every Sentinel) holds.
        named = None if self.starting else self.sentinels_master()
        if named is not None and named != (self.spec.host, p.port):
            return Health(False, f"master, but the Sentinels name {named[0]}:{named[1]}: a stale master "
                                 "awaiting demotion")
        return Health(True, f"master, {repl.get('connected_slaves', 0)} replica(s)")

    def sentinels_master(self) -> tuple[str, int] | None:
        """The master the first answering Sentinel names (None: no Sentinels, or none answers)."""
        for proc in self.layout.sentinels():
            ep = self.layout.endpoint(proc)
            try:
                addr = redis.Redis(host=ep.host, port=ep.port, socket_timeout=1, decode_responses=True,
                                   **self.redis_auth("sentinel")).execute_command("SENTINEL", "get-master-addr-by-name",
                                                     self.spec.redis.sentinel.master_name)
            except redis.RedisError:
                continue
            if addr:
                return addr[0], int(addr[1])
        return None

    def _check_sentinel(self, p: Process, secrets) -> Health:
        name = self.spec.redis.sentinel.master_name
        r = redis.Redis(host=self.spec.host, port=p.port, socket_timeout=1, decode_responses=True,
                        **self.redis_auth("sentinel"))
        addr = r.execute_command("SENTINEL", "get-master-addr-by-name", name)
        try:
            r.execute_command("SENTINEL", "ckquorum", name)
        except redis.ResponseError as exc:
            return Health(False, f"quorum: {exc}")
        return Health(True, f"master {addr[0]}:{addr[1]}, quorum reachable")

    def _check_backend(self, p: Process, secrets) -> Health:
        code, body = http_get(f"http://{self.spec.host}:{p.port}/health")
        ui, _ = http_get(f"http://{self.spec.host}:{p.port}/ui/health")
        return Health(code == 200 and ui == 200, f"/health {code}, /ui/health {ui}")

    def _check_process(self, p: Process, secrets) -> Health:
        """No health endpoint (workers): the supervisor's state is the check."""
        st = self.supervisor.info().get(p.name, {})
        return Health(st.get("statename") == "RUNNING", st.get("statename", "unknown").lower())

    def _check_exporter(self, p: Process, secrets) -> Health:
        code, _ = http_get(f"http://{self.spec.host}:{p.port}/metrics", timeout=5)
        return Health(code == 200, f"/metrics {code}")

    def _check_nginx(self, p: Process, secrets) -> Health:
        scheme = "https" if self.spec.nginx.tls else "http"
        code, _ = http_get(f"{scheme}://{self.spec.host}:{p.port}/health", cafile=self.cafile)
        if code != 200:
            return Health(False, f"{scheme} /health {code}")
        code, _ = http_get(f"{scheme}://{self.spec.host}:{p.port}/nginx/upstream-health", cafile=self.cafile)
        if code != 200:
            return Health(False, f"{scheme} /health 200, backend via nginx {code}")
        ui, _ = http_get(f"{scheme}://{self.spec.host}:{p.port}/ui/health", cafile=self.cafile)
        return Health(ui == 200, f"{scheme} /health 200, backend via nginx 200, /ui/health {ui}")

    def _check_alertmanager(self, p: Process, secrets) -> Health:
        code, _ = http_get(f"http://{self.spec.host}:{p.port}/-/ready",
                           auth=("recon", secrets["alertmanager_web"].get_secret_value()))
        return Health(code == 200, f"/-/ready {code} (basic auth)")

    def _check_prometheus(self, p: Process, secrets) -> Health:
        code, _ = http_get(f"http://{self.spec.host}:{p.port}/-/ready")
        return Health(code == 200, f"/-/ready {code}")


    # -- status --------------------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        procs = self.processes()
        info = self.supervisor.info()
        secrets = self.secrets() if (self.root / "secrets" / "secrets.json").exists() else None
        now = time.time()

        def one(p: Process) -> ServiceStatus:
            return self.assess(p, info, secrets, now)

        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(pool.map(one, procs))
        for u in unavailable(self.spec, "local"):
            rows.append(ServiceStatus(u.name, u.kind, "NOT_AVAILABLE", None, None, None,
                                      f"not available on the local target: {u.unavailable}"))
        if self.spec.backup.enabled and secrets and info:
            rows.append(self._archiving_row(secrets))
        rows.append(self._release_row())
        return rows

    def _archiving_row(self, secrets) -> ServiceStatus:
        """WAL archiving from the current primary: last archived segment, its age, failures.
        Unhealthy when the latest attempt failed (archive_command keeps failing) or it cannot be read."""
        primary = self.release.postgres.primary
        try:
            with bootstrap.superuser_conn(self.spec, self.layout, secrets, proc=primary) as conn:
                row = conn.execute(
                    "SELECT archived_count, last_archived_wal, EXTRACT(EPOCH FROM now() - last_archived_time), "
                    "failed_count, last_failed_wal, last_failed_time > COALESCE(last_archived_time, '-infinity') "
                    "FROM pg_stat_archiver").fetchone()
        except Exception as exc:  # noqa: BLE001 - a status row reports, it never raises
            return ServiceStatus("wal-archiving", "archiving", "UNKNOWN", None, None, False,
                                 f"cannot read pg_stat_archiver on {primary}: {str(exc).splitlines()[0][:150]}")
        archived, last_wal, age, failed, failed_wal, failing = row
        detail = (f"from {primary}: last {last_wal or 'none yet'}"
                  + (f" {float(age):.0f}s ago" if age is not None else "") + f", {archived} archived, {failed} failed")
        if failing:
            return ServiceStatus("wal-archiving", "archiving", "FAILING", None, None, False,
                                 detail + f"; the latest attempt ({failed_wal}) failed: see "
                                 f"{self.layout.log(primary + '.log')} and runbooks/postgres-failover.md")
        return ServiceStatus("wal-archiving", "archiving", "OK", None, None, True, detail)

    def _release_row(self) -> ServiceStatus:
        """The release state as a status row (healthy None: information, not a check)."""
        from infra.local.release import summary
        r = self.release
        detail = f"active {r.active_slot} ({r.slots[r.active_slot].version})"
        idle = r.idle_slot
        detail += f"; {idle} {r.slots[idle].version} " + ("running" if r.slots[idle].running else "stopped")
        detail += f"; canary {r.canary_weight}% to {idle}" if r.canary_weight else ""
        detail += f"; previous {r.previous_slot}" if r.previous_slot else ""
        detail += f"; postgres primary {r.postgres.primary}"
        detail += f", fenced {', '.join(r.postgres.fenced)}" if r.postgres.fenced else ""
        return ServiceStatus("release", "release", f"ACTIVE:{r.active_slot}", None, None, None, detail,
                             release=summary(r))

    def endpoints(self) -> dict[str, str]:
        s, lay = self.spec, self.layout
        out = {}
        if s.nginx.tls:
            out["api (https, via nginx)"] = f"https://{s.host}:{s.nginx.https_port}/"
        out["api (http, via nginx)"] = f"http://{s.host}:{s.nginx.http_port}/"
        out["prometheus"] = f"http://{lay.endpoint('prometheus')}/"
        out["alertmanager"] = f"http://{lay.endpoint('alertmanager')}/"
        pg = lay.endpoint(PG_PRIMARY)
        out["postgres (primary)"] = f"postgresql://{s.postgres.user}@{pg}/{s.postgres.database}"
        for proc in lay.postgres_replicas():
            out[f"postgres ({proc})"] = f"postgresql://{s.postgres.user}@{lay.endpoint(proc)}/{s.postgres.database}"
        out["redis sentinels"] = ",".join(str(lay.endpoint(x)) for x in lay.sentinels()) or \
            str(lay.endpoint(REDIS_PRIMARY))
        out["ca certificate"] = self.cafile
        out["password file (libpq)"] = str(self.root / "secrets" / "pgpass")
        return out

    # -- down ----------------------------------------------------------------------------
    def down(self, purge: bool = False) -> list[str]:
        stopped = []
        info = self.supervisor.info()
        if info:
            order = sorted(self.processes(), key=lambda p: -p.stage)
            for p in order:
                if info.get(p.name, {}).get("statename") == "RUNNING":
                    self.say(f"stopping {p.name}")
                    self.supervisor.stop(p.name)
                    stopped.append(p.name)
            self.say("stopping supervisord")
            self.supervisor.shutdown()
        if purge and self.root.exists():
            self.say(f"removing {self.root}")
            shutil.rmtree(self.root)
        return stopped


def _write_if_changed(path: Path, content: str) -> bool:
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return True


def status_json(rows: list[ServiceStatus]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


__all__ = ["LocalTarget", "LocalTargetError", "TargetError", "ServiceStatus", "UpResult", "status_json"]
