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
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse

from app.auth import Principal
from app.db import Database
from app.db import results as stored
from app.db.results import Results, money
from app.records import CURRENCY_EXPONENTS
import app.web.xlsx as xlsx
from app.web.deps import content_disposition, error, require, services
from app.web.services import Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/reconciliations/{recon_id}", tags=["results"],
                   responses=error(409, "the reconciliation has no finished run yet"))

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
    key = f"recon:summary:v3:{results.version}"  # v3: match_rate is the confirmed share (docs/engine.md)
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
#
# One SELECT per view: typed columns, free text defused against formula injection in SQL.
# CSV: ``COPY (SELECT ...) TO STDOUT`` -- PostgreSQL writes the CSV and we pass the bytes on
# (the 198k-row matches export of a 100k x 100k run: ~2 s; Python's csv module spent ~30 us a
# row, 6 s). Lines end in LF, as COPY writes them. XLSX: the same SELECT, its rows rendered as
# sheet XML by PostgreSQL and zipped by :mod:`app.web.xlsx` (openpyxl needed ~10 us a cell: 109 s).

XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit minus the header row
COPY_CHUNK_BYTES = 256 * 1024

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A spreadsheet reads a cell starting with one of these as a formula (OWASP "CSV injection")."""
_FORMULA_RE = "^[" + "".join("\\" + c if c in "\\]^-" else c for c in FORMULA_START) + "]"
_NUMBER_RE = r"^[+-]?[0-9]+(\.[0-9]+)?$"
"""A plain number written as text (``-12.50``): starts like a formula, is not one."""


def safe_text_sql(expr: str) -> str:
    """SQL for text ``expr`` made safe to open in a spreadsheet: every free-text export cell.

    A counterparty named ``=HYPERLINK(...)`` in a bank file must not become a live formula when
    an accountant opens the export: text starting with ``= + - @ TAB CR`` gets a leading ``'``;
    plain numbers written as text (``-12.50``) are left alone. Needs the ``formula`` and
    ``number`` parameters of :func:`export_params`.
    """
    return f"CASE WHEN {expr} ~ %(formula)s AND {expr} !~ %(number)s THEN '''' || {expr} ELSE {expr} END"


@dataclass(frozen=True)
class Col:
    """One export column: its header, its SQL, and whether it is free text to defuse.

    Columns whose values a CHECK constraint fixes (status, kind, origin, side) are not text here.
    """

    name: str
    sql: str
    text: bool = False


@dataclass(frozen=True)
class ExportView:
    columns: tuple[Col, ...]
    source: str
    where: str
    order: str

    @property
    def header(self) -> list[str]:
        return [c.name for c in self.columns]

    def sql(self) -> str:
        cols = ", ".join(safe_text_sql(c.sql) if c.text else c.sql for c in self.columns)
        return (f"WITH exponents (currency, exp) AS (SELECT key, value::int FROM jsonb_each_text(%(exponents)s::jsonb)) "
                f"SELECT {cols} FROM {self.source} WHERE {self.where} ORDER BY {self.order}")


_AMOUNT = "round(r.amount_minor::numeric / 10::numeric ^ e.exp, e.exp)"
_EXPONENT = "LEFT JOIN exponents e ON e.currency = r.currency"
_SOURCE = (Col("import_id", "r.import_id"), Col("source_file", "i.filename", True), Col("line", "r.line"),
           Col("source_id", "r.source_id", True))
"""Where a record comes from: the import, its file name, the line in it, the importer's id."""

_SIDES = ("left", "right")
_MATCH_SOURCES = "CROSS JOIN LATERAL (SELECT " + ", ".join(
    f"string_agg({expr}, '; ' ORDER BY sr.id) FILTER (WHERE sr.side = '{side}') AS {side}_{name}"
    for side in _SIDES for name, expr in (("source_file", "si.filename"), ("line", "sr.line::text"),
                                          ("source_id", "sr.source_id"))
) + (" FROM match_items smi JOIN records sr ON sr.id = smi.record_id JOIN imports si ON si.id = sr.import_id "
     "WHERE smi.match_id = d.match_id) s")
"""A discrepancy's match's records per side: ``"; "``-joined lists in record order (one entry for a pair)."""

EXPORTS: dict[str, ExportView] = {
    "matches": ExportView(
        columns=(Col("match_id", "m.id"), Col("status", "m.status"), Col("kind", "m.kind"),
                 Col("rule", "m.rule", True), Col("score", "m.score"), Col("origin", "m.origin"),
                 Col("side", "r.side"), Col("record_id", "r.id"), Col("reference", "r.reference", True),
                 Col("booking_date", "r.booking_date"), Col("value_date", "r.value_date"), Col("amount", _AMOUNT),
                 Col("currency", "r.currency", True), Col("amount_minor", "r.amount_minor"),
                 Col("counterparty", "r.counterparty", True), Col("description", "r.description", True),
                 Col("reviewed_by", "m.reviewed_by", True), *_SOURCE),
        source="matches m JOIN match_items mi ON mi.match_id = m.id JOIN records r ON r.id = mi.record_id "
               f"JOIN imports i ON i.id = r.import_id {_EXPONENT}",
        where="m.run_id = %(run)s AND m.status IN ('suggested', 'confirmed')",
        order="m.id, r.side, r.id",
    ),
    "unmatched": ExportView(
        columns=(Col("record_id", "r.id"), Col("side", "r.side"), Col("reference", "r.reference", True),
                 Col("booking_date", "r.booking_date"), Col("value_date", "r.value_date"), Col("amount", _AMOUNT),
                 Col("currency", "r.currency", True), Col("amount_minor", "r.amount_minor"),
                 Col("counterparty", "r.counterparty", True), Col("description", "r.description", True), *_SOURCE),
        source=f"records r JOIN imports i ON i.id = r.import_id {_EXPONENT}",
        where="r.reconciliation_id = %(recon)s AND (%(side)s::text IS NULL OR r.side = %(side)s) AND NOT EXISTS "
              "(SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.run_id = %(run)s AND mi.active)",
        order="r.side, r.id",
    ),
    "discrepancies": ExportView(
        columns=(Col("match_id", "d.match_id"), Col("rule", "m.rule", True), Col("status", "m.status"),
                 Col("field", "d.field", True), Col("left", "d.left_value", True), Col("right", "d.right_value", True),
                 Col("delta", "d.delta", True), Col("currency", "m.currency", True),
                 *(Col(f"{side}_{name}", f"s.{side}_{name}", name != "line") for side in _SIDES
                   for name in ("source_file", "line", "source_id"))),
        source=f"discrepancies d JOIN matches m ON m.id = d.match_id {_MATCH_SOURCES}",
        where="d.run_id = %(run)s AND m.status IN ('suggested', 'confirmed')",
        order="d.match_id, d.id",
    ),
}
"""View -> its columns and query. Each record row carries its source (import, file, line, source id)."""


def export_params(results: Results, side: str | None) -> dict[str, Any]:
    assert results.run_id is not None
    return {"run": results.run_id, "recon": results.recon_id, "side": side, "formula": _FORMULA_RE,
            "number": _NUMBER_RE, "exponents": json.dumps(CURRENCY_EXPONENTS)}


def _prepare(conn: psycopg.Connection) -> None:
    # Dates as ISO text in CSV; a cursor that will be read to the end is planned for all rows,
    # not for the first 10 % (cursor_tuple_fraction's default), which picks nested loops.
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")


def _csv_stream(db: Database, results: Results, view: str, params: dict[str, Any]) -> Iterator[bytes]:
    """The header, then PostgreSQL's CSV in chunks of about ``COPY_CHUNK_BYTES`` (constant memory)."""
    head = io.StringIO()
    csv.writer(head, lineterminator="\n").writerow(EXPORTS[view].header)
    yield head.getvalue().encode()
    with reading(db, results) as conn:
        _prepare(conn)
        with conn.cursor().copy(f"COPY ({EXPORTS[view].sql()}) TO STDOUT (FORMAT csv)", params) as copy:
            buf = bytearray()
            for chunk in copy:  # one row per chunk: batch them, each yield costs a thread hop
                buf += chunk
                if len(buf) >= COPY_CHUNK_BYTES:
                    yield bytes(buf)
                    buf.clear()
            yield bytes(buf)


def _xlsx_file(db: Database, results: Results, view: str, params: dict[str, Any]) -> IO[bytes]:
    """The view as an XLSX workbook in a spooled temp file (:mod:`app.web.xlsx`); 413 over a sheet's limits."""
    with reading(db, results) as conn:
        _prepare(conn)
        try:
            return xlsx.export(conn, EXPORTS[view].sql(), params, view, EXPORTS[view].header, XLSX_MAX_ROWS)
        except xlsx.SheetLimitExceeded as exc:
            raise HTTPException(413, str(exc)) from exc


@router.get("/export", summary="Export matches, unmatched records or discrepancies as CSV or XLSX",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-officedocument."
                                                                     "spreadsheetml.sheet": {}}},
                       **error(413, "XLSX over the sheet row limit; use format=csv")})
def export(recon_id: int, view: Literal["matches", "unmatched", "discrepancies"] = "matches",
           format: Literal["csv", "xlsx"] = "csv", side: Literal["left", "right"] | None = None,
           svc: Services = Depends(services), _: Principal = Depends(require("viewer"))) -> Any:
    """CSV streams (any size); XLSX is built in a spooled temp file and capped at Excel's row limit.

    Every row names where its records come from: ``import_id``, ``source_file``, ``line`` and
    ``source_id`` (discrepancies: ``left_*`` and ``right_*``, ``"; "``-joined for a group).
    The ``amount`` column is the exact decimal amount; ``amount_minor`` the integer it comes from.
    The file is named after the reconciliation (RFC 6266, any script).
    """
    db = svc.require_db()
    results = current_results(db, recon_id)
    params = export_params(results, side)
    disposition = {"Content-Disposition": content_disposition(
        f"{results.name}-run-{results.run_id}-{view}.{format}")}
    if format == "csv":
        return StreamingResponse(_csv_stream(db, results, view, params), media_type="text/csv", headers=disposition)
    body = _xlsx_file(db, results, view, params)
    return StreamingResponse(xlsx.chunks(body), headers=disposition,
                             media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
