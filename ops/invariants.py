"""What must always hold on a running stack, checked after every task that changes it.

    one_writable_primary   exactly one PostgreSQL node accepts writes, and it is the one
                           release.json records as the primary
    replicas_streaming     every other running node is in recovery, streaming from that primary
    archiving_works        the primary's WAL reaches the repository: a forced WAL switch is
                           archived within archive_timeout_s, with no failure after it
    backups_restorable     the repository opens; its latest backup's WAL range is in the archive
    one_redis_master       exactly one Redis master, the one every Sentinel names

``require(target, task)`` runs them all and raises :class:`InvariantViolated` naming each
invariant that does not hold with its evidence, so ``fab up``, ``fab restore``,
``fab db.failover``, ``fab db.rebuild-replica``, ``fab switch`` and ``fab rollback`` exit
non-zero instead of reporting a green stack that is not. ``check`` returns the findings for
``fab status`` and the tests.

Trap: a Redis failover takes Sentinel ``down_after_ms`` plus an election to settle, and a
promoted PostgreSQL node needs a moment to open for writes: Redis and the replicas are given
``settle_s`` to agree before a finding is final.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import psycopg
import redis

from ops.errors import InvariantViolated


@dataclass
class Finding:
    invariant: str
    ok: bool
    evidence: str


def _pg(target: Any, node: str, sql: str, params: tuple = ()) -> list[tuple]:
    from infra.local.bootstrap import superuser_conn
    with superuser_conn(target.spec, target.layout, target.secrets(), proc=node) as conn:
        return conn.execute(sql, params).fetchall()


def _running(target: Any, kind: str) -> list[str]:
    info = target.supervisor.info()
    return [p.name for p in target.processes() if p.kind == kind
            and info.get(p.name, {}).get("statename") == "RUNNING"]


def one_writable_primary(target: Any) -> Finding:
    name = "one writable PostgreSQL primary"
    recorded = target.release.postgres.primary
    writable, errors = [], []
    for node in _running(target, "postgres"):
        try:
            if not _pg(target, node, "SELECT pg_is_in_recovery()")[0][0]:
                writable.append(node)
        except psycopg.Error as exc:
            errors.append(f"{node}: {str(exc).splitlines()[0][:120]}")
    if writable == [recorded]:
        return Finding(name, True, f"{recorded} accepts writes; no other node does")
    return Finding(name, False, f"writable nodes {writable or 'none'} (release.json names {recorded})"
                   + (f"; unreachable: {'; '.join(errors)}" if errors else ""))


def replicas_streaming(target: Any) -> Finding:
    name = "every replica in recovery, streaming from the primary"
    primary = target.release.postgres.primary
    port = target.layout.endpoint(primary).port
    bad, good = [], []
    for node in _running(target, "postgres"):
        if node == primary:
            continue
        try:
            rows = _pg(target, node, "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver), "
                                     "(SELECT sender_port FROM pg_stat_wal_receiver)")
        except psycopg.Error as exc:
            bad.append(f"{node} unreachable ({str(exc).splitlines()[0][:100]})")
            continue
        in_recovery, status, sender = rows[0]
        if not in_recovery:
            bad.append(f"{node} is not in recovery (a second primary)")
        elif status != "streaming" or sender != port:
            bad.append(f"{node} wal receiver {status or 'absent'} from port {sender} (primary {primary} is {port})")
        else:
            good.append(node)
    return Finding(name, not bad, "; ".join(bad) if bad else f"{', '.join(good) or 'no replica'} streaming from {primary}")


def archiving_works(target: Any) -> Finding:
    name = "WAL archiving from the primary"
    if not target.spec.backup.enabled:
        return Finding(name, True, "backup.enabled is false: archiving is off by design")
    primary = target.release.postgres.primary
    timeout = target.spec.postgres.archive_timeout_s + 15
    try:
        # a WAL record first (a logical message: no table touched), so the switch always
        # completes a segment that has to travel now, and archiving is proven, not remembered
        _pg(target, primary, "SELECT pg_logical_emit_message(false, 'recon-invariants', 'archiving check')")
        rows = _pg(target, primary, "SELECT pg_walfile_name(pg_switch_wal() - 1), now()")
        segment, switched_at = rows[0]
        deadline = time.monotonic() + timeout
        while True:
            last, failed_wal, failed_after = _pg(
                target, primary, "SELECT last_archived_wal, last_failed_wal, last_failed_time >= %s "
                                 "FROM pg_stat_archiver", (switched_at,))[0]
            if last is not None and last[8:] >= segment[8:]:
                return Finding(name, True, f"{primary} archived {segment} (last {last})")
            if failed_after:
                return Finding(name, False, f"{primary}: archiving {failed_wal} failed after the switch to "
                                            f"{segment}; see its log and runbooks/postgres-failover.md")
            if time.monotonic() > deadline:
                return Finding(name, False, f"{primary}: {segment} not archived within {timeout}s "
                                            f"(last archived {last}, last failed {failed_wal})")
            time.sleep(0.2)
    except psycopg.Error as exc:
        return Finding(name, False, f"cannot ask {primary}: {str(exc).splitlines()[0][:150]}")


RESTORABLE = "the latest backup can restore (its WAL is in the repository)"


def backups_restorable(target: Any) -> Finding:
    if not target.spec.backup.enabled:
        return Finding(RESTORABLE, True, "backup.enabled is false")
    from infra.pgbackrest import BackupPaths, base_argv
    from ops.executors import executor
    paths = BackupPaths.of(target.layout)
    user = target.service_user
    res = executor("local", user=user).run(base_argv(paths, target.spec.backup.stanza) + ["info", "--output=json"],
                                           env={"PGPASSFILE": paths.pgpass}, check=False, timeout=60)
    return _restorable(target.spec, res)


def _restorable(spec: Any, res: Any) -> Finding:
    """Judge ``pgbackrest info --output=json``'s result: the latest backup's WAL is archived."""
    name = RESTORABLE
    if not res.ok:
        return Finding(name, False, f"pgbackrest info failed: {(res.stderr or res.stdout).strip()[-300:]}")
    stanza = next((s for s in json.loads(res.stdout, strict=False) if s["name"] == spec.backup.stanza), None)
    if stanza is None:
        return Finding(name, False, f"stanza {spec.backup.stanza!r} not in the repository")
    if stanza["status"]["code"] == 2:
        return Finding(name, True, "no backup yet (run `fab backup --full`)")
    if stanza["status"]["code"] not in (0, 4):
        return Finding(name, False, f"repository status: {stanza['status']['message']}")
    latest = stanza["backup"][-1]
    start, stop = latest["archive"]["start"], latest["archive"]["stop"]
    ranges = [(a["min"], a["max"]) for a in stanza.get("archive", []) if a.get("min")]
    if any(lo[8:] <= start[8:] and stop[8:] <= hi[8:] for lo, hi in ranges):
        return Finding(name, True, f"latest {latest['label']}: WAL {start}..{stop} archived")
    return Finding(name, False, f"latest {latest['label']} needs WAL {start}..{stop}; the archive holds {ranges}")


def one_redis_master(target: Any) -> Finding:
    name = "one Redis master, named by every Sentinel"
    host = target.spec.host
    masters, named, errors = [], set(), []
    for node in _running(target, "redis"):
        port = target.layout.endpoint(node).port
        try:
            role = redis.Redis(host=host, port=port, socket_timeout=2, **target.redis_auth("ops")
                               ).info("replication")["role"]
        except redis.RedisError as exc:
            errors.append(f"{node}: {exc}")
            continue
        if role == "master":
            masters.append(f"{host}:{port}")
    for node in _running(target, "sentinel"):
        ep = target.layout.endpoint(node)
        try:
            addr = redis.Redis(host=ep.host, port=ep.port, socket_timeout=2, decode_responses=True,
                               **target.redis_auth("sentinel")).execute_command(
                "SENTINEL", "get-master-addr-by-name", target.spec.redis.sentinel.master_name)
            named.add(f"{addr[0]}:{addr[1]}" if addr else "none")
        except redis.RedisError as exc:
            errors.append(f"{node}: {exc}")
    sentinels = bool(target.layout.sentinels())
    ok = len(masters) == 1 and (not sentinels or named == set(masters)) and not errors
    return Finding(name, ok, f"masters {masters or 'none'}" + (f"; Sentinels name {sorted(named)}" if sentinels else "")
                   + (f"; errors: {'; '.join(errors)}" if errors else ""))


ALL: tuple[Callable[[Any], Finding], ...] = (one_writable_primary, replicas_streaming, archiving_works,
                                             backups_restorable, one_redis_master)


# -- the same invariants on a container target, through ``docker exec`` ---------------------------
# ``target`` is an ops.containers.ContainerStatus: the inventory, and ``sh`` into a container.

def _sql(cs: Any, node: str, query: str) -> str:
    from ops.containers import PSQL
    import shlex as _shlex
    return cs.sh(cs.inventory.get(node), f"{PSQL} {_shlex.quote(query)}", timeout=30)


def _running_in(cs: Any, kind: str) -> list[str]:
    return [s.name for s in cs.inventory.of_kind(kind) if cs.state(s)[0] == "RUNNING"]


def c_one_writable_primary(cs: Any) -> Finding:
    from infra.services import PG_PRIMARY
    name = "one writable PostgreSQL primary"
    writable, errors = [], []
    for node in _running_in(cs, "postgres"):
        try:
            if _sql(cs, node, "SELECT pg_is_in_recovery()") == "f":
                writable.append(node)
        except Exception as exc:  # noqa: BLE001 - any failure to ask is evidence
            errors.append(f"{node}: {str(exc)[:120]}")
    ok = writable == [PG_PRIMARY] and not errors
    return Finding(name, ok, f"writable nodes {writable or 'none'} (the program's primary is {PG_PRIMARY})"
                   + (f"; unreachable: {'; '.join(errors)}" if errors else ""))


def c_replicas_streaming(cs: Any) -> Finding:
    from infra.services import PG_PRIMARY
    name = "every replica in recovery, streaming from the primary"
    bad: list[str] = []
    good: list[str] = []
    for node in _running_in(cs, "postgres"):
        if node == PG_PRIMARY:
            continue
        ok, detail = cs.check(cs.inventory.get(node))
        (good if ok else bad).append(node if ok else f"{node}: {detail}")
    return Finding(name, not bad, "; ".join(bad) if bad else f"{', '.join(good) or 'no replica'} streaming")


def c_archiving_works(cs: Any) -> Finding:
    from infra.services import PG_PRIMARY
    name = "WAL archiving from the primary"
    if not cs.spec.backup.enabled:
        return Finding(name, True, "backup.enabled is false: archiving is off by design")
    timeout = cs.spec.postgres.archive_timeout_s + 15
    try:
        _sql(cs, PG_PRIMARY, "SELECT pg_logical_emit_message(false, 'recon-invariants', 'archiving check')")
        segment, switched_at = _sql(cs, PG_PRIMARY, "SELECT pg_walfile_name(pg_switch_wal() - 1), now()").split("|")
        deadline = time.monotonic() + timeout
        while True:
            last, failed_wal, failed_after = (_sql(cs, PG_PRIMARY, "SELECT last_archived_wal, last_failed_wal, "
                                                   f"last_failed_time >= '{switched_at}' FROM pg_stat_archiver")
                                              .split("|") + ["", ""])[:3]
            if last and last[8:] >= segment[8:]:
                return Finding(name, True, f"{PG_PRIMARY} archived {segment} (last {last})")
            if failed_after == "t":
                return Finding(name, False, f"{PG_PRIMARY}: archiving {failed_wal} failed after the switch to {segment}")
            if time.monotonic() > deadline:
                return Finding(name, False, f"{PG_PRIMARY}: {segment} not archived within {timeout}s "
                                            f"(last archived {last or 'none'}, last failed {failed_wal or 'none'})")
            time.sleep(0.3)
    except Exception as exc:  # noqa: BLE001
        return Finding(name, False, f"cannot ask {PG_PRIMARY}: {str(exc)[:150]}")


def c_backups_restorable(cs: Any) -> Finding:
    from infra.layout import ContainerLayout
    from infra.pgbackrest import BackupPaths, base_argv
    from infra.services import PG_PRIMARY
    if not cs.spec.backup.enabled:
        return Finding(RESTORABLE, True, "backup.enabled is false")
    import shlex as _shlex
    paths = BackupPaths.of(ContainerLayout(cs.spec, cs.spec.target))
    argv = _shlex.join(base_argv(paths, cs.spec.backup.stanza) + ["info", "--output=json"])
    res = cs.inventory.get(PG_PRIMARY).executor.run(argv, env={"PGPASSFILE": paths.pgpass}, check=False, timeout=60)
    return _restorable(cs.spec, res)


def c_one_redis_master(cs: Any) -> Finding:
    from ops.containers import REDIS_CLI
    name = "one Redis master, named by every Sentinel"
    masters, errors = [], []
    for node in _running_in(cs, "redis"):
        svc = cs.inventory.get(node)
        try:
            if "role:master" in cs.sh(svc, f"{REDIS_CLI} -p {svc.port} INFO replication"):
                masters.append(f"{svc.host}:{svc.port}")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{node}: {str(exc)[:100]}")
    named = set()
    for svc in cs.inventory.of_kind("sentinel"):
        if cs.state(svc)[0] != "RUNNING":
            continue
        try:
            from ops.containers import SENTINEL_CLI
            addr = cs.sh(svc, f"{SENTINEL_CLI} -p {svc.port} SENTINEL get-master-addr-by-name "
                              f"{cs.spec.redis.sentinel.master_name}").split()
            named.add(":".join(addr) or "none")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{svc.name}: {str(exc)[:100]}")
    ok = len(masters) == 1 and named == set(masters) and not errors
    return Finding(name, ok, f"masters {masters or 'none'}; Sentinels name {sorted(named)}"
                   + (f"; errors: {'; '.join(errors)}" if errors else ""))


CONTAINERS: tuple[Callable[[Any], Finding], ...] = (c_one_writable_primary, c_replicas_streaming, c_archiving_works,
                                                    c_backups_restorable, c_one_redis_master)
SETTLING = (replicas_streaming, one_redis_master, c_replicas_streaming, c_one_redis_master)
"""Invariants that converge by themselves after a change; given ``settle_s`` before they count."""


def check(target: Any, which: tuple[Callable[[Any], Finding], ...] = ALL, settle_s: float = 20) -> list[Finding]:
    findings = []
    for fn in which:
        deadline = time.monotonic() + (settle_s if fn in SETTLING else 0)
        while True:
            f = fn(target)
            if f.ok or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        findings.append(f)
    return findings


def require(target: Any, task: str, which: tuple[Callable[[Any], Finding], ...] = ALL,
            settle_s: float = 20) -> list[Finding]:
    """Check and raise :class:`InvariantViolated` (every failed invariant, with its evidence)."""
    findings = check(target, which, settle_s)
    bad = [f for f in findings if not f.ok]
    if bad:
        raise InvariantViolated(f"after `fab {task}`: " + "; ".join(f.invariant for f in bad),
                                " | ".join(f"{f.invariant}: {f.evidence}" for f in bad))
    return findings


def step(run: Any, target: Any, task: str, which: tuple[Callable[[Any], Finding], ...] = ALL) -> None:
    """The last step of every task that changes a stack: what must always hold, holds."""
    found = run.step("check the stack's invariants: one writable primary, replicas streaming, archiving, "
                     "backups restorable, one Redis master",
                     "SELECT pg_is_in_recovery() on every node; pg_switch_wal() until archived; "
                     "pgbackrest info; ROLE on every Redis; SENTINEL get-master-addr-by-name",
                     lambda: require(target, task, which))
    if found:
        run.notes["invariants"] = as_json(found)


def as_json(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]
