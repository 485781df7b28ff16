"""Reads may use the replica; a dead replica falls back to the primary; a lagging one is never read stale.

The last part runs against a real hot standby of the session's PostgreSQL that applies every
commit seconds late (``recovery_min_apply_delay``): results read right after a run must be
the run's, whatever the replica has replayed.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.db import Database
from app.settings import Settings
from testing.servers import (
    OWNER_FILE,
    PG_BIN,
    PostgresServer,
    ThrowawayStack,
    free_port,
)
from tests.app.test_service_flow import LEFT, RIGHT, upload


def test_reader_uses_the_replica_dsn(settings: Settings, dsn: str) -> None:
    # Same server through a DSN whose sessions are read-only: proves reads go through that DSN.
    replica = f"{dsn}?options=-c%20default_transaction_read_only%3Don"
    db = Database(settings.model_copy(update={"database_replica_url": SecretStr(replica)})).open()
    try:
        with db.reader() as conn:
            assert conn.execute("SELECT current_setting('default_transaction_read_only')").fetchone() == ("on",)
        with db.primary() as conn:
            assert conn.execute("SELECT current_setting('default_transaction_read_only')").fetchone() == ("off",)
    finally:
        db.close()


def test_dead_replica_falls_back_to_primary_and_trips_a_breaker(settings: Settings) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/recon"
    db = Database(settings.model_copy(update={"database_replica_url": SecretStr(dead), "db_connect_timeout": 1.0})).open()
    try:
        t0 = time.monotonic()
        with db.reader() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not db.uses_replica
        t1 = time.monotonic()
        with db.reader() as conn:  # breaker open: straight to the primary
            conn.execute("SELECT 1")
        assert time.monotonic() - t1 < 0.5 <= t1 - t0 + 0.5
    finally:
        db.close()


def test_listings_work_with_a_replica_configured(settings: Settings, dsn: str, as_viewer: dict[str, str]) -> None:
    from app.web import create_app

    replica = f"{dsn}?options=-c%20default_transaction_read_only%3Don"
    with TestClient(create_app(settings.model_copy(update={"database_replica_url": SecretStr(replica)}))) as client:
        r = client.get("/api/v1/reconciliations", headers=as_viewer)
        assert r.status_code == 200
        assert client.get("/api/v1/audit", headers=as_viewer).status_code == 403


@pytest.mark.parametrize("sql", ["INSERT INTO audit_log (actor, action, entity) VALUES ('x', 'x', 'x')"])
def test_replica_session_refuses_writes(dsn: str, sql: str) -> None:
    """Guard for the test above: the read-only DSN really is read-only."""
    with psycopg.connect(f"{dsn}?options=-c%20default_transaction_read_only%3Don") as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(sql)


# -- read-your-writes against a real, deliberately delayed streaming replica --------------------

APPLY_DELAY_MS = 5000
"""The replica applies each commit this long after the primary: longer than any test's reads take."""


class DelayedReplica:
    """A hot standby of the session's primary (``pg_basebackup -R``), applying commits late.

    ``recovery_min_apply_delay`` holds back *commit* records, so for ``APPLY_DELAY_MS`` after a
    commit the replica answers queries as if it had not happened: exactly the lag that made
    results read right after a run come back empty with HTTP 200.
    Trap: the cluster lives under ``/tmp/recon-pg-*`` with an ``owner.pid`` so
    :func:`testing.servers.reap_orphans` stops it if this session dies before teardown.
    """

    def __init__(self, primary_port: int, delay_ms: int) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="recon-pg-"))
        self.server = PostgresServer(port=self.port, root=self.root)
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres",
                  "-D", str(self.server.datadir), "-R", "-X", "stream", "-c", "fast", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                f"-c fsync=off -c hot_standby=on -c max_connections=200 -c recovery_min_apply_delay={delay_ms}ms")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.server.datadir), "-o", opts, "-l", str(self.server.log),
                  "-w", "-t", "60", "start")

    def _run(self, *argv: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, timeout=120, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({res.returncode}): {res.stderr.strip()}\n"
                               f"{self.server.log.read_text(errors='replace')[-2000:] if self.server.log.exists() else ''}")

    def dsn(self) -> str:
        return self.server.dsn()

    def replayed(self, lsn: str) -> bool:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
        return bool(row and row[0])

    def current_run(self, recon_id: int) -> int | None:
        """``current_run_id`` of a reconciliation as the replica sees it now."""
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT current_run_id FROM reconciliations WHERE id = %s", (recon_id,)).fetchone()
        return None if row is None else row[0]

    def wait_replayed(self, lsn: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.replayed(lsn):
            if time.monotonic() > deadline:
                raise AssertionError(f"replica did not replay {lsn} within {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.stop()


def primary_lsn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return str(conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])  # type: ignore[index]


@pytest.fixture(scope="module")
def delayed_replica(stack: ThrowawayStack) -> Iterator[DelayedReplica]:
    assert stack.pg is not None
    replica = DelayedReplica(stack.pg.port, APPLY_DELAY_MS)
    try:
        yield replica
    finally:
        replica.stop()


@pytest.fixture(scope="module")
def replica_settings(settings: Settings, delayed_replica: DelayedReplica) -> Settings:
    return settings.model_copy(update={"database_replica_url": SecretStr(delayed_replica.dsn())})


@pytest.fixture(scope="module")
def replica_client(replica_settings: Settings) -> Iterator[TestClient]:
    from app.web import create_app

    with TestClient(create_app(replica_settings)) as client:
        yield client


@pytest.fixture()
def fresh_run(replica_client: TestClient, as_operator: dict[str, str], delayed_replica: DelayedReplica,
              dsn: str, workers, wait_run) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """A reconciliation of the flow test's files, run by a worker *just now*: the replica lags it.

    The uploads are replayed before the run starts, so the replica holds every record but none
    of the run's results: the state in which ``/unmatched`` used to list every record.
    """
    workers.ensure()
    recon = replica_client.post("/api/v1/reconciliations", json={"name": "read your writes"},
                                headers=as_operator).json()["id"]
    for side, data in (("left", LEFT), ("right", RIGHT)):
        assert upload(replica_client, recon, as_operator, side, data, f"{side}.csv").status_code == 201
    delayed_replica.wait_replayed(primary_lsn(dsn))
    run = replica_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(replica_client, run["id"], as_operator, timeout=30)["status"] == "succeeded"
    assert delayed_replica.current_run(recon) is None, "the replica already shows the run: nothing to prove"
    return {"recon": recon, "run": run["id"]}


EXPECTED_COUNTS = {"confirmed_left": 4, "confirmed_right": 5, "suggested_left": 1, "suggested_right": 1,
                   "unmatched_left": 1, "unmatched_right": 1}


def _summary(body: Any) -> Any:
    return body["counts"]


def _items(body: Any) -> Any:
    return len(body["items"])


def _csv_rows(text: str) -> int:
    return len(list(csv.DictReader(io.StringIO(text))))


@pytest.mark.parametrize("path, params, read, expected", [
    ("summary", {}, _summary, EXPECTED_COUNTS),
    ("matches", {}, _items, 5),
    ("unmatched", {}, _items, 2),
    ("discrepancies", {}, lambda body: len(body["items"]) >= 1, True),
    ("export", {"view": "matches"}, _csv_rows, 11),
    ("export", {"view": "unmatched"}, _csv_rows, 2),
], ids=["summary", "matches", "unmatched", "discrepancies", "export-matches", "export-unmatched"])
def test_results_read_right_after_a_run_are_not_older_than_the_run(
        replica_client: TestClient, as_viewer: dict[str, str], fresh_run: dict[str, int],
        delayed_replica: DelayedReplica, path: str, params: dict[str, str], read: Any, expected: Any) -> None:
    r = replica_client.get(f"/api/v1/reconciliations/{fresh_run['recon']}/{path}", headers=as_viewer, params=params)
    # Still lagging after the read: the answer below was given while the replica had no results.
    assert delayed_replica.current_run(fresh_run["recon"]) is None, "replica caught up during the read"
    assert r.status_code == 200, r.text
    assert read(r.text if path == "export" else r.json()) == expected


def test_summary_read_while_the_replica_lags_is_not_cached_stale(
        replica_client: TestClient, as_viewer: dict[str, str], fresh_run: dict[str, int],
        delayed_replica: DelayedReplica, dsn: str) -> None:
    url = f"/api/v1/reconciliations/{fresh_run['recon']}/summary"
    early = replica_client.get(url, headers=as_viewer).json()
    delayed_replica.wait_replayed(primary_lsn(dsn))
    late = replica_client.get(url, headers=as_viewer).json()
    assert late["counts"] == EXPECTED_COUNTS  # not an answer cached while the replica lagged
    assert early == late


def test_reader_at_uses_the_replica_only_once_it_has_replayed(replica_settings: Settings, dsn: str,
                                                              delayed_replica: DelayedReplica) -> None:
    db = Database(replica_settings).open(wait=True)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO audit_log (actor, action, entity) VALUES ('test', 'lsn.probe', 'test')")
        lsn = primary_lsn(dsn)
        assert not delayed_replica.replayed(lsn)
        with db.reader_at(lsn) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)  # lagging: the primary
        with db.reader_at(None) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)  # position unknown
        delayed_replica.wait_replayed(lsn)
        with db.reader_at(lsn) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)  # caught up: the replica
    finally:
        db.close()


@pytest.fixture()
def replayed_run(fresh_run: dict[str, int], delayed_replica: DelayedReplica, dsn: str) -> dict[str, int]:
    """``fresh_run`` once the replica holds it: the next write is the only thing it lags."""
    delayed_replica.wait_replayed(primary_lsn(dsn))
    return fresh_run


def test_summary_right_after_a_review_counts_the_review(replica_client: TestClient, as_operator: dict[str, str],
                                                        replayed_run: dict[str, int],
                                                        delayed_replica: DelayedReplica, dsn: str) -> None:
    url = f"/api/v1/reconciliations/{replayed_run['recon']}"
    before = replica_client.get(f"{url}/summary", headers=as_operator).json()["counts"]
    suggested = replica_client.get(f"{url}/matches", headers=as_operator, params={"status": "suggested"}).json()
    assert replica_client.post(f"/api/v1/matches/{suggested['items'][0]['id']}/confirm",
                               headers=as_operator).status_code == 200
    early = replica_client.get(f"{url}/summary", headers=as_operator).json()["counts"]
    delayed_replica.wait_replayed(primary_lsn(dsn))
    late = replica_client.get(f"{url}/summary", headers=as_operator).json()["counts"]
    expected = {**before, "suggested_left": 0, "suggested_right": 0,
                "confirmed_left": before["confirmed_left"] + 1, "confirmed_right": before["confirmed_right"] + 1}
    assert (early, late) == (expected, expected)


def test_unmatched_right_after_an_upload_lists_the_new_records(replica_client: TestClient,
                                                               as_operator: dict[str, str],
                                                               replayed_run: dict[str, int],
                                                               delayed_replica: DelayedReplica) -> None:
    url = f"/api/v1/reconciliations/{replayed_run['recon']}"
    extra = b"date,reference,amount,currency\n2026-04-01,LATE-1,5.00,EUR\n"
    assert upload(replica_client, replayed_run["recon"], as_operator, "left", extra, "late.csv").status_code == 201
    refs = [r["reference"] for r in replica_client.get(f"{url}/unmatched", headers=as_operator,
                                                      params={"side": "left"}).json()["items"]]
    counts = replica_client.get(f"{url}/summary", headers=as_operator).json()["counts"]
    assert "LATE-1" in refs and counts["unmatched_left"] == EXPECTED_COUNTS["unmatched_left"] + 1
