"""``fab db.failover`` and ``fab db.rebuild-replica``: PostgreSQL primary failover on the local target.

    fab db.failover --yes           fence the primary, promote the replica, confirm the service follows
    fab db.rebuild-replica --yes    the fenced node (or --node N) comes back as a streaming replica

How the service follows without a restart: every process gets one libpq multi-host URL
listing all nodes with ``target_session_attrs=read-write`` (infra/local/processes.py), so a
new connection lands on whichever node accepts writes. The pools drop connections that broke
when the old primary stopped and open new ones (docs/releases.md).

Fencing: the old primary is stopped by the supervisor, a ``standby.signal`` is left in its
data directory (if anything starts it, it comes up read-only and is never chosen for writes),
and it is recorded as fenced in release.json, so neither ``fab up`` nor supervisord starts it.

No acknowledged write is lost when the old primary is reachable: it is stopped first (a clean
shutdown sends all its WAL to the streaming replica), and the replica is promoted only once it
has replayed the old primary's shutdown checkpoint. If the primary is already gone, the
replica is promoted with what it received, and the run record says so.
"""

from __future__ import annotations

import re
import time

from invoke import task

from ops.console import fail, progress
from ops.tasks.shared import STACK_HELP, release_session


def _pg(driver, proc: str, sql: str, params=(), dbname: str = "postgres"):
    from infra.local import bootstrap
    t = driver.target()
    with bootstrap.superuser_conn(t.spec, t.layout, t.secrets(), proc=proc, dbname=dbname) as conn:
        return conn.execute(sql, params).fetchall()


def _reachable(driver, proc: str) -> bool:
    try:
        _pg(driver, proc, "SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means: not reachable as a server
        return False


def _in_recovery(driver, proc: str) -> bool:
    try:
        return bool(_pg(driver, proc, "SELECT pg_is_in_recovery()")[0][0])
    except Exception:  # noqa: BLE001 - unreachable: do not guess
        return False


def _unfence(driver, run, st, old: str, old_data: str) -> None:
    """Nothing was promoted: undo the fence so the old primary serves again (nothing half-done)."""
    progress(f"failover aborted before promotion: restarting {old} as the primary")
    run.notes["decision"] = f"aborted before promotion; {old} unfenced and restarted"
    driver.inventory.get(old).executor.run(f"rm -f {old_data}/standby.signal")
    driver.apply(st, "db.failover")
    driver.target().supervisor.start(old)


def _lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def _pgbin(name: str) -> str:
    from infra.services import PG_BIN
    return str(PG_BIN / name)


@task(help={"to": "replica to promote (default: the first streaming replica)", "stack": STACK_HELP,
            "dry-run": "print the plan, change nothing", "yes": "confirm: the primary is stopped and fenced"})
def failover(c, to=None, stack=None, dry_run=False, yes=False):
    """Promote a replica to primary, fence the old primary; the service follows without restart.

    Destructive (the old primary is fenced until `fab db.rebuild-replica`): needs --yes.
    """
    with release_session(stack, "db.failover", {"to": to}, dry_run, yes) as (spec, driver, run):
        st = driver.state()
        t = driver.target()
        old = st.postgres.primary
        nodes = ["postgres-primary", *t.layout.postgres_replicas()]
        candidates = [n for n in nodes if n != old and n not in st.postgres.fenced]
        if to is not None and to not in candidates:
            raise fail(f"--to {to!r}: not a replica that can be promoted; candidates: {candidates or 'none'}",
                       code=2)
        if not candidates:
            raise fail(f"no replica to promote: primary {old}, fenced {st.postgres.fenced}; "
                       "rebuild one first (fab db.rebuild-replica)")
        new = to or candidates[0]
        old_data, new_data = t.layout.data(old), t.layout.data(new)
        pg_ex = driver.inventory.get(new).executor
        t0 = time.monotonic()
        alive = dry_run or _reachable(driver, old)
        run.notes.update(old_primary=old, new_primary=new, old_primary_reachable=alive)
        if not dry_run:
            rows = _pg(driver, new, "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")
            if not rows[0][0]:
                raise fail(f"{new} is not in recovery (already a primary?); the recorded primary is {old}")
            progress(f"{old} {'reachable' if alive else 'UNREACHABLE'}; {new} wal receiver {rows[0][1]}")

        # 1. fence: stop the old primary (a clean shutdown ships its last WAL), keep it stopped
        def stop_old():
            driver.target().supervisor.stop(old)
        run.step(f"fence {old}: stop it", f"supervisorctl stop {old}   # SIGINT: fast shutdown, WAL sent to "
                                          "the streaming replica", stop_old, destructive=True)
        run.step(f"fence {old}: standby.signal in its data directory (never writable again until rebuilt)",
                 f"touch {old_data}/standby.signal",
                 lambda: driver.inventory.get(old).executor.run(f"touch {old_data}/standby.signal"),
                 destructive=True)
        fenced = st.model_copy(deep=True)
        fenced.postgres.fenced = sorted(set(fenced.postgres.fenced) | {old})
        run.step(f"fence {old}: record it and drop it from supervisord",
                 f"release.json postgres.fenced += {old}; supervisord reread",
                 lambda: driver.apply(fenced, "db.failover"))

        # 2. the replica has everything the old primary acknowledged
        def caught_up():
            if not alive:
                got = _pg(driver, new, "SELECT pg_last_wal_receive_lsn()::text")[0][0]
                run.notes["data_loss_possible"] = (f"primary was unreachable: promoted with WAL received up "
                                                   f"to {got}; later commits (asynchronous replication) are lost")
                progress("WARNING: " + run.notes["data_loss_possible"])
                return 0
            res = driver.inventory.get(old).executor.run([_pgbin("pg_controldata"), "-D", old_data])
            m = re.search(r"Latest checkpoint location:\s+([0-9A-F]+/[0-9A-F]+)", res.stdout)
            state = re.search(r"Database cluster state:\s+(.+)", res.stdout)
            if not m or not state or "shut down" not in state.group(1):
                raise RuntimeError(f"{old} did not shut down cleanly ({state.group(1) if state else 'unknown'}); "
                                   "cannot prove the replica has every commit: promote by hand after checking")
            target = _lsn(m.group(1))
            deadline = time.monotonic() + 15
            while True:
                replayed = _pg(driver, new, "SELECT pg_last_wal_replay_lsn()::text")[0][0]
                if replayed and _lsn(replayed) >= target:
                    run.notes["old_primary_final_lsn"] = m.group(1)
                    run.notes["replica_replayed_lsn"] = replayed
                    return 0
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{new} replayed up to {replayed}, short of {old}'s shutdown checkpoint "
                                       f"{m.group(1)} after 15s; not promoting (no acknowledged write may be lost)")
                time.sleep(0.1)
        try:
            run.step(f"check {new} replayed {old}'s last WAL", f"pg_controldata -D {old_data}; "
                     f"SELECT pg_last_wal_replay_lsn() on {new} until >= the shutdown checkpoint", caught_up)
            # 3. promote
            run.step(f"promote {new}", f"pg_ctl promote -w -t 30 -D {new_data}   # as the service user",
                     lambda: pg_ex.run([_pgbin("pg_ctl"), "promote", "-w", "-t", "30", "-D", new_data], timeout=60),
                     destructive=True)
        except BaseException:
            if not dry_run and alive and _in_recovery(driver, new):
                _unfence(driver, run, st, old, old_data)
            raise
        promoted = fenced.model_copy(deep=True)
        promoted.postgres.primary = new
        run.step("record the new primary", f"release.json postgres.primary = {new}",
                 lambda: driver.apply(promoted, "db.failover"))

        # 4. the service's own URL now reaches the new primary, read-write
        def repointed():
            import psycopg

            from infra.local.processes import app_env
            tt = driver.target()
            env = app_env(tt.spec, tt.layout)
            deadline = time.monotonic() + 10
            while True:
                try:
                    with psycopg.connect(env["RECON_DATABASE_URL"], passfile=env["PGPASSFILE"],
                                         connect_timeout=2) as conn:
                        port, ro = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
                    if port == tt.layout.endpoint(new).port and not ro:
                        return 0
                    err = f"reached port {port}, in recovery {ro}"
                except psycopg.Error as exc:
                    err = str(exc).splitlines()[0]
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service's database URL does not reach {new} read-write: {err}")
                time.sleep(0.2)
        run.step("confirm the service's database URL reaches the new primary",
                 "psql $RECON_DATABASE_URL (multi-host, target_session_attrs=read-write): "
                 "SELECT inet_server_port(), pg_is_in_recovery()", repointed)
        run.notes["failover_s"] = round(time.monotonic() - t0, 3)
        run.notes["decision"] = f"{new} is the primary; {old} fenced (fab db.rebuild-replica --node {old})"
    if not dry_run:
        progress(f"{new} is the primary after {time.monotonic() - t0:.1f}s; {old} is fenced. "
                 f"Next: fab db.rebuild-replica --yes")


@task(help={"node": "node to rebuild (default: the fenced former primary)", "stack": STACK_HELP,
            "dry-run": "print the plan, change nothing", "yes": "confirm: the node's data directory is wiped"})
def rebuild_replica(c, node=None, stack=None, dry_run=False, yes=False):
    """Wipe NODE and clone it from the current primary (pg_basebackup) as a streaming replica.

    pgBackRest restore is the alternative once the backup repository is configured; this
    streams straight from the primary. Destructive: needs --yes.
    """
    with release_session(stack, "db.rebuild-replica", {"node": node}, dry_run, yes) as (spec, driver, run):
        st = driver.state()
        t = driver.target()
        primary = st.postgres.primary
        nodes = ["postgres-primary", *t.layout.postgres_replicas()]
        if node is None:
            if not st.postgres.fenced:
                raise fail(f"no fenced node to rebuild; name one with --node (one of "
                           f"{[n for n in nodes if n != primary]})", code=2)
            node = st.postgres.fenced[0]
        if node not in nodes or node == primary:
            raise fail(f"--node {node!r}: one of {[n for n in nodes if n != primary]} (not the primary {primary})",
                       code=2)
        data = t.layout.data(node)
        slot = node.removeprefix("postgres-").replace("-", "_")
        p = t.layout.endpoint(primary)
        ex = driver.inventory.get(node).executor
        run.notes.update(node=node, primary=primary, slot=slot)
        t0 = time.monotonic()
        run.step(f"stop {node}", f"supervisorctl stop {node}",
                 lambda: driver.target().supervisor.stop(node) if node in driver.target().supervisor.info() else 0,
                 destructive=True)
        run.step(f"wipe {node}'s data directory", f"rm -rf {data} && mkdir -m 0700 {data}",
                 lambda: ex.run(f"rm -rf {data} && mkdir -m 0700 {data}"), destructive=True)
        run.step(f"replication slot {slot} on {primary}",
                 f"SELECT pg_create_physical_replication_slot('{slot}') on {primary} (if missing)",
                 lambda: _pg(driver, primary, "SELECT count(*) FROM (SELECT pg_create_physical_replication_slot(%s) "
                                              "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)"
                                              ") s", (slot, slot)))
        basebackup = [_pgbin("pg_basebackup"), "-h", p.host, "-p", str(p.port), "-U", spec.postgres.replication_user,
                      "-D", data, "-X", "stream", "-S", slot, "-R", "--checkpoint=fast", "--no-password"]

        def clone():
            res = ex.run(basebackup, env={"PGPASSFILE": str(t.root / "secrets" / "pgpass")}, check=False,
                         timeout=1800)
            if not res.ok:
                ex.run(f"rm -rf {data} && mkdir -m 0700 {data}", check=False)  # nothing half-done
                from ops.executors import CommandFailed
                raise CommandFailed(res)
            return res
        run.step(f"clone {node} from {primary}", " ".join(basebackup) + "   # -R: standby.signal + primary_conninfo",
                 clone, destructive=True)
        after = st.model_copy(deep=True)
        after.postgres.fenced = [n for n in after.postgres.fenced if n != node]
        run.step(f"unfence {node}", f"release.json postgres.fenced -= {node}; supervisord reread",
                 lambda: driver.apply(after, "db.rebuild-replica"))

        def start_and_wait():
            tt = driver.target()
            tt.supervisor.start(node, wait=False)
            proc = next(x for x in tt.processes() if x.name == node)
            tt.wait_healthy([proc], tt.secrets(), timeout=120)
            progress("  " + tt.check(proc, tt.secrets()).detail)
        run.step(f"start {node} and wait until it streams", f"supervisorctl start {node}; "
                 "wait for pg_stat_wal_receiver.status = streaming", start_and_wait)
        run.notes["rebuild_s"] = round(time.monotonic() - t0, 3)
        run.notes["decision"] = f"{node} streams from {primary}"
    if not dry_run:
        progress(f"{node} is a streaming replica of {primary} ({time.monotonic() - t0:.1f}s)")
