"""Durable jobs: a worker killed mid-job or a Redis outage/failover loses no job and stores once."""

from __future__ import annotations

import datetime as dt
import json
import time

import polars as pl
import psycopg
import pytest
from fastapi.testclient import TestClient

from app.records import RECORD_SCHEMA
from app.web.reconciliations import copy_records


def seed(db: psycopg.Connection, n: int = 200, name: str = "jobs test") -> int:
    """A reconciliation with ``n`` left and ``n`` right records (all pair by reference), no HTTP upload."""
    recon = db.execute("INSERT INTO reconciliations (name, created_by) VALUES (%s, 'test') RETURNING id",
                       (name,)).fetchone()[0]
    base = dt.date(2026, 1, 1)
    for side in ("left", "right"):
        frame = pl.DataFrame({
            "id": list(range(1, n + 1)), "side": [side] * n, "reference": [f"REF{i:06d}" for i in range(n)],
            "amount_minor": [1000 + i for i in range(n)], "currency": ["EUR"] * n,
            "booking_date": [base + dt.timedelta(days=i % 28) for i in range(n)], "value_date": [None] * n,
            "counterparty": [f"party {i}" for i in range(n)], "description": ["x"] * n, "raw": ["raw"] * n,
            "line": list(range(2, n + 2)),
        }, schema=RECORD_SCHEMA)
        imp = db.execute(
            "INSERT INTO imports (reconciliation_id, side, filename, format, content_sha256, size_bytes, record_count, "
            "data, created_by) VALUES (%s, %s, 'seed.csv', 'csv', %s, 1, %s, 'x', 'test') RETURNING id",
            (recon, side, f"{recon}-{side}", n)).fetchone()[0]
        with db.transaction():
            copy_records(db, recon, imp, side, frame)
    return int(recon)


def active_items(db: psycopg.Connection, run_id: int) -> tuple[int, int]:
    return db.execute("SELECT count(*), count(DISTINCT record_id) FROM match_items WHERE run_id = %s AND active",
                      (run_id,)).fetchone()


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_run_is_processed_by_a_worker_process(app_client: TestClient, db: psycopg.Connection, worker,  # type: ignore[no-untyped-def]
                                              as_operator: dict[str, str], wait_run) -> None:  # type: ignore[no-untyped-def]
    recon = seed(db, 300)
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    done = wait_run(app_client, run["id"], as_operator)
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"stage": "done", "processed": 600, "total": 600, "source": "database"}
    assert done["job"]["attempts"] == 1
    assert active_items(db, run["id"]) == (600, 600)
    assert db.execute("SELECT count(*) FROM matches WHERE run_id = %s", (run["id"],)).fetchone()[0] == 300
    assert done["summary"]["counts"]["confirmed_left"] == 300


def test_worker_killed_mid_job_loses_nothing_and_stores_once(app_client: TestClient, db: psycopg.Connection,
                                                             dsn: str, workers, as_operator: dict[str, str],  # type: ignore[no-untyped-def]
                                                             wait_run) -> None:  # type: ignore[no-untyped-def]
    workers.stop_all()
    victim, victim_proc = workers.start()
    recon = seed(db, 500)
    # Hold the run row locked: the worker claims the job, then blocks on its first UPDATE of the run,
    # so it is provably mid-job (claimed, heartbeating, nothing stored) when we kill it.
    blocker = psycopg.connect(dsn)
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    blocker.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run["id"],))
    job = wait_for(lambda: db.execute("SELECT status, locked_by, attempts FROM jobs WHERE id = %s AND status = "
                                      "'running'", (run["job_id"],)).fetchone(), 20, "the worker to claim the job")
    assert job == ("running", victim, 1)
    wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone(), 10,
             "the worker to block on the run row")
    victim_proc.stop(sig="kill")
    assert victim_proc.popen.returncode == -9
    blocker.rollback()
    blocker.close()
    assert db.execute("SELECT status, locked_by FROM jobs WHERE id = %s", (run["job_id"],)).fetchone() == \
        ("running", victim)  # still claimed by the dead worker: only the lease can free it

    heir, heir_proc = workers.start()
    done = wait_run(app_client, run["id"], as_operator, timeout=60)
    assert done["status"] == "succeeded", (done, heir_proc.output()[-3000:])
    assert done["job"]["attempts"] == 2
    assert active_items(db, run["id"]) == (1000, 1000)  # stored exactly once
    assert db.execute("SELECT count(*) FROM matches WHERE run_id = %s", (run["id"],)).fetchone()[0] == 500
    claimed = [json.loads(ln) for ln in heir_proc.output().splitlines() if '"job claimed"' in ln]
    assert any(c["job_id"] == run["job_id"] and c["reclaimed"] is True for c in claimed), claimed


def test_fenced_completion_refuses_a_worker_that_lost_its_lease(dsn: str, db: psycopg.Connection,
                                                               workers) -> None:  # type: ignore[no-untyped-def]
    from app import jobs

    workers.stop_all()  # this test plays both workers itself
    with psycopg.connect(dsn) as conn:
        job_id = jobs.enqueue(conn, "reconcile", {"run_id": -1})
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        # other queued jobs may exist (shared database): claim until ours comes up, release the rest
        taken = []
        while True:
            job = jobs.claim(conn, "slow-worker", lease_seconds=60)
            assert job is not None
            if job.id == job_id:
                break
            taken.append(job.id)
        conn.execute("UPDATE jobs SET status = 'queued', locked_by = NULL, attempts = attempts - 1 WHERE id = ANY(%s)",
                     (taken,))
        conn.execute("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = %s", (job_id,))
        stolen = jobs.claim(conn, "fast-worker", lease_seconds=60)
        assert stolen is not None and stolen.id == job_id and stolen.reclaimed and stolen.attempts == 2
        assert jobs.heartbeat(conn, job_id, "slow-worker") is False
        with pytest.raises(jobs.LeaseLost, match=f"job {job_id} is no longer held by slow-worker"):
            with conn.transaction():
                jobs.mark_succeeded(conn, job_id, "slow-worker")
        jobs.mark_failed(conn, stolen, "fast-worker", "test cleanup", retry_in=None)
    workers.ensure()
    assert db.execute("SELECT status, last_error FROM jobs WHERE id = %s", (job_id,)).fetchone() == \
        ("failed", "test cleanup")


def test_failing_job_is_retried_then_failed_with_the_reason(app_client: TestClient, db: psycopg.Connection,
                                                            worker, as_operator: dict[str, str],  # type: ignore[no-untyped-def]
                                                            wait_run) -> None:  # type: ignore[no-untyped-def]
    recon = seed(db, 10)
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    # A record in a currency the engine refuses makes the job fail permanently (no pointless retries).
    db.execute("UPDATE records SET currency = 'XXX' WHERE reconciliation_id = %s AND id = "
               "(SELECT min(id) FROM records WHERE reconciliation_id = %s)", (recon, recon))
    done = wait_run(app_client, run["id"], as_operator)
    assert done["status"] == "failed"
    assert "unknown currency" in done["error"] and "XXX" in done["error"]
    assert done["job"]["attempts"] == 1 and done["job"]["status"] == "failed"
    assert db.execute("SELECT status FROM reconciliations WHERE id = %s", (recon,)).fetchone() == ("failed",)


def test_redis_down_loses_no_job(app_client: TestClient, db: psycopg.Connection, workers,  # type: ignore[no-untyped-def]
                                 as_operator: dict[str, str], wait_run) -> None:  # type: ignore[no-untyped-def]
    from testing.servers import free_port

    workers.stop_all()
    _, proc = workers.start(env={"RECON_REDIS_SENTINELS": f"127.0.0.1:{free_port()}", "RECON_REDIS_SOCKET_TIMEOUT": "0.2"})
    try:
        recon = seed(db, 100)
        run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
        done = wait_run(app_client, run["id"], as_operator)
        assert done["status"] == "succeeded", proc.output()[-2000:]
        assert active_items(db, run["id"]) == (200, 200)
        assert "cache write skipped" in proc.output()
    finally:
        proc.stop()
        workers.ensure()


def test_cache_follows_a_sentinel_failover() -> None:
    """A real failover: kill the master, Sentinel promotes the replica, the same client carries on."""
    import redis

    from app.cache import Cache
    from app.settings import Settings
    from testing.servers import RedisServer, SentinelServer

    master = RedisServer().start()
    replica = RedisServer(replica_of=master.port).start()
    sentinel = SentinelServer(master_port=master.port, master_name="failover-test").start()
    try:
        cache = Cache(Settings(redis_sentinels=f"127.0.0.1:{sentinel.port}", redis_master_name="failover-test",
                               redis_socket_timeout=0.5))
        assert cache.master_address() == ("127.0.0.1", master.port)
        cache.set_json("k", {"v": 1}, 60)
        wait_for(lambda: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up", 10,
                 "replication")
        wait_for(lambda: sentinel_knows_replica(sentinel.port), 15, "sentinel to discover the replica")
        master.stop()
        wait_for(lambda: _master_port(cache) == replica.port, 30, "sentinel to promote the replica")
        wait_for(lambda: _try_ping(cache), 10, "the client to reach the new master")
        cache.set_json("k2", {"v": 2}, 60)
        assert cache.get_json("k2") == {"v": 2}
        assert cache.get_json("k") == {"v": 1}  # replicated before the failover
        assert cache.hit_rate_limit("failover", 10) == (True, 0)
    finally:
        sentinel.stop()
        replica.stop()
        master.stop()


def sentinel_knows_replica(port: int) -> bool:
    import redis

    return bool(redis.Redis(port=port).sentinel_slaves("failover-test"))


def _master_port(cache) -> int | None:  # type: ignore[no-untyped-def]
    try:
        return cache.master_address()[1]
    except Exception:  # noqa: BLE001 - sentinel busy during the failover
        return None


def _try_ping(cache) -> bool:  # type: ignore[no-untyped-def]
    from app.cache import CacheUnavailable

    try:
        cache.ping()
        return True
    except CacheUnavailable:
        return False


def test_worker_serves_business_metrics(app_client: TestClient, db: psycopg.Connection, workers,  # type: ignore[no-untyped-def]
                                        as_operator: dict[str, str], wait_run) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from testing.servers import free_port

    port = free_port()
    workers.stop_all()
    _, proc = workers.start(env={"RECON_WORKER_METRICS_PORT": str(port)})
    try:
        recon = seed(db, 50)
        run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
        assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
        text = wait_for(lambda: _scrape(httpx, port), 10, "the worker's metrics endpoint")
        assert 'recon_reconciliations_total{outcome="succeeded"} 1.0' in text
        assert "recon_records_processed_total 100.0" in text
        assert "recon_match_rate 1.0" in text
        assert "recon_reconciliation_duration_seconds_count 1.0" in text
        assert 'recon_jobs_claimed_total{reclaimed="false"} 1.0' in text
    finally:
        proc.stop()
        workers.ensure()


def _scrape(httpx, port: int) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
    except httpx.HTTPError:
        return None


def test_worker_stops_cleanly_on_sigterm(workers) -> None:  # type: ignore[no-untyped-def]
    name, proc = workers.start()
    wait_for(lambda: '"worker started"' in proc.output(), 30, "the worker to start")
    assert proc.stop(sig="term") == 0
    assert '"worker stopped"' in proc.output()
    workers.ensure()


def test_progress_of_a_running_job_is_visible(app_client: TestClient, db: psycopg.Connection, dsn: str,  # type: ignore[no-untyped-def]
                                              worker, as_viewer: dict[str, str], as_operator: dict[str, str],
                                              wait_run) -> None:
    recon = seed(db, 2000)
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    wait_for(lambda: db.execute("SELECT 1 FROM jobs WHERE id = %s AND status = 'running'",
                                (run["job_id"],)).fetchone(), 30, "the job to be claimed")
    # Freeze the worker at its next write to the job row (progress, completion): it is mid-job.
    with psycopg.connect(dsn) as blocker:
        blocker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (run["job_id"],))
        time.sleep(0.3)
        state = app_client.get(f"/api/v1/runs/{run['id']}", headers=as_viewer).json()
        assert state["status"] == "running", state
        assert state["progress"]["source"] == "redis"
        assert state["progress"]["stage"] in ("load", "match", "store")
        assert state["progress"]["total"] in (0, 4000) and state["progress"]["processed"] <= 4000
        blocker.rollback()
    done = wait_run(app_client, run["id"], as_viewer)
    assert done["status"] == "succeeded" and done["progress"]["processed"] == 4000


def test_finished_jobs_are_purged_after_retention(dsn: str, db: psycopg.Connection) -> None:
    from app import jobs

    with psycopg.connect(dsn, autocommit=True) as conn:
        old = jobs.enqueue(conn, "reconcile", {"run_id": -2})
        fresh = jobs.enqueue(conn, "reconcile", {"run_id": -3})
        queued = jobs.enqueue(conn, "reconcile", {"run_id": -4})
        conn.execute("UPDATE jobs SET status = 'succeeded', finished_at = now() - interval '31 days' WHERE id = %s",
                     (old,))
        conn.execute("UPDATE jobs SET status = 'failed', finished_at = now() - interval '29 days' WHERE id = %s",
                     (fresh,))
        conn.execute("UPDATE jobs SET run_after = now() + interval '1 hour' WHERE id = %s", (queued,))
        assert jobs.purge_finished(conn, 30) >= 1
        left = {r[0] for r in conn.execute("SELECT id FROM jobs WHERE id = ANY(%s)", ([old, fresh, queued],))}
        assert left == {fresh, queued}
        conn.execute("DELETE FROM jobs WHERE id = ANY(%s)", ([fresh, queued],))


def test_a_job_that_keeps_killing_workers_is_given_up(app_client: TestClient, db: psycopg.Connection, workers,  # type: ignore[no-untyped-def]
                                                      as_operator: dict[str, str], wait_run) -> None:
    workers.stop_all()
    recon = seed(db, 10)
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    # As if three workers in a row had claimed it and died: attempts used up, lease long expired.
    db.execute("UPDATE jobs SET status = 'running', attempts = max_attempts, locked_by = 'dead', "
               "heartbeat_at = now() - interval '1 hour' WHERE id = %s", (run["job_id"],))
    workers.ensure()
    done = wait_run(app_client, run["id"], as_operator)
    assert done["status"] == "failed"
    assert "gave up after 3 attempts" in done["error"]
    assert done["job"]["attempts"] == 4 and done["job"]["status"] == "failed"
