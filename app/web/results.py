"""Results of the current run: summary, matches, unmatched records, discrepancies, exports.

Listings are keyset-paginated: pass the returned ``next_after`` as ``after`` for the next
page (stable under concurrent review, unlike offsets).

Read-your-writes: a read is never older than the last run, review or upload before it. Each
request reads the reconciliation's state on the primary, then its results from the replica
only once that has replayed the results' read position (``runs.results_lsn``), else from the
primary (:func:`reading`, :mod:`app.db.results`).

``/summary`` right after a run is the summary the worker stored with the results; after a
review or an upload it is computed live and cached in Redis under the results' version
(run, run finish time, review version, last import), so no other state's answer is served.

Amounts are integer minor units (``*_minor``) plus a decimal string (``amount``) made with
:func:`app.records.from_minor`; never a float.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import re
from collections.abc import Iterator
from typing import Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from app.auth import Principal
from app.db import Database
from app.db import results as stored
from app.db.results import Results, money
from app.records import CURRENCY_EXPONENTS, from_minor
from app.web.deps import require, services
from app.web.services import Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/reconciliations/{recon_id}", tags=["results"])

MatchStatus = Literal["active", "suggested", "confirmed", "rejected", "unlinked", "all"]
_RECORD_COLS = ("id", "side", "import_id", "line", "reference", "amount_minor", "currency", "booking_date",
                "value_date", "counterparty", "description")
_MATCH_COLS = ("id", "kind", "status", "origin", "rule", "score", "criteria", "amount_delta_minor", "date_delta_days",
               "left_amount_minor", "right_amount_minor", "currency", "reviewed_by", "reviewed_at", "created_at")


SUMMARY_CACHE_SECONDS = 3600


def current_results(db: Database, recon_id: int) -> Results:
    """The reconciliation's current results as the primary has them (404 / 409 when there are none)."""
    with db.primary() as conn:
        results = stored.current_results(conn, recon_id)
    if results is None:
        raise HTTPException(404, f"reconciliation {recon_id} does not exist")
    if results.run_id is None:
        raise HTTPException(409, f"reconciliation {recon_id} has no finished run yet; "
                            f"POST /api/v1/reconciliations/{recon_id}/runs first (status: {results.status})")
    return results


def current_run(db: Database, recon_id: int) -> int:
    run_id = current_results(db, recon_id).run_id
    assert run_id is not None
    return run_id


@contextlib.contextmanager
def reading(db: Database, results: Results) -> Iterator[psycopg.Connection]:
    """A connection that sees ``results`` or anything newer: the replica once it has replayed them.

    When the read position is unknown (a review or upload committed since it was recorded)
    it is recorded now, on the primary, for the next reads; this read goes to the primary.
    """
    lsn = results.lsn
    if lsn is None and db.has_replica and results.run_id is not None:
        try:
            with db.primary() as conn:
                stored.record_read_position(conn, results.run_id)
        except psycopg.Error as exc:  # this read is right either way; the next one tries again
            log.warning("read position not recorded", extra={"run_id": results.run_id, "error": str(exc)})
    with db.reader_at(lsn) as conn:
        yield conn


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= 1000:
        raise HTTPException(422, f"limit={limit} is out of range 1..1000")


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    rec = dict(zip(_RECORD_COLS, row))
    rec["amount"] = money(rec["amount_minor"], rec["currency"])
    return rec


def _match_filters(run_id: int, status: MatchStatus, rule: str | None, kind: str | None, currency: str | None,
                   q: str | None, after: int) -> tuple[str, list[Any]]:
    where = ["m.run_id = %s", "m.id > %s"]
    params: list[Any] = [run_id, after]
    if status == "active":
        where.append("m.status IN ('suggested', 'confirmed')")
    elif status != "all":
        where.append("m.status = %s")
        params.append(status)
    for col, value in (("rule", rule), ("kind", kind), ("currency", currency)):
        if value is not None:
            where.append(f"m.{col} = %s")
            params.append(value)
    if q:
        where.append("EXISTS (SELECT 1 FROM match_items qi JOIN records qr ON qr.id = qi.record_id "
                     "WHERE qi.match_id = m.id AND (qr.reference ILIKE %s OR qr.counterparty ILIKE %s "
                     "OR qr.description ILIKE %s))")
        like = f"%{q}%"
        params += [like, like, like]
    return " AND ".join(where), params


@router.get("/summary", summary="Counts and amounts per status, side and currency (live, after review)")
def summary(recon_id: int, svc: Services = Depends(services), _: Principal = Depends(require("viewer"))) -> Any:
    db = svc.require_db()
    results = current_results(db, recon_id)
    assert results.run_id is not None
    with db.primary() as conn:
        body, engine = stored.stored_summary(conn, results)
    if body is not None:
        return body
    key = f"recon:summary:v2:{results.version}"
    cached = svc.cache.get_json(key)
    if cached is not None:
        return cached
    with reading(db, results) as conn:
        body = stored.summary(conn, recon_id, results.run_id, results.review_version, engine)
    svc.cache.set_json(key, body, SUMMARY_CACHE_SECONDS)
    return body


@router.get("/matches", summary="Matched pairs and groups of the current run, with their records")
def list_matches(recon_id: int, svc: Services = Depends(services), _: Principal = Depends(require("viewer")),
                 status: MatchStatus = "active", rule: str | None = None,
                 kind: Literal["pair", "group"] | None = None, currency: str | None = None,
                 q: str | None = Query(None, max_length=200, description="substring of reference/counterparty/description"),
                 after: int = Query(0, ge=0), limit: int = 100) -> dict[str, Any]:
    _check_limit(limit)
    db = svc.require_db()
    results = current_results(db, recon_id)
    run_id = results.run_id
    assert run_id is not None
    where, params = _match_filters(run_id, status, rule, kind, currency, q, after)
    with reading(db, results) as conn:
        rows = conn.execute(f"SELECT {', '.join('m.' + c for c in _MATCH_COLS)} FROM matches m WHERE {where} "
                            "ORDER BY m.id LIMIT %s", [*params, limit]).fetchall()
        items = [dict(zip(_MATCH_COLS, r)) for r in rows]
        ids = [m["id"] for m in items]
        records: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        discrepancies: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            for r in conn.execute(f"SELECT mi.match_id, {', '.join('r.' + c for c in _RECORD_COLS)} FROM match_items mi "
                                  "JOIN records r ON r.id = mi.record_id WHERE mi.match_id = ANY(%s) "
                                  "ORDER BY mi.match_id, r.side, r.id", (ids,)):
                records[r[0]].append(_record(r[1:]))
            for d in conn.execute("SELECT match_id, field, left_value, right_value, delta FROM discrepancies "
                                  "WHERE match_id = ANY(%s) ORDER BY match_id, id", (ids,)):
                discrepancies[d[0]].append({"field": d[1], "left": d[2], "right": d[3], "delta": d[4]})
    for m in items:
        m["left_amount"] = money(m["left_amount_minor"], m["currency"])
        m["right_amount"] = money(m["right_amount_minor"], m["currency"])
        m["left"] = [r for r in records[m["id"]] if r["side"] == "left"]
        m["right"] = [r for r in records[m["id"]] if r["side"] == "right"]
        m["discrepancies"] = discrepancies[m["id"]]
    return {"run_id": run_id, "items": items, "next_after": ids[-1] if len(ids) == limit else None}


def _unmatched_filters(recon_id: int, run_id: int, side: str | None, currency: str | None, q: str | None,
                       date_from: dt.date | None, date_to: dt.date | None, min_amount_minor: int | None,
                       max_amount_minor: int | None, after: int) -> tuple[str, list[Any]]:
    where = ["r.reconciliation_id = %s", "r.id > %s",
             "NOT EXISTS (SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.run_id = %s AND mi.active)"]
    params: list[Any] = [recon_id, after, run_id]
    for cond, value in (("r.side = %s", side), ("r.currency = %s", currency), ("r.booking_date >= %s", date_from),
                        ("r.booking_date <= %s", date_to), ("r.amount_minor >= %s", min_amount_minor),
                        ("r.amount_minor <= %s", max_amount_minor)):
        if value is not None:
            where.append(cond)
            params.append(value)
    if q:
        where.append("(r.reference ILIKE %s OR r.counterparty ILIKE %s OR r.description ILIKE %s)")
        params += [f"%{q}%"] * 3
    return " AND ".join(where), params


@router.get("/unmatched", summary="Records in no active match of the current run")
def list_unmatched(recon_id: int, svc: Services = Depends(services), _: Principal = Depends(require("viewer")),
                   side: Literal["left", "right"] | None = None, currency: str | None = None,
                   q: str | None = Query(None, max_length=200), date_from: dt.date | None = None,
                   date_to: dt.date | None = None, min_amount_minor: int | None = None,
                   max_amount_minor: int | None = None, after: int = Query(0, ge=0), limit: int = 100) -> dict[str, Any]:
    _check_limit(limit)
    if date_from and date_to and date_from > date_to:
        raise HTTPException(422, f"date_from {date_from} is after date_to {date_to}")
    db = svc.require_db()
    results = current_results(db, recon_id)
    run_id = results.run_id
    assert run_id is not None
    where, params = _unmatched_filters(recon_id, run_id, side, currency, q, date_from, date_to, min_amount_minor,
                                       max_amount_minor, after)
    with reading(db, results) as conn:
        rows = conn.execute(f"SELECT {', '.join('r.' + c for c in _RECORD_COLS)} FROM records r WHERE {where} "
                            "ORDER BY r.id LIMIT %s", [*params, limit]).fetchall()
    items = [_record(r) for r in rows]
    return {"run_id": run_id, "items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


@router.get("/discrepancies", summary="Field differences inside active matches (which field, left, right, delta)")
def list_discrepancies(recon_id: int, svc: Services = Depends(services), _: Principal = Depends(require("viewer")),
                       field: str | None = None, after: int = Query(0, ge=0), limit: int = 100) -> dict[str, Any]:
    _check_limit(limit)
    db = svc.require_db()
    results = current_results(db, recon_id)
    run_id = results.run_id
    with reading(db, results) as conn:
        rows = conn.execute(
            "SELECT d.id, d.match_id, m.rule, m.status, d.field, d.left_value, d.right_value, d.delta, m.currency "
            "FROM discrepancies d JOIN matches m ON m.id = d.match_id WHERE d.run_id = %s AND d.id > %s "
            "AND m.status IN ('suggested', 'confirmed') AND (%s::text IS NULL OR d.field = %s) ORDER BY d.id LIMIT %s",
            (run_id, after, field, field, limit)).fetchall()
    cols = ("id", "match_id", "rule", "status", "field", "left", "right", "delta", "currency")
    items = [dict(zip(cols, r)) for r in rows]
    return {"run_id": run_id, "items": items, "next_after": items[-1]["id"] if len(items) == limit else None}


# -- export ------------------------------------------------------------------------------------

XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit minus the header row

_EXPORTS: dict[str, tuple[list[str], str]] = {
    "matches": (
        ["match_id", "status", "kind", "rule", "score", "origin", "side", "record_id", "reference", "booking_date",
         "value_date", "amount", "currency", "amount_minor", "counterparty", "description", "reviewed_by"],
        "SELECT m.id, m.status, m.kind, m.rule, m.score, m.origin, r.side, r.id, r.reference, r.booking_date, "
        "r.value_date, NULL, r.currency, r.amount_minor, r.counterparty, r.description, m.reviewed_by "
        "FROM matches m JOIN match_items mi ON mi.match_id = m.id JOIN records r ON r.id = mi.record_id "
        "WHERE m.run_id = %(run)s AND m.status IN ('suggested', 'confirmed') ORDER BY m.id, r.side, r.id",
    ),
    "unmatched": (
        ["record_id", "side", "reference", "booking_date", "value_date", "amount", "currency", "amount_minor",
         "counterparty", "description", "import_id", "line"],
        "SELECT r.id, r.side, r.reference, r.booking_date, r.value_date, NULL, r.currency, r.amount_minor, "
        "r.counterparty, r.description, r.import_id, r.line FROM records r WHERE r.reconciliation_id = %(recon)s "
        "AND (%(side)s::text IS NULL OR r.side = %(side)s) AND NOT EXISTS (SELECT 1 FROM match_items mi "
        "WHERE mi.record_id = r.id AND mi.run_id = %(run)s AND mi.active) ORDER BY r.side, r.id",
    ),
    "discrepancies": (
        ["match_id", "rule", "status", "field", "left", "right", "delta", "currency"],
        "SELECT d.match_id, m.rule, m.status, d.field, d.left_value, d.right_value, d.delta, m.currency "
        "FROM discrepancies d JOIN matches m ON m.id = d.match_id WHERE d.run_id = %(run)s "
        "AND m.status IN ('suggested', 'confirmed') ORDER BY d.match_id, d.id",
    ),
}


def _export_rows(db: Database, results: Results, view: str, params: dict[str, Any]) -> Iterator[list[Any]]:
    header, sql = _EXPORTS[view]
    amount_at = header.index("amount") if "amount" in header else None
    with reading(db, results) as conn:
        with conn.cursor(name=f"export_{view}") as cur:  # server-side: constant memory
            cur.itersize = 5000
            cur.execute(sql, params)
            for row in cur:
                out = list(row)
                if amount_at is not None:
                    out[amount_at] = from_minor(out[amount_at + 2], out[amount_at + 1]) \
                        if out[amount_at + 1] in CURRENCY_EXPONENTS else None
                yield out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def safe_cell(value: Any) -> Any:
    """Defuse spreadsheet formula injection (OWASP "CSV injection").

    A counterparty named ``=HYPERLINK(...)`` in a bank file must not become a live formula when
    an accountant opens the export: text starting with ``= + - @ TAB CR`` gets a leading ``'``.
    Plain numbers written as text (``-12.50``) are left alone.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def _csv_stream(header: list[str], rows: Iterator[list[Any]]) -> Iterator[bytes]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for i, row in enumerate(rows, 1):
        writer.writerow(["" if v is None else safe_cell(v) for v in row])
        if i % 2000 == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def _xlsx_bytes(view: str, header: list[str], rows: Iterator[list[Any]]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(view)
    ws.append(header)
    for i, row in enumerate(rows, 1):
        if i > XLSX_MAX_ROWS:
            raise HTTPException(413, f"the {view} export has more than {XLSX_MAX_ROWS} rows, the XLSX sheet limit; "
                                "use format=csv")
        ws.append([safe_cell(v) for v in row])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


@router.get("/export", summary="Export matches, unmatched records or discrepancies as CSV or XLSX",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument."
                                                                     "spreadsheetml.sheet": {}}}})
def export(recon_id: int, view: Literal["matches", "unmatched", "discrepancies"] = "matches",
           format: Literal["csv", "xlsx"] = "csv", side: Literal["left", "right"] | None = None,
           svc: Services = Depends(services), _: Principal = Depends(require("viewer"))) -> Any:
    """CSV streams (any size); XLSX is built in memory and capped at Excel's row limit.

    The ``amount`` column is the exact decimal amount; ``amount_minor`` the integer it comes from.
    """
    db = svc.require_db()
    results = current_results(db, recon_id)
    run_id = results.run_id
    header = _EXPORTS[view][0]
    params = {"run": run_id, "recon": recon_id, "side": side}
    filename = f"reconciliation-{recon_id}-run-{run_id}-{view}.{format}"
    disposition = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return StreamingResponse(_csv_stream(header, _export_rows(db, results, view, params)), media_type="text/csv",
                                 headers=disposition)
    body = _xlsx_bytes(view, header, _export_rows(db, results, view, params))
    return StreamingResponse(iter([body]), headers=disposition,
                             media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
