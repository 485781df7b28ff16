"""Right after a run the planner knows how big its results are: no quadratic plans on fresh tables.

A run bulk-loads tens of thousands of rows per table with ``COPY``; until statistics are
refreshed the planner believes a new reconciliation or run has a handful of rows and picks
nested loops that rescan a table per row (issue #12: ``/summary`` took 40 s at 10k x 10k,
the unmatched export 24 s). The worker refreshes statistics in the transaction that stores
the results, so they are there before anyone can read the run.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.app.test_service_jobs import seed

N = 3000


@pytest.fixture(scope="module")
def big_run(app_client: TestClient, as_operator: dict[str, str], dsn: str, workers, wait_run) -> dict[str, int]:  # type: ignore[no-untyped-def]
    workers.ensure()
    with psycopg.connect(dsn, autocommit=True) as conn:
        recon = seed(conn, N, name="statistics")
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
    return {"recon": recon, "run": run["id"]}


def plan(conn: psycopg.Connection, sql: str, params: Any = None) -> dict[str, Any]:
    (doc,), = conn.execute(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}", params).fetchall()
    return (json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("sql", [
    "SELECT * FROM records WHERE reconciliation_id = %(recon)s",
    "SELECT * FROM match_items WHERE run_id = %(run)s AND active",
    "SELECT * FROM matches WHERE run_id = %(run)s",
], ids=["records", "match_items", "matches"])
def test_row_estimates_of_a_fresh_run_are_right(big_run: dict[str, int], db: psycopg.Connection, sql: str) -> None:
    node = plan(db, sql, big_run)
    estimated, actual = node["Plan Rows"], node["Actual Rows"]
    assert actual >= N and actual / 2 <= estimated <= actual * 2, (estimated, actual)

