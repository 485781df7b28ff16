"""PostgreSQL access: a primary pool for writes and an optional replica pool for reads.

``Database.primary()`` / ``Database.reader()`` / ``Database.reader_at(lsn)`` hand out pooled
psycopg 3 connections.

Traps:

* Pools open in the background (``open(wait=False)``) so a process starts, and ``/health``
  answers, while PostgreSQL is down; the first ``connection()`` then waits at most
  ``timeout`` seconds and raises :class:`DatabaseUnavailable`.
* Connections are checked on checkout (one round trip): after a PostgreSQL restart or
  failover, stale pooled connections are replaced instead of failing the next requests.
* With tracing on, every connection's cursors are :class:`app.tracing.TracedCursor`: each
  query inside a request or a job is a span (statement text, never its parameters).
* The replica lags the primary, by milliseconds or (replay conflicts, a slow disk, a
  ``recovery_min_apply_delay``) by minutes. ``reader()`` takes it however far behind it is:
  only for reads where staleness is harmless (the list of reconciliations). A read that must
  not be older than some write uses ``reader_at(lsn)`` with a WAL position taken after that
  write committed (see :mod:`app.db.results`): the replica answers once it has replayed it,
  the primary otherwise. If the replica is unreachable, both fall back to the primary.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from app import tracing
from app.settings import Settings, redact_dsn

log = logging.getLogger(__name__)


REPLICA_RETRY_SECONDS = 10.0
"""After a failed replica connection, reads go to the primary for this long."""


class DatabaseUnavailable(RuntimeError):
    """No connection could be obtained from the pool in time (server down, pool exhausted)."""


def _configure(conn: psycopg.Connection) -> None:
    conn.execute("SET TIME ZONE 'UTC'")
    conn.commit()


class Database:
    """Primary (+ optional replica) connection pools built from :class:`Settings`."""

    def __init__(self, settings: Settings, *, min_size: int | None = None, max_size: int | None = None,
                 name: str = "recon") -> None:
        self.settings = settings
        dsn = settings.require_database_url()
        kwargs: dict[str, object] = {"connect_timeout": max(1, int(settings.db_connect_timeout)),
                                     "application_name": name}
        traced = tracing.cursor_factory(settings)
        if traced is not None:
            kwargs["cursor_factory"] = traced
        self._primary = ConnectionPool(
            dsn, kwargs=kwargs, min_size=settings.db_pool_min if min_size is None else min_size,
            max_size=settings.db_pool_max if max_size is None else max_size,
            configure=_configure, open=False, name=f"{name}-primary", timeout=settings.db_connect_timeout,
            check=ConnectionPool.check_connection, max_idle=300,
        )
        self._replica: ConnectionPool | None = None
        if settings.database_replica_url is not None:
            self._replica = ConnectionPool(
                settings.database_replica_url.get_secret_value(), kwargs=kwargs,
                min_size=0, max_size=settings.db_pool_max, configure=_configure, open=False,
                name=f"{name}-replica", timeout=settings.db_connect_timeout,
                check=ConnectionPool.check_connection, max_idle=300,
            )
        self._dsn_shown = redact_dsn(dsn)
        self._replica_down_until = 0.0

    def open(self, wait: bool = False) -> Database:
        self._primary.open(wait=wait, timeout=self.settings.db_connect_timeout if wait else 30)
        if self._replica is not None:
            self._replica.open(wait=False)
        return self

    def close(self) -> None:
        self._primary.close()
        if self._replica is not None:
            self._replica.close()

    @contextlib.contextmanager
    def primary(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection to the primary; the block runs in one transaction (commit on exit)."""
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(self._primary.connection(timeout=timeout))
            except PoolTimeout as exc:
                raise DatabaseUnavailable(f"no connection to PostgreSQL at {self._dsn_shown} within "
                                          f"{timeout or self.settings.db_connect_timeout}s") from exc
            yield conn

    @contextlib.contextmanager
    def reader(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A connection for read-only queries: the replica when configured and reachable.

        The replica may be any distance behind the primary; see :meth:`reader_at` for reads
        that must see a given write.

        Trap: an error raised *inside* the block (a query failing on the replica) is not
        retried on the primary; only failing to get a replica connection falls back.
        """
        with self._replica_or_primary(timeout, lsn=None) as conn:
            yield conn

    @contextlib.contextmanager
    def reader_at(self, lsn: str | None, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A read-only connection that sees every commit up to WAL position ``lsn``.

        The replica when it is configured, reachable and has replayed ``lsn``
        (``pg_last_wal_replay_lsn() >= lsn``, one round trip); otherwise the primary.
        ``lsn=None`` means the position is unknown: the primary.

        Trap: ``lsn`` must have been taken *after* the write it stands for committed
        (``pg_current_wal_insert_lsn()`` in a later statement); a position read inside the
        writing transaction lies before its commit record, which the replica may not have.
        """
        if lsn is None:
            with self.primary(timeout) as conn:
                yield conn
            return
        with self._replica_or_primary(timeout, lsn=lsn) as conn:
            yield conn

    @property
    def has_replica(self) -> bool:
        """True when a replica is configured (reachable or not)."""
        return self._replica is not None

    @contextlib.contextmanager
    def _replica_or_primary(self, timeout: float | None, lsn: str | None) -> Iterator[psycopg.Connection]:
        """The replica (if it has replayed ``lsn``, when given), else the primary."""
        if self._replica is not None and time.monotonic() >= self._replica_down_until:
            with contextlib.ExitStack() as stack:
                try:
                    conn = stack.enter_context(self._replica.connection(timeout=timeout or 1.0))
                    usable = lsn is None or _replayed(conn, lsn)
                except (PoolTimeout, psycopg.OperationalError) as exc:
                    self._trip_replica_breaker(exc)
                    usable = False
                if usable:
                    yield conn
                    return
        with self.primary(timeout) as conn:
            yield conn

    def _trip_replica_breaker(self, exc: Exception) -> None:
        """Circuit breaker: do not make every read wait for a dead replica."""
        self._replica_down_until = time.monotonic() + REPLICA_RETRY_SECONDS
        log.warning("replica unavailable, reading from primary",
                    extra={"error": str(exc), "retry_in": REPLICA_RETRY_SECONDS})

    @property
    def uses_replica(self) -> bool:
        """True when reads currently go to the replica (configured and not tripped)."""
        return self._replica is not None and time.monotonic() >= self._replica_down_until

    def ping(self, timeout: float = 2.0) -> None:
        """Raise :class:`DatabaseUnavailable` unless ``SELECT 1`` succeeds on the primary."""
        try:
            with self.primary(timeout=timeout) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"PostgreSQL at {self._dsn_shown}: {exc}") from exc


def _replayed(conn: psycopg.Connection, lsn: str) -> bool:
    """Has the server behind ``conn`` replayed WAL up to ``lsn``? (A server not in recovery has.)"""
    row = conn.execute("SELECT NOT pg_is_in_recovery() OR coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)",
                       (lsn,)).fetchone()
    return bool(row and row[0])


def connect(settings: Settings, *, autocommit: bool = False) -> psycopg.Connection:
    """A single unpooled connection to the primary (CLI commands, LISTEN in the worker)."""
    dsn = settings.require_database_url()
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=max(1, int(settings.db_connect_timeout)),
                               application_name="recon-cli")
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {exc}") from exc
