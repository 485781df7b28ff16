"""Release and failover drills against a throwaway local stack, shared by tests/release and
benchmarks/bench_release.py. Each drill drives load through Nginx while it acts, and returns
measured figures; the callers assert (tests) or print (benchmark) them.

    ThrowawayStack(state_dir, offset)    fab up / fab down --purge with every port shifted
    ├── switch_and_rollback_under_load()  0 failed requests; seconds until traffic is back
    ├── canary_share(weight)              share per X-Recon-Slot over 2,000 requests
    ├── failing_canary()                  a version answering 500s is reverted by the gate
    ├── redis_master_killed()             seconds until /ready answers again; jobs acknowledged
    └── postgres_failover()               write gap; acknowledged rows on the new primary
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import httpx
import psycopg

from testing.loadgen import LoadResult, run_load

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")

# Fast drills: 1 s Sentinel down-after, 1 s scrapes, 5 s analysis windows, one replica per slot;
# rate limits lifted so the load generator measures releases, not the limiter.
DRILL_ENV = {
    "RECON_REDIS__SENTINEL__DOWN_AFTER_MS": "1000",
    "RECON_BACKEND__REPLICAS": "1",
    "RECON_PROMETHEUS__SCRAPE_INTERVAL_S": "1",
    "RECON_RELEASE__ANALYSIS_WINDOW_S": "5",
    "RECON_NGINX__RATE_LIMIT__REQUESTS_PER_SECOND": "5000",
    "RECON_RATE_LIMIT_PER_MINUTE": "0",
}


class Background:
    """Run a load in a thread; ``result`` once joined."""

    def __init__(self, **kwargs):
        self.result: LoadResult | None = None
        self.t0 = 0.0
        self.stop = kwargs.setdefault("stop", threading.Event())
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)

    def _run(self, **kwargs):
        self.result = run_load(**kwargs)

    def __enter__(self) -> "Background":
        self.t0 = time.monotonic()
        self.thread.start()
        return self

    def now(self) -> float:
        """Seconds since the load started (the samples' clock, within a few ms)."""
        return time.monotonic() - self.t0

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


@dataclass
class ThrowawayStack:
    state_dir: Path
    offset: int
    extra_env: dict = field(default_factory=dict)

    def __post_init__(self):
        from tests.fix_stack import isolated_stack_env
        self.env = {**os.environ, **isolated_stack_env(self.state_dir, self.offset), **DRILL_ENV, **self.extra_env}
        self.env.pop("RECON_TEST_STACK", None)

    # -- commands --------------------------------------------------------------------------
    def fab(self, *args: str, timeout: float = 180, check: bool = False) -> subprocess.CompletedProcess:
        res = subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and res.returncode != 0:
            raise AssertionError(f"fab {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    def up(self) -> None:
        self.fab("up", timeout=300, check=True)
        self.token = self._token()

    def down(self) -> None:
        self.fab("down", "--purge", "--yes", timeout=180)

    @property
    def spec(self):
        from infra.spec import StackSpec
        saved = {k: os.environ.get(k) for k in self.env if k.startswith("RECON_")}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("RECON_")})
        try:
            return StackSpec()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def target(self):
        from infra.local.target import LocalTarget
        return LocalTarget(self.spec)

    def app_env(self) -> dict:
        from infra.local.processes import app_env
        t = self.target()
        return {**self.env, **app_env(t.spec, t.layout)}

    def _token(self) -> str:
        res = subprocess.run([sys.executable, "-m", "app", "token", "create", "--role", "operator", "--name",
                              "release-drill"], cwd=REPO, capture_output=True, text=True, env=self.app_env(),
                             timeout=60)
        if res.returncode != 0:
            raise AssertionError(f"token create failed: {res.stderr}")
        return res.stdout.strip().splitlines()[0]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.spec.nginx.https_port}"

    @property
    def cafile(self) -> str:
        return str(self.state_dir / "tls" / "ca.crt")

    def load(self, **kwargs) -> Background:
        kwargs.setdefault("base_url", self.base_url)
        kwargs.setdefault("cafile", self.cafile)
        return Background(**kwargs)

    def release_state(self) -> dict:
        return json.loads((self.state_dir / "release.json").read_text())

    def runs(self, task: str) -> list[dict]:
        from ops.runlog import read_runs
        return read_runs(self.state_dir / "runlog.jsonl", task)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, verify=self.cafile, timeout=30,
                            headers={"Authorization": f"Bearer {self.token}"})


# -- drills ------------------------------------------------------------------------------------

def switch_and_rollback_under_load(stack: ThrowawayStack) -> dict:
    """Load at 60 req/s through Nginx while `fab switch` then `fab rollback` run."""
    st = stack.release_state() if (stack.state_dir / "release.json").exists() else None
    before = st["active_slot"] if st else stack.spec.backend.active_slot
    after = "green" if before == "blue" else "blue"
    with stack.load(requests=4000, duration_s=90, concurrency=4, rate_per_s=40, paths=["/ready"]) as bg:
        time.sleep(2)
        sw = stack.fab("switch")
        t_sw_done = bg.now()
        time.sleep(2)
        t_rb = bg.now()
        rb = stack.fab("rollback")
        t_rb_done = bg.now()
        time.sleep(3)
    r = bg.result
    # traffic back: the last answer from the rolled-back slot, measured from pressing the button
    stale = [s for s in r.samples if s.t >= t_rb and s.slot == after and not s.failed]
    back_s = (max(s.t + s.latency_s for s in stale) - t_rb) if stale else 0.0
    after_cmd = [s for s in r.samples if s.t > t_rb_done]
    return {"switch_rc": sw.returncode, "switch_err": sw.stderr[-2000:], "rollback_rc": rb.returncode,
            "rollback_err": rb.stderr[-2000:], "requests": r.requests, "failed": r.failed,
            "failures": dict(r.failures()), "by_slot": dict(r.by_slot()), "p95_ms": round(r.p95_ms, 1),
            "served_by_new_after_switch": sum(1 for s in r.samples if t_sw_done < s.t < t_rb and s.slot == after),
            "rollback_command_s": round(t_rb_done - t_rb, 2), "rollback_traffic_back_s": round(back_s, 2),
            "rollback_task_traffic_back_s": stack.runs("rollback")[-1]["notes"].get("traffic_back_s"),
            "after_rollback_slots": sorted({s.slot for s in after_cmd if not s.failed}),
            "before": before, "after": after}


def canary_share(stack: ThrowawayStack, weight: int, requests: int = 2000) -> dict:
    res = stack.fab("canary", "--weight", str(weight))
    st = stack.release_state()
    idle = "green" if st["active_slot"] == "blue" else "blue"
    r = run_load(stack.base_url, requests=requests, duration_s=90, concurrency=8, paths=["/ready"],
                 cafile=stack.cafile, keepalive=True)
    return {"canary_rc": res.returncode, "canary_err": res.stderr[-1500:], "weight": weight, "slot": idle,
            "requests": r.requests, "failed": r.failed, "share": round(r.share(idle), 2),
            "by_slot": dict(r.by_slot())}


def failing_canary(stack: ThrowawayStack, weight: int = 30) -> dict:
    dep = stack.fab("deploy", "--version", "0.3.0-faulty", "--env", "RECON_FAULT_RATE=0.5", "--yes")
    if dep.returncode != 0:
        raise AssertionError(f"deploy of the faulty version failed:\n{dep.stderr}")
    st = stack.release_state()
    idle = "green" if st["active_slot"] == "blue" else "blue"
    with stack.load(requests=4000, duration_s=90, concurrency=4, rate_per_s=40,
                    paths=["/ready", "/api/v1/whoami"]) as bg:
        time.sleep(1)
        res = stack.fab("canary", "--weight", str(weight))
        t_done = bg.now()
        time.sleep(2)
    r = bg.result
    record = stack.runs("canary")[-1]
    after = [s for s in r.samples if s.t > t_done]
    return {"canary_rc": res.returncode, "canary_err": res.stderr[-2500:], "record": record,
            "state": stack.release_state(), "slot": idle,
            "faulty_answers_during": sum(1 for s in r.samples if s.slot == idle and s.failed),
            "failed_after_revert": sum(1 for s in after if s.failed),
            "slots_after_revert": sorted({s.slot for s in after if s.slot})}


def _prepare_reconciliation(stack: ThrowawayStack) -> int:
    with stack.client() as c:
        rec = c.post("/api/v1/reconciliations", json={"name": "failover drill"})
        rec.raise_for_status()
        rid = rec.json()["id"]
        for side, name in (("left", "bank_statement.csv"), ("right", "ledger_export.csv")):
            data = resources.files("app.samples").joinpath(name).read_bytes()
            c.post(f"/api/v1/reconciliations/{rid}/imports", data={"side": side},
                   files={"file": (name, data, "text/csv")}).raise_for_status()
    return rid


def _sentinel_master(stack: ThrowawayStack) -> tuple[str, int]:
    import redis
    s = stack.spec
    r = redis.Redis(host="127.0.0.1", port=s.redis.sentinel.port, socket_timeout=1, decode_responses=True,
                    **stack.target().redis_auth("sentinel"))
    host, port = r.execute_command("SENTINEL", "get-master-addr-by-name", s.redis.sentinel.master_name)
    return host, int(port)


def kill_hard(stack: ThrowawayStack, proc: str) -> None:
    """SIGKILL ``proc`` and keep it down: freeze it, tell supervisord to stop it (so it is not
    restarted), then kill it before it can run a shutdown handler."""
    sup = stack.target().supervisor
    pid = sup.info()[proc]["pid"]
    os.kill(pid, signal.SIGSTOP)
    sup.rpc.stopProcess(proc, False)
    os.kill(pid, signal.SIGKILL)


def redis_master_killed(stack: ThrowawayStack) -> dict:
    """Kill the Redis master under load; enqueue jobs through the API the whole time."""
    spec = stack.spec
    rid = _prepare_reconciliation(stack)
    _, port = _sentinel_master(stack)
    master_proc = next(n for n, p in spec.local_ports().items() if p == port and n.startswith("redis"))
    acked: list[int] = []
    refused: list[str] = []
    stop = threading.Event()

    def enqueue():
        with stack.client() as c:
            while not stop.is_set():
                try:
                    resp = c.post(f"/api/v1/reconciliations/{rid}/runs", json={"dry_run": True})
                    if resp.status_code == 202:
                        acked.append(resp.json()["id"])
                    else:
                        refused.append(f"HTTP {resp.status_code}")
                except httpx.HTTPError as exc:
                    refused.append(type(exc).__name__)
                time.sleep(0.3)

    jobs = threading.Thread(target=enqueue, daemon=True)
    with stack.load(requests=2000, duration_s=20, concurrency=4, rate_per_s=40, paths=["/ready"]) as bg:
        jobs.start()
        time.sleep(3)
        t_kill = bg.now()
        kill_hard(stack, master_proc)
        deadline = time.monotonic() + spec.redis.sentinel.down_after_ms / 1000 + 15
        while _sentinel_master(stack)[1] == port and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4)  # keep the load and the writes going after the promotion
    stop.set()
    jobs.join(timeout=30)
    r = bg.result
    failed_after = [s for s in r.samples if s.t >= t_kill and s.failed]
    if failed_after:
        last_fail = max(s.t for s in failed_after)
        back = r.first_ok_after(last_fail)
        answers_again_s = (back - t_kill) if back is not None else float("inf")
    else:
        answers_again_s = 0.0
    new_master = _sentinel_master(stack)
    # every acknowledged job finishes (the worker runs them after the failover too)
    done: dict[int, str] = {}
    deadline = time.monotonic() + 90
    with psycopg.connect(stack.app_env()["RECON_DATABASE_URL"], passfile=stack.app_env()["PGPASSFILE"]) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute("SELECT r.id, j.status FROM runs r JOIN jobs j ON j.id = r.job_id "
                                "WHERE r.id = ANY(%s)", (acked,)).fetchall()
            conn.commit()
            done = {int(i): s for i, s in rows}
            if len(done) == len(acked) and all(s in ("succeeded", "failed") for s in done.values()):
                break
            time.sleep(0.5)
    stack.target().supervisor.start(master_proc)  # the old master comes back; Sentinel makes it a replica
    return {"killed": master_proc, "killed_port": port, "new_master": f"{new_master[0]}:{new_master[1]}",
            "down_after_s": spec.redis.sentinel.down_after_ms / 1000, "answers_again_s": round(answers_again_s, 2),
            "ready_failed": r.failed, "requests": r.requests, "jobs_acknowledged": len(acked),
            "jobs_found": len(done), "jobs_succeeded": sum(1 for s in done.values() if s == "succeeded"),
            "jobs_states": dict(__import__("collections").Counter(done.values())), "enqueue_refused": len(refused)}


def postgres_failover(stack: ThrowawayStack) -> dict:
    """Writes through the API the whole time; `fab db.failover --yes` in the middle."""
    acked: list[int] = []

    def keep(resp: httpx.Response) -> None:
        if resp.status_code == 201:
            acked.append(int(resp.json()["id"]))

    with stack.load(requests=4000, duration_s=40, concurrency=4, rate_per_s=30, paths=["/api/v1/reconciliations"],
                    method="POST", json_body={"name": "pg failover drill"}, on_response=keep,
                    headers={"Authorization": f"Bearer {stack.token}"}) as bg:
        time.sleep(3)
        t_fo = bg.now()
        fo = stack.fab("db.failover", "--yes", timeout=120)
        t_fo_done = bg.now()
        time.sleep(4)
    r = bg.result
    gap = r.longest_gap_s(after=max(0.0, t_fo - 1))
    st = stack.release_state()
    new = st["postgres"]["primary"]
    spec = stack.spec
    port = spec.local_ports()[new]
    env = stack.app_env()
    with psycopg.connect(host="127.0.0.1", port=port, dbname=spec.postgres.database, user=spec.postgres.user,
                         passfile=env["PGPASSFILE"]) as conn:
        on_new = conn.execute("SELECT count(*) FROM reconciliations WHERE id = ANY(%s)", (acked,)).fetchone()[0]
        before_fo = sum(1 for s in r.samples if s.status == 201 and s.t + s.latency_s < t_fo)
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    return {"failover_rc": fo.returncode, "failover_err": fo.stderr[-2500:], "new_primary": new,
            "fenced": st["postgres"]["fenced"], "new_primary_in_recovery": in_recovery,
            "writes_acknowledged": len(acked), "acknowledged_before_failover": before_fo,
            "acknowledged_rows_on_new_primary": on_new, "write_gap_s": round(gap, 2),
            "failed_writes": r.failed, "failures": dict(r.failures()),
            "failover_command_s": round(t_fo_done - t_fo, 2),
            "record": stack.runs("db.failover")[-1]}
