"""PostgreSQL roles on the local target: promote a replica (failover), rebuild a node as a replica.

A failover is a sequence of module-level steps, each recorded in the run log:

    choose            the node to promote: --to, else the first replica that is not fenced
    fence_stop        stop the old primary (a clean shutdown ships its last WAL to the replica)
    fence_signal      standby.signal in its data directory: never writable again until rebuilt
    fence_record      release.json postgres.fenced += old; supervisord drops it
    caught_up         the replica replayed the old primary's shutdown checkpoint (no acknowledged
                      write lost); with the old primary unreachable, promote with what arrived
    promote           pg_ctl promote on the replica
    record_primary    release.json postgres.primary = new; pgbackrest.conf and the exporter follow
    repointed         the service's own multi-host URL reaches the new primary read-write
    archiving_resumes WAL archiving from the new primary works (a switch is archived)
    full_backup       a full backup from the new primary (the old timeline's backups stay valid,
                      but the new one starts here); --no-backup skips it

A failure before ``promote`` unfences the old primary and restarts it (nothing half-done).

A rebuild is: stop the node, wipe its data, clone it from the primary (its slot, ``-R``,
recovery targets stripped), unfence it, start it and wait until it streams.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

from infra.local import bootstrap
from infra.services import PG_BIN
from ops.console import progress
from ops.errors import CommandFailed, UsageError


def _pg(driver: Any, node: str, sql: str, params: tuple = ()) -> list[tuple]:
    t = driver.target()
    with bootstrap.superuser_conn(t.spec, t.layout, t.secrets(), proc=node) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _reachable(driver: Any, node: str) -> bool:
    try:
        _pg(driver, node, "SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means: not reachable as a server
        return False


def _in_recovery(driver: Any, node: str) -> bool:
    try:
        return bool(_pg(driver, node, "SELECT pg_is_in_recovery()")[0][0])
    except Exception:  # noqa: BLE001 - unreachable: do not guess
        return False


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


@dataclass
class Failover:
    driver: Any
    run: Any
    to: str | None = None
    backup: bool = True
    old: str = ""
    new: str = ""
    alive: bool = False
    state: Any = None
    fenced: Any = None
    t0: float = field(default_factory=time.monotonic)

    @property
    def target(self) -> Any:
        return self.driver.target()

    def data(self, node: str) -> str:
        return self.target.layout.data(node)

    def ex(self, node: str) -> Any:
        return self.driver.inventory.get(node).executor


def choose(f: Failover) -> None:
    f.state = st = f.driver.state()
    f.old = st.postgres.primary
    candidates = [n for n in f.target.layout.postgres_nodes() if n != f.old and n not in st.postgres.fenced]
    if f.to is not None and f.to not in candidates:
        raise UsageError(f"--to {f.to!r}: not a replica that can be promoted; candidates: {candidates or 'none'}")
    if not candidates:
        raise UsageError(f"no replica to promote: primary {f.old}, fenced {st.postgres.fenced}; "
                         "rebuild one first (fab db.rebuild-replica)")
    f.new = f.to or candidates[0]
    f.alive = f.run.dry_run or _reachable(f.driver, f.old)
    f.run.notes.update(old_primary=f.old, new_primary=f.new, old_primary_reachable=f.alive)
    if not f.run.dry_run:
        rows = _pg(f.driver, f.new, "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)")
        if not rows[0][0]:
            raise UsageError(f"{f.new} is not in recovery (already a primary?); the recorded primary is {f.old}")
        progress(f"{f.old} {'reachable' if f.alive else 'UNREACHABLE'}; {f.new} wal receiver {rows[0][1]}")


def fence_stop(f: Failover) -> None:
    f.run.step(f"fence {f.old}: stop it", f"supervisorctl stop {f.old}   # SIGINT: fast shutdown, WAL sent to "
               "the streaming replica", lambda: f.target.supervisor.stop(f.old), destructive=True)


def fence_signal(f: Failover) -> None:
    path = f"{f.data(f.old)}/standby.signal"
    f.run.step(f"fence {f.old}: standby.signal in its data directory (never writable again until rebuilt)",
               f"touch {path}", lambda: f.ex(f.old).run(f"touch {shlex.quote(path)}"), destructive=True)


def fence_record(f: Failover) -> None:
    f.fenced = f.state.model_copy(deep=True)
    f.fenced.postgres.fenced = sorted(set(f.fenced.postgres.fenced) | {f.old})
    f.run.step(f"fence {f.old}: record it and drop it from supervisord",
               f"release.json postgres.fenced += {f.old}; supervisord reread",
               lambda: f.driver.apply(f.fenced, "db.failover"))


def caught_up(f: Failover) -> None:
    def go():
        if not f.alive:
            got = _pg(f.driver, f.new, "SELECT pg_last_wal_receive_lsn()::text")[0][0]
            f.run.notes["data_loss_possible"] = (f"primary was unreachable: promoted with WAL received up to {got}; "
                                                 "later commits (asynchronous replication) are lost")
            progress("WARNING: " + f.run.notes["data_loss_possible"])
            return 0
        res = f.ex(f.old).run([str(PG_BIN / "pg_controldata"), "-D", f.data(f.old)])
        m = re.search(r"Latest checkpoint location:\s+([0-9A-F]+/[0-9A-F]+)", res.stdout)
        state = re.search(r"Database cluster state:\s+(.+)", res.stdout)
        if not m or not state or "shut down" not in state.group(1):
            raise RuntimeError(f"{f.old} did not shut down cleanly ({state.group(1) if state else 'unknown'}); "
                               "cannot prove the replica has every commit: promote by hand after checking")
        deadline = time.monotonic() + 15
        while True:
            replayed = _pg(f.driver, f.new, "SELECT pg_last_wal_replay_lsn()::text")[0][0]
            if replayed and lsn(replayed) >= lsn(m.group(1)):
                f.run.notes.update(old_primary_final_lsn=m.group(1), replica_replayed_lsn=replayed)
                return 0
            if time.monotonic() > deadline:
                raise RuntimeError(f"{f.new} replayed up to {replayed}, short of {f.old}'s shutdown checkpoint "
                                   f"{m.group(1)} after 15s; not promoting (no acknowledged write may be lost)")
            time.sleep(0.1)
    f.run.step(f"check {f.new} replayed {f.old}'s last WAL", f"pg_controldata -D {f.data(f.old)}; "
               f"SELECT pg_last_wal_replay_lsn() on {f.new} until >= the shutdown checkpoint", go)


def promote(f: Failover) -> None:
    argv = [str(PG_BIN / "pg_ctl"), "promote", "-w", "-t", "30", "-D", f.data(f.new)]

    def go():
        res = f.ex(f.new).run(argv, timeout=60)
        # pg_control learns the new timeline at the next checkpoint; until then pgBackRest
        # refuses to back up ("WAL timeline 2 does not match pg_control timeline 1")
        _pg(f.driver, f.new, "CHECKPOINT")
        return res
    f.run.step(f"promote {f.new}", shlex.join(argv) + "   # as the service user; then CHECKPOINT", go,
               destructive=True)


def record_primary(f: Failover) -> None:
    promoted = f.fenced.model_copy(deep=True)
    promoted.postgres.primary = f.new
    f.run.step("record the new primary; pgBackRest and the exporter follow it",
               f"release.json postgres.primary = {f.new}; render pgbackrest.conf (pg1 = {f.new}); "
               "supervisorctl restart postgres-exporter",
               lambda: f.driver.apply(promoted, "db.failover"))


def repointed(f: Failover) -> None:
    def go():
        import psycopg
        t = f.target
        env = t.app_env()
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(env["RECON_DATABASE_URL"], passfile=env["PGPASSFILE"], connect_timeout=2) as conn:
                    port, ro = conn.execute("SELECT inet_server_port(), pg_is_in_recovery()").fetchone()
                if port == t.layout.endpoint(f.new).port and not ro:
                    return 0
                err = f"reached port {port}, in recovery {ro}"
            except psycopg.Error as exc:
                err = str(exc).splitlines()[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service's database URL does not reach {f.new} read-write: {err}")
            time.sleep(0.2)
    f.run.step("confirm the service's database URL reaches the new primary",
               "psql $RECON_DATABASE_URL (multi-host, target_session_attrs=read-write): "
               "SELECT inet_server_port(), pg_is_in_recovery()", go)


def archiving_resumes(f: Failover) -> None:
    from ops import invariants

    def go():
        found = invariants.archiving_works(f.target)
        if not found.ok:
            raise RuntimeError(f"WAL archiving from {f.new} does not work: {found.evidence}")
        return found.evidence
    f.run.notes["archiving"] = f.run.step(f"WAL archiving resumes from {f.new}",
                                          f"SELECT pg_switch_wal() on {f.new}; wait until pg_stat_archiver "
                                          "archived it (no failure after the switch)", go)


def full_backup(f: Failover) -> None:
    if not f.backup or not f.target.spec.backup.enabled:
        f.run.notes["backup_after_failover"] = "skipped (--no-backup)" if not f.backup else "backups disabled"
        return

    def go():
        from ops.backup.backup import run_backup
        from ops.backup.site import Site
        from ops.runlog import Run
        site = Site.of(f.driver.spec)
        with Run(site.inventory.run_log, "backup", {"tier": "weekly", "after": "db.failover"}) as inner:
            doc = run_backup(site, "weekly", inner, offsite=True)
        return doc["id"] if doc else None
    f.run.notes["backup_after_failover"] = f.run.step(
        f"full backup from {f.new} (backups and PITR start from the new timeline)", "fab backup --full", go)


STEPS = (fence_stop, fence_signal, fence_record, caught_up, promote)
AFTER_PROMOTION = (record_primary, repointed, archiving_resumes, full_backup)


def run_failover(driver: Any, run: Any, to: str | None = None, backup: bool = True) -> Failover:
    f = Failover(driver, run, to, backup)
    choose(f)
    try:
        for step in STEPS:
            step(f)
    except BaseException:
        if run.dry_run or f.fenced is None:
            raise
        if _in_recovery(driver, f.new):
            if f.alive:
                _unfence(f)
            raise
        # promoted although a step reported a failure: the record must say so, whatever else failed
        record_primary(f)
        raise
    for step in AFTER_PROMOTION:
        step(f)
    run.notes["failover_s"] = round(time.monotonic() - f.t0, 3)
    run.notes["decision"] = f"{f.new} is the primary; {f.old} fenced (fab db.rebuild-replica --node {f.old})"
    return f


def _unfence(f: Failover) -> None:
    """Nothing was promoted: undo the fence so the old primary serves again (nothing half-done)."""
    progress(f"failover aborted before promotion: restarting {f.old} as the primary")
    f.run.notes["decision"] = f"aborted before promotion; {f.old} unfenced and restarted"
    f.ex(f.old).run(f"rm -f {shlex.quote(f.data(f.old))}/standby.signal")
    f.driver.apply(f.state, "db.failover")
    f.target.supervisor.start(f.old)


# -- rebuild -------------------------------------------------------------------------------------

@dataclass
class Rebuild:
    driver: Any
    run: Any
    node: str
    primary: str
    t0: float = field(default_factory=time.monotonic)


def choose_node(driver: Any, node: str | None) -> tuple[str, str]:
    st = driver.state()
    primary = st.postgres.primary
    others = [n for n in driver.target().layout.postgres_nodes() if n != primary]
    if node is None:
        if not st.postgres.fenced:
            raise UsageError(f"no fenced node to rebuild; name one with --node (one of {others})")
        node = st.postgres.fenced[0]
    if node not in others:
        raise UsageError(f"--node {node!r}: one of {others} (not the primary {primary})")
    return node, primary


def stop_node(r: Rebuild) -> None:
    t = r.driver.target()
    r.run.step(f"stop {r.node}", f"supervisorctl stop {r.node}",
               lambda: t.supervisor.stop(r.node) if r.node in t.supervisor.info() else 0, destructive=True)


def wipe(r: Rebuild) -> None:
    data = shlex.quote(r.driver.target().layout.data(r.node))
    r.run.step(f"wipe {r.node}'s data directory", f"rm -rf {data} && mkdir -m 0700 {data}",
               lambda: r.driver.inventory.get(r.node).executor.run(f"rm -rf {data} && mkdir -m 0700 {data}"),
               destructive=True)


def clone(r: Rebuild) -> None:
    t = r.driver.target()
    data = t.layout.data(r.node)
    ex = r.driver.inventory.get(r.node).executor
    argv = bootstrap.basebackup_argv(t.spec, t.layout, r.node, r.primary, data)
    slot = argv[argv.index("-S") + 1]

    def go():
        _pg(r.driver, r.primary, "SELECT count(*) FROM (SELECT pg_create_physical_replication_slot(%s) WHERE NOT "
                                 "EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)) s", (slot, slot))
        res = ex.run(argv, env={"PGPASSFILE": t.layout.secret("pgpass-replication")}, check=False, timeout=1800)
        if not res.ok:
            ex.run(f"rm -rf {shlex.quote(data)} && mkdir -m 0700 {shlex.quote(data)}", check=False)  # nothing half-done
            raise CommandFailed(res)
        auto = shlex.quote(f"{data}/postgresql.auto.conf")
        ex.run(f"sed -i '/^[[:space:]]*\\(recovery_target\\|restore_command\\)/d' {auto}")
        return res
    r.run.step(f"clone {r.node} from {r.primary} (slot {slot}; recovery targets stripped)",
               shlex.join(argv) + f"; sed -i '/^recovery_target/d' {data}/postgresql.auto.conf", go, destructive=True)


def unfence(r: Rebuild) -> None:
    after = r.driver.state().model_copy(deep=True)
    after.postgres.fenced = [n for n in after.postgres.fenced if n != r.node]
    r.run.step(f"unfence {r.node}", f"release.json postgres.fenced -= {r.node}; supervisord reread",
               lambda: r.driver.apply(after, "db.rebuild-replica"))


def start_streaming(r: Rebuild) -> None:
    def go():
        t = r.driver.target()
        t.supervisor.start(r.node, wait=False)
        proc = next(x for x in t.processes() if x.name == r.node)
        t.wait_healthy([proc], t.secrets(), timeout=120)
        progress("  " + t.check(proc, t.secrets()).detail)
    r.run.step(f"start {r.node} and wait until it streams", f"supervisorctl start {r.node}; "
               "wait for pg_stat_wal_receiver.status = streaming", go)


REBUILD = (stop_node, wipe, clone, unfence, start_streaming)


def run_rebuild(driver: Any, run: Any, node: str | None) -> Rebuild:
    node, primary = choose_node(driver, node)
    r = Rebuild(driver, run, node, primary)
    run.notes.update(node=node, primary=primary)
    for step in REBUILD:
        step(r)
    run.notes["rebuild_s"] = round(time.monotonic() - r.t0, 3)
    run.notes["decision"] = f"{node} streams from {primary}"
    return r
