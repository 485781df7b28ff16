"""``fab restore``: disaster recovery in the seed's order, never half-done.

    preflight (nothing changes; any failure leaves the stack exactly as it was)
      1 every host reachable          4 the target resolves: --backup ID exists and matches its
      2 pgBackRest versions match       manifest; --target-time inside the recoverable window
      3 the repository opens with     5 the chosen set's files match its manifest
        the key (a wrong key stops here)
    restore
      6 stop the application (backends, workers)
      7 if the primary still runs: switch WAL and wait until it is archived (pgbackrest check)
      8 stop PostgreSQL
      9 pgbackrest restore into <data>.restoring (the current data directory is untouched);
        "unable to find backup set" is a failure
     10 swap: current data -> <data>.pre-restore-<time>, restored -> <data>
     11 start the primary; recovery replays WAL to the target and promotes; wait until it
        accepts writes (the database RTO)
        on failure: the previous data directory is put back and the stack restarted as it was
     12 Redis: stop Sentinels and Redis, put the set's RDB/AOF in place, reset working configs
     13 files: the set's configs and logs extracted to <backup root>/restored/<id>, checked
     14 start every service in dependency order (fab up: replicas re-cloned, slots, migrations)
     15 validate: every service healthy, the primary writable, table counts

The previous data directory is kept as ``<data>.pre-restore-<time>`` (the writes a PITR
discards live there and on the old timeline in the archive); the next restore removes it.
"""

from __future__ import annotations

import datetime as dt
import shlex
import time

from infra.pgbackrest import restore_command
from infra.services import PG_BIN
from ops.backup import files, manifest, redis
from ops.backup.site import Site
from ops.errors import BackupError, BadInput, PreflightFailed, RestoreFailed
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
        port = self.site.layout.bind("postgres-primary").port
        cmd = (f"{PG_BIN}/psql -X -A -t -q -v ON_ERROR_STOP=1 -h {shlex.quote(p.socket)} -p {port} -U postgres "
               f"-d {shlex.quote(db)} -c {shlex.quote(sql)}")
        return self.site.ex.run(cmd, env={"PGPASSFILE": p.pgpass, "PGCONNECT_TIMEOUT": "3"},
                                timeout=timeout, check=check)


def run_restore(site: Site, run: Run, target_time: str | None = None, backup_id: str | None = None) -> dict | None:
    t_start = time.monotonic()
    spec, paths, ex = site.spec, site.paths, site.ex
    q = shlex.quote
    pgb = site.pgbackrest()
    psql = Psql(site)
    data = site.layout.data("postgres-primary")
    staging = data + ".restoring"
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    previous = f"{data}.pre-restore-{stamp}"
    report: dict = {"target_time": target_time, "backup": backup_id}

    # -- preflight: nothing changes, so it runs under --dry-run too ------------------------
    def pre(title, command, fn):
        out = run.step(title, command, fn)
        return fn() if run.dry_run else out

    pre("every host of the stack is reachable", "ssh <host> true", site.reachable)
    pre("pgBackRest versions match on every database host", "pgbackrest version (each host)",
             site.check_versions)

    def open_repo():
        try:
            return pgb.backups()
        except BackupError as exc:
            raise PreflightFailed(f"the backup repository does not open: {exc}. A wrong or missing cipher key "
                                  "(backup.cipher_pass) shows up here. Nothing was changed.") from exc
    pg_backups = pre("the repository opens with the configured key", "pgbackrest info", open_repo)
    sets = [m for m in manifest.list_sets(ex, paths) if not m.get("incomplete")]
    primary_running = _primary_running(site)

    def resolve():
        chosen_set, label, repo = None, None, 1
        if backup_id:
            chosen_set = manifest.find(sets, backup_id)
            label, repo = chosen_set["components"]["postgres"]["label"], chosen_set["components"]["postgres"]["repo"]
            if label not in {b.label for b in pg_backups}:
                raise BadInput(f"backup {backup_id!r} (pgBackRest {label}) was expired by retention; "
                               f"restorable: {', '.join(m['id'] for m in sets if m['components']['postgres']['label'] in {b.label for b in pg_backups}) or 'none'}")
        repo_backups = [b for b in pg_backups if b.repo == repo]
        if not repo_backups:
            raise BadInput(f"no backup in repo{repo} to restore from: run `fab backup` first")
        if target_time:
            t = parse_time(target_time).timestamp()
            low = next(b.stop for b in repo_backups if b.label == label) if label else min(b.stop for b in repo_backups)
            _, newest_wal = pgb.archive_window(repo)
            high = time.time() if primary_running else (newest_wal or low)
            if not low <= t <= high:
                raise BadInput(f"--target-time {target_time} is outside the recoverable window "
                               f"[{_iso(low)}, {_iso(high)}] ({'oldest backup end' if not label else 'the backup end'}"
                               f" .. {'now' if primary_running else 'newest archived WAL'}); nothing was changed")
            if not chosen_set:
                before = [m for m in sets if m["components"]["postgres"]["timestamp_stop"] <= t
                          and m["components"]["postgres"]["repo"] == repo]
                chosen_set = before[-1] if before else None
        elif not chosen_set:
            chosen_set = [m for m in sets if m["components"]["postgres"]["repo"] == 1][-1:] or [None]
            chosen_set = chosen_set[0]
        if chosen_set:
            manifest.require_intact(ex, paths.set_dir(chosen_set["id"]), chosen_set)
        return chosen_set, label, repo
    chosen, label, repo = pre(
        "resolve the target: backup id known, target time in the recoverable window, set matches its manifest",
        f"pgbackrest info; sha256sum {paths.sets}/<id>/*", resolve)
    report["set"] = chosen["id"] if chosen else None
    report["pgbackrest_set"] = label or "latest"

    restore_argv = pgb.restore_argv(staging, set_label=label, target_time=pg_time(target_time), repo=repo,
                                    restore_cmd=restore_command(spec, site.layout))
    if label and not target_time:  # a backup alone: that backup's own state
        restore_argv = restore_argv.replace("--type=default", "--type=immediate --target-action=promote")

    # -- destructive -----------------------------------------------------------------------
    before = _states(site)
    app = [n for n, st in before.items() if st == "RUNNING" and n.split("-")[0] in APP_KINDS]
    pg_procs = [n for n in before if n.startswith("postgres-primary") or n.startswith("postgres-replica")]

    run.step("stop the application services", site.supervisorctl("stop", *(app or ["backend-*", "worker-*"])),
             lambda: _ctl(site, "stop", app), destructive=True)
    if primary_running or run.dry_run:
        run.step("switch WAL on the running primary and wait until it is archived", pgb.argv("check"),
                 lambda: _archive_now(pgb), destructive=False)
    run.step("stop PostgreSQL", site.supervisorctl("stop", "postgres-primary", "postgres-replica-*"),
             lambda: _ctl(site, "stop", [n for n in pg_procs if before.get(n) in ACTIVE]), destructive=True)

    def pg_restore():
        ex.run(f"rm -rf {q(staging)}")
        res = ex.run(restore_argv, env=pgb.env, timeout=6 * 3600, check=False)
        text = (res.stdout + res.stderr)
        if res.exit_code != 0 or "unable to find backup set" in text:
            ex.run(f"rm -rf {q(staging)}", check=False)
            raise BackupError(f"pgbackrest restore failed (exit {res.exit_code}): "
                              + " / ".join(ln for ln in text.splitlines() if "WARN" in ln or "ERROR" in ln)[-800:])
        return res
    try:
        run.step(f"pgbackrest restore into {staging} (current data untouched)", restore_argv, pg_restore,
                 destructive=True)
    except Exception:
        _put_back(site, before)
        raise

    def swap():
        ex.run(f"for d in {q(data)}.pre-restore-*; do [ -e \"$d\" ] && rm -rf \"$d\"; done; "
               f"if [ -e {q(data)} ]; then mv {q(data)} {q(previous)}; fi; mv {q(staging)} {q(data)}")
    run.step(f"swap data directories (previous kept as {previous})",
             f"mv {data} {previous}; mv {staging} {data}", swap, destructive=True)

    def recover():
        ex.run(site.supervisorctl("start", "postgres-primary"), user=site.admin_user, check=False)
        # One round trip: the wait runs on the host (each SSH call costs time under load).
        psql_cmd = (f"{PG_BIN}/psql -X -A -t -q -h {q(paths.socket)} -p {site.layout.bind('postgres-primary').port} "
                    f"-U postgres -d postgres -c")
        script = f"""cd / && deadline=$((SECONDS + {spec.backup.restore_timeout_s})); gone=0
while :; do
  r=$({psql_cmd} 'SELECT pg_is_in_recovery()' 2>&1)
  if [ "$r" = f ] && {psql_cmd} 'SELECT txid_current()' >/dev/null 2>&1; then echo ready; exit 0; fi
  if [ -f {q(data)}/postmaster.pid ]; then gone=0; else gone=$((gone + 1)); fi
  [ $gone -gt 50 ] && {{ echo "postmaster not running: $r"; exit 4; }}
  [ $SECONDS -gt $deadline ] && {{ echo "timeout: $r"; exit 3; }}
  sleep 0.1
done"""
        res = ex.run(script, env={"PGPASSFILE": paths.pgpass, "PGCONNECT_TIMEOUT": "2"},
                     timeout=spec.backup.restore_timeout_s + 60, check=False)
        if res.exit_code == 0:
            return time.monotonic() - t_start
        log = ex.run(site.supervisorctl("tail", "postgres-primary", "stderr"), user=site.admin_user,
                     check=False).stdout
        if res.exit_code == 3:
            raise BackupError(f"the restored primary did not accept writes within "
                              f"{spec.backup.restore_timeout_s}s (backup.restore_timeout_s): {res.stdout.strip()[-200:]}")
        raise BackupError(f"the restored primary stopped during recovery: {res.stdout.strip()[-200:]}\n"
                          + log.strip()[-800:])
    try:
        report["db_rto_s"] = run.step("start the primary: replay WAL to the target, promote, accept writes",
                                      site.supervisorctl("start", "postgres-primary"), recover, destructive=True)
    except Exception as exc:
        raise _roll_back(site, before, data, previous) from exc

    try:
        def replicas_reset():
            dirs = [site.layout.data(n) for n in pg_procs if n != "postgres-primary"]
            if dirs:
                ex.run("rm -rf " + " ".join(q(d) for d in dirs))
            return dirs
        run.step("remove the replicas' data (re-cloned from the restored primary)",
                 "rm -rf <data>/postgres-replica-*", replicas_reset, destructive=True)
        def redis_restore():
            if not chosen or not chosen["components"].get("redis"):
                return "no backup set with Redis data: Redis left as it was"
            procs = [s.name for s in site.inventory.of_kind("sentinel")] + \
                    [s.name for s in site.inventory.of_kind("redis")]
            now = _states(site)
            _ctl(site, "stop", [n for n in procs if now.get(n) in ACTIVE])
            primary_dir = site.layout.data("redis-primary")
            replicas = [site.layout.data(s.name) for s in site.inventory.of_kind("redis") if s.name != "redis-primary"]
            done = redis.restore(ex, f"{paths.set_dir(chosen['id'])}/redis", primary_dir, replicas,
                                 spec.redis.appendonly)
            markers = " ".join(q(site.layout.data(n)) + "/*.source-sha256" for n in procs)
            ex.run(f"rm -f {markers}")  # fab up re-copies the rendered configs (failover rewrites undone)
            return done
        report["redis"] = run.step("restore Redis (Sentinels and Redis stopped, RDB/AOF in place)",
                                   f"supervisorctl stop sentinel-* redis-*; cp {paths.sets}/<id>/redis/* <redis data>",
                                   redis_restore, destructive=True)

        def files_restore():
            if not chosen or not chosen["components"].get("files"):
                return {"restored_to": None}
            return files.restore(ex, paths.set_dir(chosen["id"]), f"{paths.root}/restored/{chosen['id']}",
                                 site.layout.conf("").rstrip("/"))
        report["files"] = run.step("restore configs and logs (checked by sha256) for comparison",
                                   f"tar -xzf files.tar.gz -C {paths.root}/restored/<id>; sha256sum -c",
                                   files_restore)

        up = run.step("start every service in dependency order and wait until healthy", "fab up",
                      lambda: _up(site))
        report["validation"] = run.step("validate: every service healthy, primary writable, table counts",
                                        "fab status; SELECT count(*) ...", lambda: _validate(site, psql))
    except Exception as exc:
        if run.dry_run:
            raise
        raise _after_db_failure(site, exc) from exc
    if run.dry_run:
        return None
    report["seconds"] = time.monotonic() - t_start
    report["steps_s"] = {f"{st.index} {st.title[:60]}": st.duration_s for st in run.steps}
    report["full_rto_s"] = report["seconds"]
    report["previous_data"] = previous
    report["summary"] = (f"stack healthy after {report['seconds']:.1f}s; "
                         f"{report['validation']['tables']} table(s) checked; started: {', '.join(up) or 'nothing new'}")
    run.notes.update({k: report[k] for k in ("db_rto_s", "full_rto_s", "set", "pgbackrest_set")})
    return report


def _states(site: Site) -> dict[str, str]:
    res = site.ex.run(site.supervisorctl("status"), user=site.admin_user, check=False)
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    if not out:
        raise PreflightFailed(f"supervisord of stack {site.spec.name!r} does not answer "
                              f"({(res.stderr or res.stdout).strip()[:200]}); start it with `fab up`")
    return out


def _primary_running(site: Site) -> bool:
    try:
        return _states(site).get("postgres-primary") == "RUNNING" and Psql(site)("SELECT 1", check=False).ok
    except PreflightFailed:
        return False


def _ctl(site: Site, verb: str, names: list[str]) -> None:
    if names:
        site.ex.run(site.supervisorctl(verb, *names), user=site.admin_user, timeout=180)


def _archive_now(pgb) -> None:
    res = pgb.check()
    if not res.ok:
        raise BackupError("could not archive the last WAL of the running primary (pgbackrest check): "
                          + (res.stderr or res.stdout).strip()[-500:])


def _put_back(site: Site, before: dict[str, str]) -> None:
    """Restart what ran before, in dependency order, after a failure that left the data untouched."""
    order = sorted(before, key=lambda n: (0 if n.startswith("postgres") else 1 if n.split("-")[0] in
                                          ("redis", "sentinel") else 2))
    now = _states(site)
    _ctl(site, "start", [n for n in order if before[n] == "RUNNING" and now.get(n) != "RUNNING"])


def _roll_back(site: Site, before: dict[str, str], data: str, previous: str) -> RestoreFailed:
    q = shlex.quote
    ex = site.ex
    ex.run(site.supervisorctl("stop", "postgres-primary"), user=site.admin_user, check=False)
    has_previous = ex.run(f"test -d {q(previous)}", check=False).ok
    failed = f"{data}.failed-restore"
    ex.run(f"rm -rf {q(failed)}; mv {q(data)} {q(failed)}", check=False)
    if has_previous:
        ex.run(f"mv {q(previous)} {q(data)}")
        try:
            _put_back(site, before)
            state = (f"the previous data directory is back in place and the services that ran before are "
                     f"started again; the failed restore is kept in {failed} for inspection")
        except Exception as exc:
            state = (f"the previous data directory is back in place but restarting failed ({exc}); "
                     f"run `fab up`; the failed restore is in {failed}")
    else:
        state = (f"there was no previous data directory (the primary was lost): PostgreSQL is stopped, the "
                 f"application is stopped; the failed restore is kept in {failed}. Fix the cause (see above) "
                 f"and run `fab restore` again")
    return RestoreFailed("the restored database did not come up", state)


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
    from infra.local.target import LocalTarget
    from ops.console import progress
    res = LocalTarget(site.spec, progress=progress).up()
    return res.started


def _validate(site: Site, psql: Psql) -> dict:
    from infra.local.target import LocalTarget
    rows = LocalTarget(site.spec).status()
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
