"""Durable jobs in PostgreSQL: a ``jobs`` table claimed with ``FOR UPDATE SKIP LOCKED``.

Life of a job::

    queued ──claim──► running ──handler ok + fenced commit──► succeeded
      ▲                  │
      │                  ├── handler raised, attempts left ──► queued (run_after = now + backoff)
      │                  ├── handler raised, no attempts left ─► failed
      └── lease expired ─┘   (worker killed / host lost: no heartbeat for RECON_JOB_LEASE_SECONDS;
                              the next claim takes it over and counts an attempt)

Why not Redis: a job must survive a worker crash *and* a Redis failover, so the only copy
lives in PostgreSQL (covered by its backups and replication). Redis only carries progress.

Fencing: a worker finishing a job updates the row ``WHERE id = .. AND locked_by = me AND
status = 'running'`` inside the same transaction that stores the job's results. If the lease
was taken over meanwhile, that update matches nothing and the whole transaction rolls back:
two workers can never both store results for one job.

Trap: a handler must be idempotent up to its final fenced commit (it can be started again
after a crash); write durable effects only inside the transaction handed to
:meth:`app.jobs.worker.JobContext.finish`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg

CHANNEL = "recon_jobs"


class LeaseLost(RuntimeError):
    """Another worker took over this job (we missed heartbeats); stop without storing anything."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    reclaimed: bool


def enqueue(conn: psycopg.Connection, kind: str, payload: dict[str, Any], *, max_attempts: int = 3) -> int:
    """Insert a queued job and notify workers; runs in the caller's transaction (commit publishes it)."""
    row = conn.execute(
        "INSERT INTO jobs (kind, payload, max_attempts) VALUES (%s, %s, %s) RETURNING id",
        (kind, json.dumps(payload), max_attempts),
    ).fetchone()
    assert row is not None
    conn.execute(f"NOTIFY {CHANNEL}")  # delivered at commit, dropped on rollback
    return int(row[0])


_CLAIM = """
WITH next AS (
    SELECT id, status AS prev_status FROM jobs
    WHERE (status = 'queued' AND run_after <= now())
       OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => %(lease)s))
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE jobs j
   SET status = 'running', attempts = j.attempts + 1, locked_by = %(me)s,
       locked_at = now(), heartbeat_at = now()
  FROM next
 WHERE j.id = next.id
RETURNING j.id, j.kind, j.payload, j.attempts, j.max_attempts, next.prev_status = 'running'
"""


def claim(conn: psycopg.Connection, worker: str, lease_seconds: float) -> Job | None:
    """Claim the oldest runnable job (or one whose worker's lease expired) and commit the claim."""
    with conn.transaction():
        row = conn.execute(_CLAIM, {"lease": lease_seconds, "me": worker}).fetchone()
    if row is None:
        return None
    payload = row[2] if isinstance(row[2], dict) else json.loads(row[2])
    return Job(id=int(row[0]), kind=row[1], payload=payload, attempts=int(row[3]), max_attempts=int(row[4]),
               reclaimed=bool(row[5]))


def heartbeat(conn: psycopg.Connection, job_id: int, worker: str) -> bool:
    """Extend the lease; ``False`` means the job is no longer ours (taken over or finished)."""
    with conn.transaction():
        cur = conn.execute("UPDATE jobs SET heartbeat_at = now() WHERE id = %s AND locked_by = %s "
                           "AND status = 'running'", (job_id, worker))
    return cur.rowcount == 1


def mark_succeeded(conn: psycopg.Connection, job_id: int, worker: str) -> None:
    """Fenced completion, to be called inside the transaction that stores the results."""
    cur = conn.execute(
        "UPDATE jobs SET status = 'succeeded', finished_at = now(), locked_by = NULL, stage = 'done' "
        "WHERE id = %s AND locked_by = %s AND status = 'running'", (job_id, worker))
    if cur.rowcount != 1:
        raise LeaseLost(f"job {job_id} is no longer held by {worker}; its results were not stored")


def mark_failed(conn: psycopg.Connection, job: Job, worker: str, error: str, *, retry_in: float | None) -> str:
    """Record a handler failure: requeue with backoff while attempts remain, else fail. Returns the new status."""
    final = retry_in is None or job.attempts >= job.max_attempts
    status = "failed" if final else "queued"
    with conn.transaction():
        conn.execute(
            "UPDATE jobs SET status = %s, last_error = %s, locked_by = NULL, "
            "run_after = now() + make_interval(secs => %s), finished_at = CASE WHEN %s THEN now() END "
            "WHERE id = %s AND locked_by = %s AND status = 'running'",
            (status, error[:4000], 0 if final else retry_in, final, job.id, worker),
        )
    return status


def set_progress(conn: psycopg.Connection, job_id: int, stage: str, processed: int, total: int) -> None:
    with conn.transaction():
        conn.execute("UPDATE jobs SET stage = %s, processed = %s, total = %s WHERE id = %s",
                     (stage, processed, total, job_id))


def purge_finished(conn: psycopg.Connection, older_than_days: int) -> int:
    """Delete succeeded/failed jobs finished more than ``older_than_days`` ago; return how many.

    Runs and their summaries live in ``runs``; a job row is only the queue's bookkeeping.
    """
    with conn.transaction():
        cur = conn.execute("DELETE FROM jobs WHERE status IN ('succeeded', 'failed') "
                           "AND finished_at < now() - make_interval(days => %s)", (older_than_days,))
    return cur.rowcount
