"""The job worker process: ``python -m app worker``.

One job at a time per process; scale by running more processes. The loop::

    LISTEN recon_jobs ─► claim (SKIP LOCKED) ─► heartbeat thread on ─► handler(ctx) ─► fenced commit
            ▲                                                                              │
            └───────────── wait for NOTIFY or RECON_JOB_POLL_SECONDS ◄─────────────────────┘

SIGTERM/SIGINT: stop claiming, finish the current job, exit 0. SIGKILL or a lost host: the
job's lease expires and another worker takes it over (see :mod:`app.jobs`).

Handlers live in a name -> "module:function" registry, imported lazily. A handler raises
:class:`PermanentJobError` for failures a retry cannot fix; anything else is retried with
backoff until ``max_attempts``.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import psycopg

from app import jobs, metrics, tracing
from app.cache import Cache
from app.db import Database
from app.logging import request_id_var
from app.settings import Settings

log = logging.getLogger(__name__)

PURGE_INTERVAL_SECONDS = 3600.0

HANDLERS: dict[str, str] = {
    "reconcile": "app.jobs.reconcile:handle",
}
"""Job kind -> ``module:function``; the module may also define ``on_failure(ctx, error)``."""


class PermanentJobError(Exception):
    """The job cannot succeed by retrying (bad input, missing rows): fail it at once."""


class JobContext:
    """What a handler gets: the job, pools, progress reporting and lease checks."""

    def __init__(self, job: jobs.Job, worker: str, db: Database, cache: Cache, settings: Settings) -> None:
        self.job = job
        self.worker = worker
        self.db = db
        self.cache = cache
        self.settings = settings
        self.lease_lost = threading.Event()
        self._last_db_progress = 0.0

    def check(self) -> None:
        """Raise :class:`app.jobs.LeaseLost` if another worker took this job over."""
        if self.lease_lost.is_set():
            raise jobs.LeaseLost(f"job {self.job.id}: lease lost by {self.worker}")

    def progress(self, stage: str, processed: int, total: int, *, force: bool = False) -> None:
        """Publish progress to Redis (always, best effort) and PostgreSQL (at most 1/s, or forced)."""
        self.cache.set_progress(self.job.id, stage=stage, processed=processed, total=total)
        now = time.monotonic()
        if force or now - self._last_db_progress >= 1.0:
            self._last_db_progress = now
            with self.db.primary() as conn:
                conn.execute("UPDATE jobs SET stage = %s, processed = %s, total = %s WHERE id = %s",
                             (stage, processed, total, self.job.id))

    def finish(self, conn: psycopg.Connection) -> None:
        """Fenced completion inside the caller's results transaction (raises LeaseLost)."""
        self.check()
        jobs.mark_succeeded(conn, self.job.id, self.worker)


def _resolve(kind: str) -> tuple[Callable[[JobContext], Any], Callable[[JobContext, str], Any] | None]:
    try:
        target = HANDLERS[kind]
    except KeyError:
        raise PermanentJobError(f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(HANDLERS))}") from None
    module_name, _, func = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, func), getattr(module, "on_failure", None)


class _Heartbeat(threading.Thread):
    def __init__(self, settings: Settings, ctx: JobContext) -> None:
        super().__init__(name=f"heartbeat-{ctx.job.id}", daemon=True)
        self.settings = settings
        self.ctx = ctx
        self.stop = threading.Event()

    def run(self) -> None:
        interval = max(0.2, self.settings.job_lease_seconds / 3)
        conn: psycopg.Connection | None = None
        while not self.stop.wait(interval):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.settings.require_database_url(), autocommit=True,
                                           connect_timeout=3, application_name="recon-heartbeat")
                if not jobs.heartbeat(conn, self.ctx.job.id, self.ctx.worker):
                    log.error("lease lost", extra={"job_id": self.ctx.job.id})
                    self.ctx.lease_lost.set()
                    return
            except psycopg.Error as exc:  # DB blip: keep trying; the lease tolerates missed beats
                log.warning("heartbeat failed", extra={"job_id": self.ctx.job.id, "error": str(exc)})
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


class Worker:
    def __init__(self, settings: Settings, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = threading.Event()
        self.db = Database(settings, min_size=1, max_size=4, name="recon-worker").open(wait=False)
        self.cache = Cache(settings)
        self.tracer = tracing.get_tracer(settings, "app.jobs")
        self._listen: psycopg.Connection | None = None

    def _connect_listener(self) -> psycopg.Connection:
        conn = psycopg.connect(self.settings.require_database_url(), autocommit=True,
                               connect_timeout=max(1, int(self.settings.db_connect_timeout)),
                               application_name="recon-worker")
        conn.execute(f"LISTEN {jobs.CHANNEL}")
        return conn

    def warm_up(self) -> None:
        """Import every handler module and let it warm up (``warm_up()`` if it has one)."""
        for kind, target in HANDLERS.items():
            module = importlib.import_module(target.partition(":")[0])
            warm = getattr(module, "warm_up", None)
            if warm is not None:
                t0 = time.perf_counter()
                warm()
                log.info("handler warmed up", extra={"kind": kind, "seconds": round(time.perf_counter() - t0, 3)})

    def run(self, once: bool = False) -> int:
        self.warm_up()
        log.info("worker started", extra={"worker": self.name, "lease_seconds": self.settings.job_lease_seconds})
        if self.settings.worker_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(self.settings.worker_metrics_port, addr=self.settings.worker_metrics_host,
                              registry=metrics.REGISTRY)
        backoff = 0.5
        next_purge = 0.0
        while not self.stopping.is_set():
            try:
                if self._listen is None or self._listen.closed:
                    self._listen = self._connect_listener()
                if time.monotonic() >= next_purge:
                    purged = jobs.purge_finished(self._listen, self.settings.job_retention_days)
                    if purged:
                        log.info("finished jobs purged", extra={"count": purged})
                    next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                job = jobs.claim(self._listen, self.name, self.settings.job_lease_seconds)
                backoff = 0.5
                if job is None:
                    if once:
                        return 0
                    for _ in self._listen.notifies(timeout=self.settings.job_poll_seconds, stop_after=1):
                        pass
                    continue
                self.execute(job)
                if once:
                    return 0
            except psycopg.OperationalError as exc:
                log.warning("database unreachable, retrying", extra={"error": str(exc), "retry_in": backoff})
                if self._listen is not None:
                    self._listen.close()
                self._listen = None
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10)
        log.info("worker stopped", extra={"worker": self.name})
        return 0

    def execute(self, job: jobs.Job) -> None:
        token = request_id_var.set(f"job-{job.id}")
        metrics.JOBS_CLAIMED.labels(str(job.reclaimed).lower()).inc()
        ctx = JobContext(job, self.name, self.db, self.cache, self.settings)
        log.info("job claimed", extra={"job_id": job.id, "kind": job.kind, "attempt": job.attempts,
                                       "reclaimed": job.reclaimed})
        beat = _Heartbeat(self.settings, ctx)
        beat.start()
        on_failure = None
        try:
            handler, on_failure = _resolve(job.kind)
            if job.attempts > job.max_attempts:
                raise PermanentJobError(f"gave up after {job.max_attempts} attempts (workers kept dying)")
            with self.tracer.start_as_current_span(f"job {job.kind}", attributes={
                    "recon.job_id": job.id, "recon.attempt": job.attempts, "recon.reclaimed": job.reclaimed}):
                handler(ctx)
            log.info("job succeeded", extra={"job_id": job.id})
        except jobs.LeaseLost as exc:
            log.error("job abandoned", extra={"job_id": job.id, "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the job row
            permanent = isinstance(exc, PermanentJobError)
            error = f"{type(exc).__name__}: {exc}"
            if not permanent:
                log.error("job failed", extra={"job_id": job.id, "error": error, "tb": traceback.format_exc()})
            retry_in = None if permanent else 2.0 * job.attempts
            try:
                with self.db.primary() as conn:
                    status = jobs.mark_failed(conn, job, self.name, error, retry_in=retry_in)
                    conn.commit()
                if status == "failed" and on_failure is not None:
                    on_failure(ctx, error)
                log.warning("job not done", extra={"job_id": job.id, "status": status, "error": error})
            except psycopg.Error as db_exc:  # the lease will expire and the job be retried
                log.error("could not record job failure", extra={"job_id": job.id, "error": str(db_exc)})
        finally:
            beat.stop.set()
            beat.join(timeout=5)
            request_id_var.reset(token)

    def close(self) -> None:
        if self._listen is not None:
            self._listen.close()
        self.db.close()
        self.cache.close()


def run_worker(settings: Settings, *, once: bool = False, name: str | None = None) -> int:
    """Entry point of ``python -m app worker``: run until SIGTERM/SIGINT."""
    worker = Worker(settings, name)

    def _stop(signum: int, _frame: Any) -> None:
        log.info("stopping after the current job", extra={"signal": signum})
        worker.stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        return worker.run(once=once)
    finally:
        worker.close()
