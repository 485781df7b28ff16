"""``fab restore``: disaster recovery in dependency order, never half-done.

The restore is three sequences of module-level steps, each recorded in the run log:

    PREFLIGHT (nothing changes; any failure leaves the stack exactly as it was)
      reachable            every host of the stack answers
      versions             pgBackRest versions match on every database host
      open_repository      the repository opens with the key (a wrong key stops here)
      resolve_target       --backup ID exists and matches its manifest; the backup set for a time
      wal_covers_target    --target-time lies in what the archived WAL reaches: from the backup's
                           end to the last segment before any gap (or now, when the primary runs
                           and archives); otherwise refused with the covered range
    DATABASE (a failure puts the previous data directory back and restarts what ran)
      stop_application     backends and workers
      archive_last_wal     a running primary switches WAL and archives it (pgbackrest check)
      stop_postgres        every node
      restore_to_staging   pgbackrest restore into <data>.restoring (current data untouched)
      swap_data            current -> <data>.pre-restore-<time>, restored -> <data>
      recover              start the primary: replay to the target, promote, accept writes;
                           PostgreSQL's own reason is reported when it does not come up
      reset_targets        recovery_target_* and restore_command out of postgresql.auto.conf,
                           so replicas cloned from it stay replicas
    REST (a failure brings up what can come up and says where the stack is)
      reset_replicas       the other nodes' data removed (re-cloned from the restored primary)
      restore_redis        Sentinels and Redis stopped, the set's RDB/AOF in place
      restore_files        the set's configs and logs extracted for comparison, checked
      start_everything     fab up: replicas re-cloned, slots, migrations
      validate             every service healthy, the primary writable, table counts
      drop_older_copies    earlier pre-restore-* copies removed, only now that this one worked

The node restored is the one that holds the primary role now (release.json): after a
failover, the promoted replica. Processes start and stop through the site's control
(ops/control.py): supervisord on the local target, the engine on docker, where a stopped
server's data directory is reached through its container's volumes. The previous data directory is kept as
``<data>.pre-restore-<time>`` (the writes a PITR discards live there and on the old timeline
in the archive).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from infra.pgbackrest import restore_command
from infra.services import PG_BIN, PG_PRIMARY, replica_slot
from ops.backup import files, manifest, redis
from ops.backup.pgbackrest import BackupInfo
from ops.backup.site import Site
from ops.errors import BackupError, BadInput, CommandFailed, PreflightFailed, RestoreFailed
from ops.runlog import Run

APP_KINDS = ("backend", "worker")
ACTIVE = ("RUNNING", "STARTING", "BACKOFF")
"""Supervisor states in which a process must be stopped (BACKOFF: a lost primary being retried)."""


def parse_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--target-time {text!r} is not a time; allowed: ISO 8601 with an offset, "
                       "e.g. 2025-01-31T12:00:00+00:00") from None
    if t.tzinfo is None:
        raise BadInput(f"--target-time {text!r} has no UTC offset; allowed: ISO 8601 with an offset, "
                       "e.g. 2025-01-31T12:00:00+00:00 (a time without one is ambiguous)")
    return t


def pg_time(text: str | None) -> str | None:
    """The form pgBackRest 2.45 parses for backup set selection (and PostgreSQL for
    recovery_target_time): ``YYYY-MM-DD HH:MM:SS.mmm+00`` in UTC."""
    if text is None:
        return None
    t = parse_time(text).astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d}+00"


def _iso(epoch: float | None) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds") if epoch else "none"


class Psql:
    """SQL on the database host through its executor (so checks work over SSH too)."""

    def __init__(self, site: Site):
        self.site = site

    def __call__(self, sql: str, db: str = "postgres", check: bool = True, timeout: float = 30):
        p = self.site.paths
        port = self.site.layout.bind(self.site.pg_primary).port
        cmd = (f"{PG_BIN}/psql -X -A -t -q -v ON_ERROR_STOP=1 -h {shlex.quote(p.socket)} -p {port} -U postgres "
               f"-d {shlex.quote(db)} -c {shlex.quote(sql)}")
        return self.site.ex.run(cmd, env={"PGPASSFILE": p.pgpass, "PGCONNECT_TIMEOUT": "3"},
                                timeout=timeout, check=check)


@dataclass
class Restore:
    """What the steps of one restore share: where, what was asked, what was chosen, the report."""

    site: Site
    run: Run
    target_time: str | None
    backup_id: str | None
    node: str = ""
    """The PostgreSQL node restored: the one holding the primary role."""
    data: str = ""
    staging: str = ""
    previous: str = ""
    report: dict = field(default_factory=dict)
    backups: list[BackupInfo] = field(default_factory=list)
    sets: list[dict] = field(default_factory=list)
    chosen: dict | None = None
    label: str | None = None
    repo: int = 1
    primary_running: bool = False
    timeline: int | None = None
    """The timeline the data directory being replaced is on (None: no data left)."""
    before: dict[str, str] = field(default_factory=dict)
    t_start: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.node = self.site.pg_primary
        self.data = self.site.layout.pgdata(self.node)
        self.staging = self.data + ".restoring"
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.previous = f"{self.data}.pre-restore-{stamp}"
        self.report = {"target_time": self.target_time, "backup": self.backup_id, "node": self.node}

    def step(self, title: str, command: str, fn: Callable[[], Any], destructive: bool = False) -> Any:
        return self.run.step(title, command, fn, destructive=destructive)

    def check(self, title: str, command: str, fn: Callable[[], Any]) -> Any:
        """A preflight step: it changes nothing, so it also runs under --dry-run."""
        out = self.run.step(title, command, fn)
        return fn() if self.run.dry_run else out

    @property
    def pg_nodes(self) -> list[str]:
        return [s.name for s in self.site.inventory.of_kind("postgres") if s.name in self.before]

    def restore_argv(self) -> str:
        argv = self.site.pgbackrest().restore_argv(
            self.staging, set_label=self.label, target_time=pg_time(self.target_time), repo=self.repo,
            restore_cmd=restore_command(self.site.spec, self.site.layout), timeline=self.timeline)
        if self.label and not self.target_time:  # a backup alone: that backup's own state
            argv = argv.replace("--type=default", "--type=immediate --target-action=promote")
        return argv


# -- preflight ---------------------------------------------------------------------------------

def reachable(r: Restore) -> None:
    r.check("every host of the stack is reachable", "ssh <host> true", r.site.reachable)


def versions(r: Restore) -> None:
    r.check("pgBackRest versions match on every database host", "pgbackrest version (each host)",
            r.site.check_versions)


def open_repository(r: Restore) -> None:
    def go():
        try:
            return r.site.pgbackrest().backups()
        except BackupError as exc:
            raise PreflightFailed(f"the backup repository does not open: {exc}. A wrong or missing cipher key "
                                  "(backup.cipher_pass) shows up here. Nothing was changed.") from exc
    r.backups = r.check("the repository opens with the configured key", "pgbackrest info", go)
    r.sets = [m for m in manifest.list_sets(r.site.ex, r.site.paths) if not m.get("incomplete")]
    r.primary_running = _primary_running(r.site)
    r.timeline = _timeline(r.site, r.data)


def resolve_target(r: Restore) -> None:
    def go():
        chosen, label, repo = None, None, 1
        if r.backup_id:
            chosen = manifest.find(r.sets, r.backup_id)
            label, repo = chosen["components"]["postgres"]["label"], chosen["components"]["postgres"]["repo"]
            known = {b.label for b in r.backups}
            if label not in known:
                usable = [m["id"] for m in r.sets if m["components"]["postgres"]["label"] in known]
                raise BadInput(f"backup {r.backup_id!r} (pgBackRest {label}) was expired by retention; "
                               f"restorable: {', '.join(usable) or 'none'}")
        if not [b for b in r.backups if b.repo == repo]:
            raise BadInput(f"no backup in repo{repo} to restore from: run `fab backup` first")
        if r.target_time and not chosen:
            t = parse_time(r.target_time).timestamp()
            before = [m for m in r.sets if m["components"]["postgres"]["timestamp_stop"] <= t
                      and m["components"]["postgres"]["repo"] == repo]
            chosen = before[-1] if before else None
        elif not r.target_time and not chosen:
            chosen = ([m for m in r.sets if m["components"]["postgres"]["repo"] == 1][-1:] or [None])[0]
        if chosen:
            manifest.require_intact(r.site.ex, r.site.paths.set_dir(chosen["id"]), chosen)
        return chosen, label, repo
    r.chosen, r.label, r.repo = r.check(
        "resolve the target: backup id known, the set for the time chosen, set matches its manifest",
        f"pgbackrest info; sha256sum {r.site.paths.sets}/<id>/*", go)
    r.report["set"] = r.chosen["id"] if r.chosen else None
    r.report["pgbackrest_set"] = r.label or "latest"


def wal_covers_target(r: Restore) -> None:
    if not r.target_time:
        return

    def go():
        t = parse_time(r.target_time).timestamp()
        pgb = r.site.pgbackrest()
        repo_backups = [b for b in r.backups if b.repo == r.repo and (not r.label or b.label == r.label)]
        candidates = [b for b in repo_backups if b.stop <= t] or repo_backups[:1]
        base = candidates[-1]
        low, high, missing = pgb.wal_coverage(base, r.timeline)  # the timeline the restore follows
        archiving = _archiving_healthy(r.site) if r.primary_running else False
        if r.primary_running and archiving and missing is None:
            high = time.time()  # the running primary's last WAL is archived before it stops
        if not low <= t <= high:
            gap = (f"; WAL from segment {missing} on never reached the repository (archiving was broken)"
                   if missing else "")
            raise BadInput(f"--target-time {r.target_time} is outside the recoverable window "
                           f"[{_iso(low)}, {_iso(high)}] that archived WAL covers (backup {base.label} end .. "
                           f"{'now' if high > time.time() - 1 else 'last archived WAL before any gap'}){gap}; "
                           "nothing was changed")
        return {"from": _iso(low), "to": _iso(high), "gap_at": missing}
    r.report["wal_coverage"] = r.check(
        "archived WAL reaches the target time (no gap between the backup and the target)",
        "pgbackrest info; ls <repo>/archive/<stanza>: contiguous segments from the backup's start", go)


PREFLIGHT = (reachable, versions, open_repository, resolve_target, wal_covers_target)


# -- the database ------------------------------------------------------------------------------

def stop_application(r: Restore) -> None:
    r.before = r.site.control.states()
    app = [n for n, st in r.before.items() if st == "RUNNING" and n.split("-")[0] in APP_KINDS]
    r.step("stop the application services", r.site.control.plan("stop", *(app or ["backend-*", "worker-*"])),
           lambda: r.site.control.stop(app), destructive=True)


def archive_last_wal(r: Restore) -> None:
    """A commit stamped now, then its WAL archived: recovery to a target time after the last
    write has a commit past the target to stop at (otherwise PostgreSQL ends with "recovery
    ended before configured recovery target was reached")."""
    if r.primary_running or r.run.dry_run:
        pgb = r.site.pgbackrest()

        def go():
            Psql(r.site)("BEGIN; SELECT txid_current(); COMMIT")
            _archive_now(pgb)
        r.step("a commit stamped now, then switch WAL on the running primary and wait until it is archived",
               "psql -c 'BEGIN; SELECT txid_current(); COMMIT'; " + pgb.argv("check"), go)


def stop_postgres(r: Restore) -> None:
    running = [n for n in r.pg_nodes if r.before.get(n) in ACTIVE]
    r.step("stop PostgreSQL", r.site.control.plan("stop", *(running or ["postgres-*"])),
           lambda: r.site.control.stop(running), destructive=True)


def restore_to_staging(r: Restore) -> None:
    argv, q = r.restore_argv(), shlex.quote

    def go():
        ex = r.site.control.data_ex(r.node)  # the server is stopped: in a container, its volumes
        ex.run(f"rm -rf {q(r.staging)}")
        res = ex.run(argv, env=r.site.pgbackrest().env, timeout=6 * 3600, check=False)
        text = res.stdout + res.stderr
        if res.exit_code != 0 or "unable to find backup set" in text:
            ex.run(f"rm -rf {q(r.staging)}", check=False)
            raise BackupError(f"pgbackrest restore failed (exit {res.exit_code}): "
                              + " / ".join(ln for ln in text.splitlines() if "WARN" in ln or "ERROR" in ln)[-800:])
        return res
    r.step(f"pgbackrest restore into {r.staging} (current data untouched)", argv, go, destructive=True)


def swap_data(r: Restore) -> None:
    q = shlex.quote
    r.step(f"swap data directories (previous kept as {r.previous})", f"mv {r.data} {r.previous}; "
           f"mv {r.staging} {r.data}",
           lambda: r.site.control.data_ex(r.node).run(f"if [ -e {q(r.data)} ]; then mv {q(r.data)} {q(r.previous)}; "
                                                      f"fi; mv {q(r.staging)} {q(r.data)}"), destructive=True)


def recover(r: Restore) -> None:
    site, paths, q = r.site, r.site.paths, shlex.quote
    timeout = site.spec.backup.restore_timeout_s

    def go():
        if site.spec.target != "local":
            return _recover_container(r, timeout)
        log = q(site.layout.log(r.node + ".log"))
        site.ex.run(f"touch {log}", check=False)
        offset = int(site.ex.run(f"wc -c < {log}", check=False).stdout.strip() or 0)
        try:
            site.control.start([r.node])
        except CommandFailed:
            pass  # a server that dies at once (supervisord's spawn error): the wait below quotes its log
        # One round trip: the wait runs on the host (each SSH call costs time under load). It
        # ends early on PostgreSQL's own verdict: a FATAL or PANIC that is not a client being
        # told to wait (supervisord would restart the server and hide it for minutes).
        psql = f"{PG_BIN}/psql -X -A -t -q -h {q(paths.socket)} -p {site.layout.bind(r.node).port} -U postgres -d postgres -c"
        script = f"""cd / && deadline=$((SECONDS + {timeout}))
while :; do
  r=$({psql} 'SELECT pg_is_in_recovery()' 2>&1)
  if [ "$r" = f ] && {psql} 'SELECT txid_current()' >/dev/null 2>&1; then echo ready; exit 0; fi
  verdict=$(tail -c +{offset + 1} {log} | grep -E '(FATAL|PANIC): ' | grep -vE '{CLIENT_NOISE}' | head -3)
  [ -n "$verdict" ] && {{ echo "$verdict"; exit 4; }}
  [ $SECONDS -gt $deadline ] && {{ echo "timeout: $r"; exit 3; }}
  sleep 0.1
done"""
        res = site.ex.run(script, env={"PGPASSFILE": paths.pgpass, "PGCONNECT_TIMEOUT": "2"},
                          timeout=timeout + 60, check=False)
        if res.exit_code == 0:
            return time.monotonic() - r.t_start
        reason = postgres_reason(site, r.node)
        if res.exit_code == 3:
            raise BackupError(f"the restored primary did not accept writes within {timeout}s "
                              f"(backup.restore_timeout_s); PostgreSQL says: {reason}")
        raise BackupError(f"the restored primary stopped during recovery; PostgreSQL says: {reason}")
    r.report["db_rto_s"] = r.step("start the primary: replay WAL to the target, promote, accept writes",
                                  site.control.plan("start", r.node), go, destructive=True)


CLIENT_NOISE = ("the database system is (starting up|shutting down|not yet accepting connections)|"
                "password authentication failed|no pg_hba.conf entry")
"""FATAL lines that a client's attempt causes, not the server's own failure."""

RECOVERY_SETTINGS = ("recovery_target", "recovery_target_time", "recovery_target_lsn", "recovery_target_name",
                     "recovery_target_xid", "recovery_target_inclusive", "recovery_target_action",
                     "recovery_target_timeline", "restore_command")


def reset_targets(r: Restore) -> None:
    """pgBackRest leaves the recovery target in postgresql.auto.conf; pg_basebackup would copy it
    into every replica, which would then stop at the target, promote itself and take writes."""
    statements = [f"ALTER SYSTEM RESET {name}" for name in RECOVERY_SETTINGS] + ["SELECT pg_reload_conf()"]

    def go():
        psql = Psql(r.site)
        for sql in statements:  # one by one: ALTER SYSTEM cannot run inside a transaction block
            psql(sql)
    r.step("reset the recovery settings (postgresql.auto.conf), so replicas cloned from it stay replicas",
           "psql " + " ".join(f"-c '{sql}'" for sql in statements), go)


DATABASE = (stop_application, archive_last_wal, stop_postgres, restore_to_staging, swap_data, recover, reset_targets)


# -- the rest of the stack ---------------------------------------------------------------------

def reset_replicas(r: Restore) -> None:
    def go():
        nodes = [n for n in r.pg_nodes if n != r.node]
        if r.site.spec.target == "local":
            dirs = [r.site.layout.data(n) for n in nodes]
            if dirs:
                r.site.ex.run("rm -rf " + " ".join(shlex.quote(d) for d in dirs))
            return dirs
        for n in nodes:  # each container's own volume; its start script clones the primary again
            r.site.control.data_ex(n).run(f"rm -rf {shlex.quote(r.site.layout.pgdata(n))}")
        return [f"{n}:{r.site.layout.pgdata(n)}" for n in nodes]
    r.step("remove the replicas' data (re-cloned from the restored primary)",
           "rm -rf <data>/postgres-* (all but the restored node)", go, destructive=True)


def restore_redis(r: Restore) -> None:
    site, q = r.site, shlex.quote

    def go():
        if not r.chosen or not r.chosen["components"].get("redis"):
            return "no backup set with Redis data: Redis left as it was"
        if site.spec.target != "local":
            return _restore_redis_containers(r)
        redis_nodes = [s.name for s in site.inventory.of_kind("redis")]
        procs = [s.name for s in site.inventory.of_kind("sentinel")] + redis_nodes
        now = site.control.states()
        site.control.stop([n for n in procs if now.get(n) in ACTIVE])
        primary, *replicas = redis_nodes
        done = redis.restore(site.ex, f"{site.paths.set_dir(r.chosen['id'])}/redis", site.layout.data(primary),
                             [site.layout.data(n) for n in replicas], site.spec.redis.appendonly)
        markers = " ".join(q(site.layout.data(n)) + "/*.source-sha256" for n in procs)
        site.ex.run(f"rm -f {markers}")  # fab up re-copies the rendered configs (failover rewrites undone)
        return done
    r.report["redis"] = r.step("restore Redis (Sentinels and Redis stopped, RDB/AOF in place)",
                               f"supervisorctl stop sentinel-* redis-*; cp {site.paths.sets}/<id>/redis/* "
                               "<redis data>", go, destructive=True)


def restore_files(r: Restore) -> None:
    site = r.site

    def go():
        if not r.chosen or not r.chosen["components"].get("files"):
            return {"restored_to": None}
        root, include = site.files_source()
        return files.restore(site.ex, site.paths.set_dir(r.chosen["id"]),
                             f"{site.paths.root}/restored/{r.chosen['id']}", root, include)
    r.report["files"] = r.step("restore configs and logs (checked by sha256) for comparison",
                               f"tar -xzf files.tar.gz -C {site.paths.root}/restored/<id>; sha256sum -c", go)


def start_everything(r: Restore) -> None:
    r.report["started"] = r.step("start every service in dependency order and wait until healthy", "fab up",
                                 lambda: _up(r.site))


def validate(r: Restore) -> None:
    r.report["validation"] = r.step("validate: every service healthy, primary writable, table counts",
                                    "fab status; SELECT count(*) ...", lambda: _validate(r.site, Psql(r.site)))


def drop_older_copies(r: Restore) -> None:
    q = shlex.quote
    r.step("remove earlier pre-restore copies (this restore worked; its own copy is kept)",
           f"rm -rf {r.data}.pre-restore-* except {r.previous}",
           lambda: r.site.ex.run(f"for d in {q(r.data)}.pre-restore-*; do [ -e \"$d\" ] && "
                                 f"[ \"$d\" != {q(r.previous)} ] && rm -rf \"$d\"; done; true"))


def invariants(r: Restore) -> None:
    from ops import invariants as checks
    if r.site.spec.target == "local":
        from infra.local.target import LocalTarget
        checks.step(r.run, LocalTarget(r.site.spec), "restore")
    else:
        from ops.containers import ContainerStatus
        checks.step(r.run, ContainerStatus(r.site.spec, r.site.inventory), "restore", which=checks.CONTAINERS)


REST = (reset_replicas, restore_redis, restore_files, start_everything, validate, invariants, drop_older_copies)


def run_restore(site: Site, run: Run, target_time: str | None = None, backup_id: str | None = None) -> dict | None:
    r = Restore(site, run, target_time, backup_id)
    for check in PREFLIGHT:
        check(r)
    for step in DATABASE:
        try:
            step(r)
        except Exception as exc:
            if run.dry_run:
                raise
            if step in (stop_application, archive_last_wal, stop_postgres, restore_to_staging):
                _put_back(site, r.before)  # the data directory was never touched
                raise
            raise _roll_back(r, exc) from exc
    for step in REST:
        try:
            step(r)
        except Exception as exc:
            if run.dry_run:
                raise
            raise _after_db_failure(site, exc) from exc
    if run.dry_run:
        return None
    report = r.report
    report["seconds"] = report["full_rto_s"] = time.monotonic() - r.t_start
    report["steps_s"] = {f"{st.index} {st.title[:60]}": st.duration_s for st in run.steps}
    report["previous_data"] = r.previous
    report["summary"] = (f"stack healthy after {report['seconds']:.1f}s; {report['validation']['tables']} table(s) "
                         f"checked; started: {', '.join(report['started']) or 'nothing new'}")
    run.notes.update({k: report[k] for k in ("db_rto_s", "full_rto_s", "set", "pgbackrest_set", "node")})
    return report


def postgres_reason(site: Site, node: str, lines: int = 300) -> str:
    """PostgreSQL's own words from the node's log: its FATAL/PANIC lines, else the last lines."""
    text = site.control.logs(node, lines).strip().splitlines()
    fatal = [ln.strip() for ln in text if ("FATAL:" in ln or "PANIC:" in ln) and not re.search(CLIENT_NOISE, ln)]
    chosen = fatal[-3:] or text[-5:] or [f"(nothing in {node}'s log)"]
    return " / ".join(chosen)[-900:]


def _timeline(site: Site, data: str) -> int | None:
    """The timeline of the cluster in ``data`` (pg_controldata works on a running cluster too)."""
    res = site.control.data_ex(site.pg_primary).run(f"{PG_BIN}/pg_controldata -D {shlex.quote(data)}", check=False)
    m = re.search(r"Latest checkpoint's TimeLineID:\s+(\d+)", res.stdout)
    return int(m.group(1)) if res.ok and m else None


def _archiving_healthy(site: Site) -> bool:
    res = Psql(site)("SELECT last_failed_time IS NULL OR last_failed_time < COALESCE(last_archived_time, "
                     "'-infinity') FROM pg_stat_archiver", check=False)
    return res.ok and res.stdout.strip() == "t"


def _primary_running(site: Site) -> bool:
    try:
        return site.control.states().get(site.pg_primary) == "RUNNING" and Psql(site)("SELECT 1", check=False).ok
    except PreflightFailed:
        return False


def _archive_now(pgb) -> None:
    res = pgb.check()
    if not res.ok:
        raise BackupError("could not archive the last WAL of the running primary (pgbackrest check): "
                          + (res.stderr or res.stdout).strip()[-500:])


def _put_back(site: Site, before: dict[str, str]) -> None:
    """Restart what ran before, in dependency order, after a failure that left the data untouched."""
    order = sorted(before, key=lambda n: (0 if n.startswith("postgres") else 1 if n.split("-")[0] in
                                          ("redis", "sentinel") else 2))
    now = site.control.states()
    site.control.start([n for n in order if before[n] == "RUNNING" and now.get(n) != "RUNNING"])


def _roll_back(r: Restore, cause: BaseException) -> RestoreFailed:
    """A step on the restored database failed: put the previous data directory back, restart what ran."""
    site, q = r.site, shlex.quote
    try:
        site.control.stop([r.node])
    except Exception:  # noqa: BLE001 - already stopped, or it never started: the swap back is what matters
        pass
    ex = site.control.data_ex(r.node)
    has_previous = ex.run(f"test -d {q(r.previous)}", check=False).ok
    failed = f"{r.data}.failed-restore"
    ex.run(f"rm -rf {q(failed)}; if [ -e {q(r.data)} ]; then mv {q(r.data)} {q(failed)}; fi", check=False)
    if has_previous:
        ex.run(f"mv {q(r.previous)} {q(r.data)}")
        try:
            _put_back(site, r.before)
            state = (f"the previous data directory is back in place and the services that ran before are "
                     f"started again; earlier pre-restore copies are untouched; the failed restore is kept in "
                     f"{failed} for inspection")
        except Exception as exc:
            state = (f"the previous data directory is back in place but restarting failed ({exc}); "
                     f"run `fab up`; the failed restore is in {failed}")
    else:
        state = (f"there was no previous data directory (the primary was lost): PostgreSQL is stopped, the "
                 f"application is stopped; the failed restore is kept in {failed}. Fix the cause (see above) "
                 f"and run `fab restore` again")
    return RestoreFailed(f"the restore failed, so the previous data was put back: {cause}", state)


def _after_db_failure(site: Site, exc: BaseException) -> RestoreFailed:
    """A step after the database came back failed: bring up what can come up, say where we are."""
    try:
        _up(site)
        where = "every service was started again (fab up succeeded)"
    except Exception as up_exc:
        where = f"starting the services failed too ({str(up_exc).splitlines()[0][:200]}); run `fab up` and `fab status`"
    return RestoreFailed(f"the database was restored and accepts writes, but a later step failed: {exc}",
                         f"PostgreSQL restored and running; {where}; re-run the failed part by hand or "
                         "`fab restore` again")


def _up(site: Site) -> list[str]:
    if site.spec.target != "local":
        return _up_containers(site)
    from infra.local.target import LocalTarget
    from ops.console import progress
    res = LocalTarget(site.spec, progress=progress).up()
    return res.started


def _wave(name: str) -> int:
    kind = name.split("-")[0]
    return 0 if name == PG_PRIMARY else 1 if kind == "postgres" else 2 if kind in ("sentinel", "redis") else 3


def _up_containers(site: Site) -> list[str]:
    """Start every declared container that is stopped, in waves (the primary; replicas, whose
    slots are created first, as the primary's init does; Sentinels and Redis; the rest), each
    wave healthy before the next: what ``fab up`` does on the local target."""
    ctl = site.control
    stopped = [n for n, st in ctl.states().items() if st in ("STOPPED", "EXITED")]
    if any(_wave(n) == 1 for n in stopped):
        psql = Psql(site)
        for n in site.layout.postgres_replicas():
            slot = replica_slot(n)
            psql(f"SELECT pg_create_physical_replication_slot('{slot}') WHERE NOT EXISTS "
                 f"(SELECT 1 FROM pg_replication_slots WHERE slot_name = '{slot}')")
    for wave in range(4):
        names = [n for n in stopped if _wave(n) == wave]
        if names:
            ctl.start(names)
            ctl.wait_healthy(names, timeout=site.spec.backup.restore_timeout_s)
    return stopped


def _recover_container(r: Restore, timeout: float) -> float:
    """Start the restored primary's container and wait until it accepts writes; the container's
    exit or a restart (its restart policy) is PostgreSQL refusing the restored data: its own
    words from the container's log are the error."""
    site, ctl = r.site, r.site.control
    restarts = ctl.restarts(r.node)
    ctl.start([r.node])
    psql, deadline = Psql(site), time.monotonic() + timeout
    while True:
        status, count = ctl.state(r.node)
        if status not in ACTIVE or count > restarts:
            raise BackupError(f"the restored primary stopped during recovery; PostgreSQL says: "
                              f"{postgres_reason(site, r.node)}")
        res = psql("SELECT pg_is_in_recovery()", check=False, timeout=10)
        if res.ok and res.stdout.strip() == "f" and psql("SELECT txid_current()", check=False, timeout=10).ok:
            return time.monotonic() - r.t_start
        if time.monotonic() > deadline:
            raise BackupError(f"the restored primary did not accept writes within {timeout}s "
                              f"(backup.restore_timeout_s); PostgreSQL says: {postgres_reason(site, r.node)}")
        time.sleep(0.3)


def _restore_redis_containers(r: Restore) -> str:
    """Back to the program's layout, as ``fab up`` does locally: Sentinels and Redis stopped,
    the set's files in the first node's volume (the program's primary), the replicas' files
    removed (they resynchronise), the Sentinels' state files removed (they start again from
    their rendered config, which names that primary: a failover's rewrite is undone); then the
    primary, the replicas, the Sentinels, each healthy before the next. Starting the Sentinels
    first would leave them resolving the names of stopped containers, which blocks them."""
    site, ctl = r.site, r.site.control
    assert r.chosen is not None
    primary, *replicas = [s.name for s in site.inventory.of_kind("redis")]
    sentinels = [s.name for s in site.inventory.of_kind("sentinel")]
    now = ctl.states()
    ctl.stop([n for n in sentinels + [primary, *replicas] if now.get(n) in ACTIVE])
    done = redis.restore(ctl.data_ex(primary), f"{site.paths.set_dir(r.chosen['id'])}/redis",
                         site.layout.data(primary), [], site.spec.redis.appendonly)
    for n in replicas:
        data = shlex.quote(site.layout.data(n))
        ctl.data_ex(n).run(f"rm -rf {data}/{redis.AOF_DIR} {data}/dump.rdb")
    for n in sentinels:
        ctl.data_ex(n).run(f"rm -f {shlex.quote(site.layout.data(n))}/sentinel.conf")
    for wave in ([primary], replicas, sentinels):
        if wave:
            ctl.start(wave)
            ctl.wait_healthy(wave, timeout=site.spec.backup.restore_timeout_s)
    return f"{done} into {primary}"


def _validate(site: Site, psql: Psql) -> dict:
    if site.spec.target == "local":
        from infra.local.target import LocalTarget
        rows = LocalTarget(site.spec).status()
    else:
        from ops.containers import ContainerStatus
        rows = ContainerStatus(site.spec, site.inventory).rows()
    bad = [f"{r.service}: {r.detail}" for r in rows if r.healthy is False]
    if bad:
        raise BackupError("after the restore, not healthy: " + "; ".join(bad))
    if psql("SELECT pg_is_in_recovery()").stdout.strip() != "f":
        raise BackupError("after the restore the primary is still in recovery")
    db = site.spec.postgres.database
    counts_sql = ("SELECT string_agg(format('%s=%s', c.relname, "
                  "(xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, "
                  "c.relname), false, true, '')))[1]::text), ',' ORDER BY c.relname) FROM pg_class c JOIN "
                  "pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'")
    counts = psql(counts_sql, db=db, timeout=300).stdout.strip()
    tables = dict(kv.split("=", 1) for kv in counts.split(",") if "=" in kv)
    return {"services_healthy": sum(1 for r in rows if r.healthy), "tables": len(tables), "row_counts": tables}
