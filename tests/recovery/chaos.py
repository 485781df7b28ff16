"""The chaos sequence: a throwaway stack under steady writes, taken through every recovery
task in the order runbooks/disaster-recovery.md's main path gives, with the invariants
checked after each step.

    SEQUENCE   failover -> backup -> PITR restore -> rebuild-replica -> failback -> backup
               -> (Redis master lost: Sentinel promotes by itself) -> status

Writes arrive two ways the whole time: through Nginx over TLS (a reconciliation per write,
as a user's client would, retrying a 503 or a dropped connection for up to ``RETRY_S`` as
Retry-After asks) and straight into PostgreSQL through the service's own multi-host URL.
Each acknowledged write is recorded with its time; the test asserts none acknowledged before
a restore's target is missing after it, and none acknowledged outside the restore is lost.

Used by tests/recovery/test_chaos.py (slow, in CI) and benchmarks/bench_chaos.py (timings).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from tests.fix_stack import SCRATCH, isolated_stack_env

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")
OFFSET = 3000
RETRY_S = 15.0
SEQUENCE = ("db.failover", "backup --full", "restore --target-time", "db.rebuild-replica",
            "db.failover --to postgres-primary", "backup --full", "status")
"""The main path of runbooks/disaster-recovery.md, step for step (a test holds them equal)."""


def fab(env: dict, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    res = subprocess.run([FAB, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"fab {' '.join(args)} exited {res.returncode}:\n{res.stderr[-3000:]}")
    return res


def spec_of(env: dict):
    from infra.spec import load_spec
    saved = {k: os.environ.get(k) for k in env if k.startswith("RECON_")}
    os.environ.update({k: v for k, v in env.items() if k.startswith("RECON_")})
    try:
        return load_spec()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@dataclass
class Ack:
    name: str
    at: float


@dataclass
class Writer:
    """Writes one row per ``interval`` until stopped; ``acked`` holds what was acknowledged,
    ``failed`` what still failed after retrying for ``RETRY_S``, with when it was given up."""

    kind: str
    interval: float = 0.1
    acked: list[Ack] = field(default_factory=list)
    failed: list[tuple[str, float, str]] = field(default_factory=list)
    paused: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    n: int = 0

    def start(self) -> "Writer":
        threading.Thread(target=self._loop, daemon=True).start()
        return self

    def _loop(self) -> None:
        while not self.stopped.is_set():
            if self.paused.is_set():
                time.sleep(0.02)
                continue
            self.n += 1
            name = f"{self.kind}-{self.n:06d}"
            deadline = time.monotonic() + RETRY_S
            while True:
                try:
                    self.write(name)
                    self.acked.append(Ack(name, time.time()))
                    break
                except Exception as exc:  # noqa: BLE001 - every failure is retried, then counted
                    if time.monotonic() > deadline or self.stopped.is_set():
                        self.failed.append((name, time.time(), str(exc)[:200]))
                        break
                    time.sleep(0.2)
            time.sleep(self.interval)

    def write(self, name: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def pause(self) -> None:
        self.paused.set()
        time.sleep(RETRY_S / 10)

    def acked_before(self, t: float) -> set[str]:
        return {a.name for a in self.acked if a.at < t}

    def acked_between(self, t0: float, t1: float) -> set[str]:
        return {a.name for a in self.acked if t0 <= a.at < t1}


@dataclass
class ApiWriter(Writer):
    url: str = ""
    token: str = ""
    cafile: str = ""

    def write(self, name: str) -> None:
        with httpx.Client(verify=ssl.create_default_context(cafile=self.cafile), timeout=5) as c:
            r = c.post(self.url, json={"name": name}, headers={"Authorization": f"Bearer {self.token}"})
        if r.status_code != 201:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:100]}")


@dataclass
class DbWriter(Writer):
    dsn: str = ""
    passfile: str = ""

    def write(self, name: str) -> None:
        with psycopg.connect(self.dsn, passfile=self.passfile, connect_timeout=2, autocommit=True) as conn:
            conn.execute("INSERT INTO chaos_writes (name) VALUES (%s)", (name,))


class Chaos:
    """A throwaway stack (ports +OFFSET, state under .state/chaos) and its writers."""

    def __init__(self, name: str = "chaos"):
        self.state = SCRATCH / name
        self.env = {**os.environ, **isolated_stack_env(self.state, OFFSET),
                    "RECON_POSTGRES__ARCHIVE_TIMEOUT_S": "10"}
        self.timings: dict[str, float] = {}
        self.findings: dict[str, list] = {}

    # -- life ------------------------------------------------------------------------------
    def up(self) -> None:
        if self.state.exists():
            fab(self.env, "down", "--purge", "--yes", check=False)
        t0 = time.monotonic()
        fab(self.env, "up")
        self.timings["up_s"] = time.monotonic() - t0
        self.spec = spec_of(self.env)

    def down(self) -> None:
        fab(self.env, "down", "--purge", "--yes", check=False)
        shutil.rmtree(self.state, ignore_errors=True)

    def target(self):
        from infra.local.target import LocalTarget
        return LocalTarget(self.spec)

    # -- writes ----------------------------------------------------------------------------
    def start_writers(self) -> tuple[ApiWriter, DbWriter]:
        t = self.target()
        env, owner = t.app_env(), t.migrate_env()  # the table as the owner role; the writes as the service's
        with psycopg.connect(owner["RECON_DATABASE_URL"], passfile=owner["PGPASSFILE"], autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS chaos_writes (name text PRIMARY KEY, at timestamptz DEFAULT now())")
        res = subprocess.run([sys.executable, "-m", "app", "token", "create", "--name", "chaos", "--role", "operator"],
                             cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        token = res.stdout.strip().splitlines()[-1]
        s = self.spec
        self.api = ApiWriter("api", url=f"https://{s.host}:{s.nginx.https_port}/api/v1/reconciliations", token=token,
                             cafile=t.cafile).start()
        self.db = DbWriter("db", dsn=env["RECON_DATABASE_URL"], passfile=env["PGPASSFILE"]).start()
        return self.api, self.db

    @property
    def writers(self) -> tuple[Writer, ...]:
        return (self.api, self.db)

    def stored(self) -> set[str]:
        env = self.target().app_env()
        with psycopg.connect(env["RECON_DATABASE_URL"], passfile=env["PGPASSFILE"]) as conn:
            names = {r[0] for r in conn.execute("SELECT name FROM reconciliations WHERE name LIKE 'api-%'")}
            names |= {r[0] for r in conn.execute("SELECT name FROM chaos_writes")}
        return names

    # -- steps -----------------------------------------------------------------------------
    def step(self, name: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        t0 = time.monotonic()
        res = fab(self.env, *args, timeout=timeout)
        self.timings[f"{name}_s"] = round(time.monotonic() - t0, 2)
        self.check(name)
        return res

    def check(self, after: str) -> None:
        """Every invariant holds (ops/invariants.py), else the test fails naming which."""
        from ops import invariants
        found = invariants.check(self.target())
        self.findings[after] = [(f.invariant, f.ok, f.evidence) for f in found]
        bad = [f"{f.invariant}: {f.evidence}" for f in found if not f.ok]
        assert not bad, f"after {after}: " + "; ".join(bad)

    def redis_master_loss(self) -> None:
        """Stop the Redis master (no restart: supervisord would bring it back before Sentinel's
        down_after_ms), wait for Sentinel to promote, start the old master: it rejoins as a replica."""
        t = self.target()
        master = next(p.name for p in t.processes() if p.kind == "redis"
                      and "master" in t.check(p, t.secrets()).detail.split(",")[0])
        t0 = time.monotonic()
        t.supervisor.stop(master)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            named = t.sentinels_master()
            if named and named[1] != t.layout.endpoint(master).port:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"Sentinel did not promote a replica within 60s of stopping {master}")
        self.timings["redis_promoted_s"] = round(time.monotonic() - t0, 2)
        t.supervisor.start(master)
        self.check("redis master loss")
        # the runbook's last step: `fab status` exits 0 once Sentinel demoted the old master and
        # it synced from the new one (until then it says "stale master" or "link to master down")
        deadline = time.monotonic() + 60
        while (res := fab(self.env, "status", check=False)).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"fab status not green 60s after the old Redis master came back:\n"
                                     f"{res.stdout[-2500:]}{res.stderr[-500:]}")
            time.sleep(1)
        self.timings["redis master loss_s"] = round(time.monotonic() - t0, 2)

    def report(self) -> str:
        return json.dumps({"timings": self.timings,
                           "writes": {w.kind: {"acked": len(w.acked), "failed": len(w.failed)}
                                      for w in self.writers}}, indent=1)


@dataclass
class Outcome:
    """What the sequence left: writes lost where none may be, requests that still failed."""

    lost_before_target: dict[str, list[str]]
    lost_after_restore: dict[str, list[str]]
    failed_outside_restore: dict[str, list]
    acked: dict[str, int]


def run_sequence(c: Chaos) -> Outcome:
    """SEQUENCE on a stack that is up, under steady writes; each step checks the invariants."""
    api, db = c.start_writers()
    time.sleep(3)
    c.step("failover", "db.failover", "--yes")
    c.step("backup", "backup", "--full")
    time.sleep(2)
    target = time.time()  # the restore's target: every write acknowledged before it must survive
    time.sleep(2)
    before_target = {w.kind: w.acked_before(target) for w in (api, db)}
    for w in (api, db):
        w.pause()
    restore_started = time.time()
    c.step("restore", "restore", "--yes", "--target-time", iso(target))
    restore_ended = time.time()
    stored = c.stored()
    lost_before = {k: sorted(names - stored) for k, names in before_target.items()}
    for w in (api, db):
        w.paused.clear()
    c.step("rebuild-replica", "db.rebuild-replica", "--yes")
    c.step("failback", "db.failover", "--yes", "--to", "postgres-primary")
    c.step("backup-2", "backup", "--full")
    c.redis_master_loss()
    time.sleep(2)
    for w in (api, db):
        w.stopped.set()
    time.sleep(0.5)
    stored = c.stored()
    end = time.time()
    return Outcome(
        lost_before_target=lost_before,
        lost_after_restore={w.kind: sorted(w.acked_between(restore_ended, end) - stored) for w in (api, db)},
        failed_outside_restore={w.kind: [f for f in w.failed if not restore_started <= f[1] <= restore_ended + RETRY_S]
                                for w in (api, db)},
        acked={w.kind: len(w.acked) for w in (api, db)})


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")
