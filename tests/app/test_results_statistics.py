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


def rescans(node: dict[str, Any]) -> list[str]:
    """Tables a plan scans whole more than once (a sequential or bitmap scan inside a loop)."""
    found = []
    if node["Node Type"] in ("Seq Scan", "Bitmap Heap Scan") and not node.get("Parallel Aware") \
            and node.get("Actual Loops", 1) > 1:
        found.append(f"{node['Relation Name']} x{node['Actual Loops']}")
    for child in node.get("Plans", []):
        found += rescans(child)
    return found


def _queries() -> list[tuple[str, str]]:
    from app.db.results import SUMMARY_SQL
    from app.web.results import EXPORTS

    return [("summary", SUMMARY_SQL), *((f"export-{view}", export.sql()) for view, export in EXPORTS.items())]


@pytest.mark.parametrize("name, sql", _queries(), ids=[name for name, _ in _queries()])
def test_result_queries_scan_each_table_once(big_run: dict[str, int], db: psycopg.Connection, name: str,
                                             sql: str) -> None:
    from app.db.results import current_results
    from app.web.results import export_params

    results = current_results(db, big_run["recon"])
    assert results is not None
    with db.transaction():
        db.execute("SET LOCAL cursor_tuple_fraction = 1.0")  # as the XLSX export's cursor is planned
        assert rescans(plan(db, sql, export_params(results, None))) == []
