"""A run's stored results as readers meet them: where they are, how big they are, their summary.

Shared by the API that reads results (:mod:`app.web.results`) and the worker that stores them
(:mod:`app.jobs.reconcile`), so "fresh enough" is one rule and the summary is one query.

Read position (read-your-writes, migration 0006)::

    a writer commits: the run's results, a review, an upload   runs.results_lsn is NULL
            │   (a new run starts NULL; triggers reset it on review and upload)
            ▼
    record_read_position(): results_lsn := pg_current_wal_insert_lsn(), after that commit
            │
            ▼
    reader: current_results() on the primary ─► Database.reader_at(results_lsn)
            replica has replayed results_lsn ? the replica : the primary

Statistics: a run ``COPY``s 10^5..10^6 rows into the bulk tables. Until the planner's
statistics count them it believes a new reconciliation or run holds a handful of rows and
picks nested loops that rescan a table per row (issue #12: 40 s for ``/summary`` at 10k x 10k).
:func:`refresh_statistics` runs ``ANALYZE`` in the transaction that stores the results, so
the statistics commit (and replicate) with the rows.

Traps:

* ``results_lsn`` can only be set *after* the commit it covers (a transaction does not know
  its own commit position). Between that commit and :func:`record_read_position` it is NULL
  and readers use the primary: correct, only not offloaded.
* :func:`refresh_statistics` holds ANALYZE's SHARE UPDATE EXCLUSIVE lock on the bulk tables
  until the caller commits: two workers storing at the same moment take turns for that step.
* The stored summary is computed after reading ``last_import``: an upload committing in
  between makes it newer than its label, never older, and a newer upload's id no longer
  matches the label, so it is not served.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from app.engine import match_rate
from app.records import CURRENCY_EXPONENTS, from_minor

def money(amount_minor: int | None, currency: str | None) -> str | None:
    """Minor units as an exact decimal string (``1234, "EUR"`` -> ``"12.34"``); unknown currency: the integer."""
    if amount_minor is None or currency is None or currency not in CURRENCY_EXPONENTS:
        return None if amount_minor is None else str(amount_minor)
    return str(from_minor(amount_minor, currency))


@dataclass(frozen=True)
class Results:
    """What the primary says about a reconciliation's current results, read in one statement."""

    recon_id: int
    name: str
    status: str
    run_id: int | None
    finished_at: dt.datetime | None
    review_version: int
    last_import: int
    lsn: str | None
    """``runs.results_lsn``: replicas that replayed it read like the primary; None: unknown."""

    @property
    def version(self) -> str:
        """Changes whenever the answers change: another run, a review, an upload.

        ``finished_at`` keeps a run id reused after a database restore (sequences go back
        too) from meeting answers cached for the run that had the id before.
        """
        finished = self.finished_at.timestamp() if self.finished_at else 0.0
        return f"{self.run_id}:{finished:.6f}:{self.review_version}:{self.last_import}"


_CURRENT = (
    "SELECT c.id, c.name, c.status, c.current_run_id, r.finished_at, coalesce(r.review_version, 0), "
    "(SELECT coalesce(max(i.id), 0) FROM imports i WHERE i.reconciliation_id = c.id), r.results_lsn::text "
    "FROM reconciliations c LEFT JOIN runs r ON r.id = c.current_run_id WHERE c.id = %s"
)


def current_results(conn: psycopg.Connection, recon_id: int) -> Results | None:
    """The reconciliation's current results as the primary has them; None if it does not exist."""
    row = conn.execute(_CURRENT, (recon_id,)).fetchone()
    return None if row is None else Results(*row)  # columns in field order


_RECORD_POSITION = (
    "UPDATE runs SET results_lsn = pg_current_wal_insert_lsn() "
    "WHERE id = (SELECT id FROM runs WHERE id = %s AND results_lsn IS NULL FOR UPDATE SKIP LOCKED) "
    "RETURNING results_lsn::text"
)


def record_read_position(conn: psycopg.Connection, run_id: int) -> str | None:
    """Set an unknown ``results_lsn`` of ``run_id`` to the primary's WAL insert position now.

    Call it after the writes it covers have committed, on the primary, and commit. It locks
    the run row first (``SKIP LOCKED``), so the position is taken after every writer that
    touched the row committed; a writer still holding it leaves the position unknown
    (returns None) and a later reader records it. Returns the position it set, or None.
    """
    row = conn.execute(_RECORD_POSITION, (run_id,)).fetchone()
    return None if row is None else str(row[0])


def refresh_statistics(conn: psycopg.Connection) -> None:
    """ANALYZE the bulk tables' join and filter columns (in the caller's transaction).

    ANALYZE inside a transaction counts that transaction's own uncommitted rows, and its
    statistics become visible at commit, together with them. ANALYZE needs the tables' owner:
    the service's role calls ``refresh_bulk_statistics()`` (migration 0008, SECURITY DEFINER,
    which names the tables and columns).
    """
    conn.execute("SELECT refresh_bulk_statistics()")


def last_import(conn: psycopg.Connection, recon_id: int) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM imports WHERE reconciliation_id = %s", (recon_id,)).fetchone()
    return int(row[0]) if row else 0


SUMMARY_SQL = (
    "SELECT r.side, r.currency, coalesce(m.status, 'unmatched') AS status, count(*), sum(r.amount_minor) "
    "FROM records r LEFT JOIN match_items mi ON mi.record_id = r.id AND mi.run_id = %(run)s AND mi.active "
    "LEFT JOIN matches m ON m.id = mi.match_id WHERE r.reconciliation_id = %(recon)s "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
_SUMMARY_DISCREPANCIES = (
    "SELECT d.field, count(*) FROM discrepancies d JOIN matches m ON m.id = d.match_id "
    "WHERE d.run_id = %(run)s AND m.status IN ('suggested', 'confirmed') GROUP BY 1 ORDER BY 1"
)


def summary(conn: psycopg.Connection, recon_id: int, run_id: int, review_version: int,
            engine: Any) -> dict[str, Any]:
    """Counts and amounts per status, side and currency of ``run_id``, live (after review).

    ``engine`` is the run's per-rule statistics (``runs.summary->'rules'``), passed through.
    Costs a join over every record of the reconciliation (~0.4 s at 100k x 100k): cache it.
    """
    params = {"run": run_id, "recon": recon_id}
    rows = conn.execute(SUMMARY_SQL, params).fetchall()
    disc = conn.execute(_SUMMARY_DISCREPANCIES, params).fetchall()
    counts = {f"{status}_{side}": 0 for status in ("confirmed", "suggested", "unmatched") for side in ("left", "right")}
    amounts = []
    for side, currency, status, n, total in rows:
        counts[f"{status}_{side}"] = counts.get(f"{status}_{side}", 0) + n
        amounts.append({"side": side, "currency": currency, "status": status, "count": n,
                        "amount_minor": int(total), "amount": money(int(total), currency)})
    return {"reconciliation_id": recon_id, "run_id": run_id, "review_version": review_version, "counts": counts,
            "match_rate": round(match_rate(counts), 6),  # one meaning: docs/engine.md
            "amounts": amounts, "discrepancies": dict(disc), "engine": engine}


def store_summary(conn: psycopg.Connection, recon_id: int, run_id: int, engine: Any) -> None:
    """Compute the run's summary now (in the results transaction) and keep it on the run row."""
    imported = last_import(conn, recon_id)
    body = summary(conn, recon_id, run_id, 0, engine)
    conn.execute("UPDATE runs SET results_summary = %s WHERE id = %s",
                 (Jsonb({"review_version": 0, "last_import": imported, "body": body}), run_id))


def stored_summary(conn: psycopg.Connection, results: Results) -> tuple[dict[str, Any] | None, Any]:
    """``(summary, engine)``: the worker's summary if it still describes ``results``, else None.

    ``engine`` (the run's per-rule statistics) comes along for computing a live summary.
    """
    row = conn.execute("SELECT results_summary, summary->'rules' FROM runs WHERE id = %s",
                       (results.run_id,)).fetchone()
    if row is None:
        return None, None
    stored, engine = row
    if isinstance(stored, dict) and stored.get("review_version") == results.review_version \
            and stored.get("last_import") == results.last_import:
        return stored["body"], engine
    return None, engine
