"""Reads may use the replica DSN; a dead replica falls back to the primary without failing reads."""

from __future__ import annotations

import time

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.db import Database
from app.settings import Settings
from testing.servers import free_port


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
