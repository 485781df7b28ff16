"""Troubleshooting on the local target: logs, a rolling restart, and the doctor's checks.

    logs(SERVICE, since, grep, lines)   the service's own log (<state>/log/<service>.log)
    export_logs(dest, since)            every log into one tar.gz (no secrets are ever logged)
    restart(SERVICE)                    one process, or each replica of a replicated service in
                                        turn, waiting until healthy before the next
    doctor()                            the specification's troubleshooting order: status,
                                        connectivity, resource usage, database performance, Redis
                                        performance, recent errors; each a verdict and a next step

Trap: a primary (PostgreSQL, or the Redis master) is never restarted here: that is a failover
(`fab db.failover`; Sentinel does Redis's), and restarting it would stop every write.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import socket
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from ops.errors import OpsError, UsageError

STAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})")
SINCE = re.compile(r"^(\d+)([smhd])$")
ERROR_WORDS = re.compile(r"\b(ERROR|FATAL|PANIC|CRITICAL|Traceback)\b|\"level\": ?\"(error|critical)\"", re.I)


def since_seconds(text: str | None) -> float | None:
    if text is None:
        return None
    m = SINCE.match(text)
    if not m:
        raise UsageError(f"--since {text!r}: allowed: a number and a unit, e.g. 30s, 10m, 2h, 1d")
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _line_time(line: str) -> float | None:
    m = STAMP.search(line[:60])
    if not m:
        return None
    try:
        return dt.datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}+00:00").timestamp()
    except ValueError:
        return None


def log_path(target, service: str) -> Path:
    names = [p.name for p in target.processes()]
    if service not in names and service != "supervisord":
        raise UsageError(f"no service {service!r}; one of {', '.join(names + ['supervisord'])}")
    return Path(target.layout.log(f"{service}.log"))


def logs(target, service: str, since: str | None = None, grep: str | None = None,
         lines: int = 200) -> list[str]:
    """The last ``lines`` lines of the service's log, newer than ``since``, matching ``grep``."""
    path = log_path(target, service)
    if not path.exists():
        return []
    window = since_seconds(since)
    cutoff = time.time() - window if window else None
    try:
        pattern = re.compile(grep) if grep else None
    except re.error as exc:
        raise UsageError(f"--grep {grep!r} is not a regular expression: {exc}") from None
    out: list[str] = []
    last_time: float | None = None
    for line in path.read_text(errors="replace").splitlines():
        t = _line_time(line)
        last_time = t if t is not None else last_time  # continuation lines keep their entry's time
        if cutoff and (last_time is None or last_time < cutoff):
            continue
        if pattern and not pattern.search(line):
            continue
        out.append(line)
    return out[-lines:] if lines else out


def follow(target, service: str, grep: str | None = None, seconds: float | None = None) -> Iterator[str]:
    """New lines as they are written (``seconds``: stop after that long)."""
    path = log_path(target, service)
    pattern = re.compile(grep) if grep else None
    end = time.monotonic() + seconds if seconds else None
    with path.open(errors="replace") as f:
        f.seek(0, 2)
        while end is None or time.monotonic() < end:
            line = f.readline()
            if not line:
                time.sleep(0.2)
                continue
            if not pattern or pattern.search(line):
                yield line.rstrip("\n")


def export_logs(target, dest: Path) -> Path:
    root = Path(target.layout.log(""))
    with tarfile.open(dest, "w:gz") as tar:
        for p in sorted(root.glob("*.log*")):
            tar.add(p, arcname=f"{target.spec.name}-logs/{p.name}")
    return dest


# -- restart -------------------------------------------------------------------------------------

def restart_plan(target, service: str) -> list[str]:
    """The processes to restart one by one: a process name, or a service whose members run."""
    from infra import services
    procs = [p.name for p in target.processes()]
    if service in procs:
        members = [service]
    else:
        try:
            svc = services.service(service)
        except KeyError:
            raise UsageError(f"no service or process {service!r}; one of {', '.join(procs)}") from None
        members = [p.name for p in target.processes() if p.service == svc.name]
        if not members:
            raise UsageError(f"service {service!r} runs no process on this stack")
    primary = target.release.postgres.primary
    redis_master = target.sentinels_master()
    for m in members:
        if m == primary:
            raise UsageError(f"{m} is the PostgreSQL primary: restarting it stops every write. Fail over "
                             "first (fab db.failover --yes), then restart it as a replica")
        proc = next(p for p in target.processes() if p.name == m)
        if proc.kind == "redis" and redis_master and redis_master[1] == proc.port:
            raise UsageError(f"{m} is the Redis master: stopping it makes Sentinel fail over "
                             "(runbooks/redis-failover.md); restart a replica, or let Sentinel move the master first")
    return members


def restart_one(target, name: str, timeout: float = 120) -> float:
    """Restart ``name`` and wait until healthy; a backend also waits until Nginx takes it back:
    Nginx keeps a replica it saw fail out of rotation for ``nginx.upstream_fail_timeout_s``, and
    stopping the next one before then leaves no live upstream (502s)."""
    t0 = time.monotonic()
    target.supervisor.stop(name)
    target.supervisor.start(name, wait=False)
    proc = next(p for p in target.processes() if p.name == name)
    target.wait_healthy([proc], target.secrets(), timeout=timeout)
    if proc.kind == "backend":
        time.sleep(target.spec.nginx.upstream_fail_timeout_s + 1)
    return time.monotonic() - t0


# -- doctor --------------------------------------------------------------------------------------

@dataclass
class Verdict:
    check: str
    verdict: str
    """ok, warn or fail"""
    detail: str
    next_step: str = ""


def doctor(target) -> list[Verdict]:
    return [step(target) for step in (_status, _connectivity, _resources, _database, _redis, _errors)]


def _status(target) -> Verdict:
    rows = target.status()
    bad = [f"{r.service}: {r.detail}" for r in rows if r.healthy is False]
    if bad:
        return Verdict("status", "fail", f"{len(bad)} not healthy: " + "; ".join(bad)[:600],
                       "fab logs SERVICE --since 10m for each; fab up starts what is stopped")
    return Verdict("status", "ok", f"{sum(1 for r in rows if r.healthy)} services healthy")


def _connectivity(target) -> Verdict:
    closed = []
    for p in target.processes():
        if p.port is None:
            continue
        try:
            with socket.create_connection((target.spec.host, p.port), timeout=1):
                pass
        except OSError as exc:
            closed.append(f"{p.name}:{p.port} ({exc.strerror or exc})")
    if closed:
        return Verdict("connectivity", "fail", "not accepting connections: " + ", ".join(closed),
                       "fab status; fab logs SERVICE; fab restart SERVICE")
    return Verdict("connectivity", "ok", "every port accepts connections")


def _resources(target) -> Verdict:
    usage = shutil.disk_usage(target.root)
    free_pct = usage.free / usage.total * 100
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    mem = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    avail_mib = int(mem["MemAvailable"].split()[0]) // 1024
    import os
    cpus = os.cpu_count() or 1
    detail = f"disk {free_pct:.0f}% free ({usage.free // 2**30} GiB), load {load1:.1f} on {cpus} cores, " \
             f"{avail_mib} MiB memory available"
    if free_pct < 5 or avail_mib < 256:
        return Verdict("resources", "fail", detail, "free disk (fab backup prunes by retention) or memory")
    if free_pct < 15 or load1 > 2 * cpus:
        return Verdict("resources", "warn", detail, "watch it: fab doctor again in a few minutes")
    return Verdict("resources", "ok", detail)


def _database(target) -> Verdict:
    from infra.local.bootstrap import superuser_conn
    primary = target.release.postgres.primary
    try:
        with superuser_conn(target.spec, target.layout, target.secrets(), proc=primary) as conn:
            conns, max_conns = conn.execute("SELECT count(*), current_setting('max_connections')::int "
                                            "FROM pg_stat_activity").fetchone()
            slow = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                                "now() - query_start > interval '30 seconds' AND pid <> pg_backend_pid()").fetchone()[0]
            hit = conn.execute("SELECT COALESCE(sum(blks_hit) / NULLIF(sum(blks_hit) + sum(blks_read), 0), 1) "
                               "FROM pg_stat_database").fetchone()[0]
            lag = conn.execute("SELECT COALESCE(max(EXTRACT(EPOCH FROM replay_lag)), 0) FROM pg_stat_replication"
                               ).fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - a verdict, not a crash
        return Verdict("database", "fail", f"cannot ask {primary}: {str(exc).splitlines()[0][:200]}",
                       f"fab logs {primary} --since 10m")
    detail = (f"{conns}/{max_conns} connections, {slow} queries running > 30 s, cache hit {float(hit):.1%}, "
              f"replay lag {float(lag):.1f}s")
    threshold = target.spec.prometheus.alerts.db_connections_ratio
    if conns / max_conns > threshold or slow:
        return Verdict("database", "warn", detail, "SELECT pid, now() - query_start, query FROM pg_stat_activity "
                                                   "WHERE state = 'active' ORDER BY 2 DESC (as postgres)")
    return Verdict("database", "ok", detail)


def _redis(target) -> Verdict:
    import redis
    master = target.sentinels_master() or (target.spec.host, target.layout.endpoint("redis-primary").port)
    try:
        r = redis.Redis(host=master[0], port=master[1], socket_timeout=2, **target.redis_auth("ops"))
        t0 = time.monotonic()
        r.ping()
        ping_ms = (time.monotonic() - t0) * 1000
        mem = r.info("memory")
    except redis.RedisError as exc:
        return Verdict("redis", "fail", f"master {master[0]}:{master[1]}: {exc}", "fab status; runbooks/redis-failover.md")
    used, maxmem = int(mem["used_memory"]), int(mem.get("maxmemory") or 0)
    detail = f"master {master[0]}:{master[1]}, PING {ping_ms:.1f} ms, memory {used // 2**20} MiB" + \
             (f" of {maxmem // 2**20} MiB" if maxmem else "")
    if ping_ms > 50 or (maxmem and used > 0.9 * maxmem):
        return Verdict("redis", "warn", detail, "redis.maxmemory_mib in the spec, or what fills it: redis-cli --bigkeys")
    return Verdict("redis", "ok", detail)


def _errors(target) -> Verdict:
    found = {}
    for p in target.processes():
        hits = [ln for ln in logs(target, p.name, since="10m", lines=0) if ERROR_WORDS.search(ln)]
        if hits:
            found[p.name] = (len(hits), hits[-1][:200])
    if found:
        worst = sorted(found.items(), key=lambda kv: -kv[1][0])[:5]
        return Verdict("recent errors", "warn", "; ".join(f"{n}: {c} in 10 min, last: {last}" for n, (c, last) in worst),
                       "fab logs SERVICE --since 10m --grep 'ERROR|FATAL'")
    return Verdict("recent errors", "ok", "no ERROR/FATAL/PANIC in any log in the last 10 minutes")


def as_json(verdicts: list[Verdict]) -> list[dict]:
    return [asdict(v) for v in verdicts]


class DoctorFailed(OpsError):
    pass
