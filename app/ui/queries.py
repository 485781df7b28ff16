"""Read queries of the UI: result tabs with filters and sorts, lists, per-rule and per-date totals.

The API's listings (:mod:`app.web.results`) page by id only and filter matches by rule and text
only. The UI's tabs need more: amount and date ranges on every tab, a rule filter on
discrepancies, and sorting by amount, score, date, reference... So the tabs are queried here,
with the same reads as the API (the current run's active matches, records in no active match,
discrepancies of active matches). Every function takes the connection to read on: result
tabs get theirs from the API's :func:`app.web.results.reading` (the replica once it has
replayed the current results, else the primary), so a page never shows less than the review
just made.

Paging is keyset on ``(sort key, id)`` both ways, so a page costs the same at row 90,000 as at
row 1 and stays stable while people review. A cursor is the JSON ``[key, id]`` of the edge row.

    Tab            rows                                     sorts
    matched        matches of the current run, confirmed     id, amount, score, delta, rule
    suggested      matches of the current run, suggested     id, amount, score, delta, rule
    discrepancies  field differences inside active matches   id, field, match, amount
    left / right   records in no active match                id, date, amount, reference, counterparty

Trap: amounts in filters are decimals in each record's own currency (``100`` is 100.00 EUR and
100 JPY): the bound is scaled per row by the currency's exponent, never converted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

from psycopg import Connection

from app.db import Database
from app.records import CURRENCY_EXPONENTS

RECORD_COLS = ("id", "side", "import_id", "line", "reference", "amount_minor", "currency", "booking_date",
               "value_date", "counterparty", "description")
MATCH_COLS = ("id", "kind", "status", "origin", "rule", "score", "criteria", "amount_delta_minor",
              "date_delta_days", "left_amount_minor", "right_amount_minor", "currency", "reviewed_by",
              "reviewed_at", "run_id", "reconciliation_id")
DISCREPANCY_COLS = ("id", "match_id", "rule", "status", "field", "left", "right", "delta", "currency",
                    "left_amount_minor")

SortType = Literal["int", "float", "date", "text"]


class BadQuery(ValueError):
    """A filter, sort or cursor the UI cannot use; the message names the value and what is allowed."""


@dataclass(frozen=True)
class Sort:
    key: str
    label: str
    expr: str
    type: SortType


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    source: Literal["matches", "unmatched", "discrepancies"]
    sorts: tuple[Sort, ...]
    status: str | None = None
    side: str | None = None

    def sort(self, key: str) -> Sort:
        for s in self.sorts:
            if s.key == key:
                return s
        raise BadQuery(f"sort {key!r} is not offered on the {self.label} tab; one of "
                       f"{', '.join(s.key for s in self.sorts)}")


_MATCH_SORTS = (
    Sort("id", "match id", "m.id", "int"),
    Sort("amount", "amount (left)", "coalesce(m.left_amount_minor, 0)", "int"),
    Sort("score", "score", "coalesce(m.score, 0)", "float"),
    Sort("delta", "amount difference", "abs(coalesce(m.amount_delta_minor, 0))", "int"),
    Sort("rule", "rule", "coalesce(m.rule, '')", "text"),
)
_RECORD_SORTS = (
    Sort("id", "record id", "r.id", "int"),
    Sort("date", "booking date", "coalesce(r.booking_date, DATE '0001-01-01')", "date"),
    Sort("amount", "amount", "r.amount_minor", "int"),
    Sort("reference", "reference", "coalesce(r.reference, '')", "text"),
    Sort("counterparty", "counterparty", "coalesce(r.counterparty, '')", "text"),
)
_DISCREPANCY_SORTS = (
    Sort("id", "discrepancy id", "d.id", "int"),
    Sort("field", "field", "d.field", "text"),
    Sort("match", "match id", "d.match_id", "int"),
    Sort("amount", "amount (left)", "coalesce(m.left_amount_minor, 0)", "int"),
)

TABS: dict[str, Tab] = {t.key: t for t in (
    Tab("matched", "Matched", "matches", _MATCH_SORTS, status="confirmed"),
    Tab("suggested", "Suggested", "matches", _MATCH_SORTS, status="suggested"),
    Tab("discrepancies", "Discrepancies", "discrepancies", _DISCREPANCY_SORTS),
    Tab("left", "Unmatched left", "unmatched", _RECORD_SORTS, side="left"),
    Tab("right", "Unmatched right", "unmatched", _RECORD_SORTS, side="right"),
)}


def tab(key: str) -> Tab:
    try:
        return TABS[key]
    except KeyError:
        raise BadQuery(f"tab {key!r} does not exist; one of {', '.join(TABS)}") from None


@dataclass(frozen=True)
class Filters:
    """What a tab's filter form sends (all optional)."""

    q: str | None = None
    rule: str | None = None
    field: str | None = None
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    sort: str = "id"
    desc: bool = False

    def check(self) -> Filters:
        problems = []
        if self.amount_min is not None and self.amount_max is not None and self.amount_min > self.amount_max:
            problems.append(f"the lowest amount {self.amount_min} is above the highest {self.amount_max}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            problems.append(f"the date range starts ({self.date_from}) after it ends ({self.date_to})")
        if self.q is not None and len(self.q) > 200:
            problems.append(f"the search text has {len(self.q)} characters; at most 200")
        if problems:
            raise BadQuery("; ".join(problems))
        return self

    def as_params(self) -> dict[str, str]:
        """The filters as query parameters (for links that keep them), defaults left out."""
        out = {"q": self.q, "rule": self.rule, "field": self.field,
               "amount_min": None if self.amount_min is None else str(self.amount_min),
               "amount_max": None if self.amount_max is None else str(self.amount_max),
               "date_from": self.date_from.isoformat() if self.date_from else None,
               "date_to": self.date_to.isoformat() if self.date_to else None,
               "sort": None if self.sort == "id" else self.sort, "dir": "desc" if self.desc else None}
        return {k: v for k, v in out.items() if v not in (None, "")}


@dataclass
class Page:
    """One page of rows and the cursors either side of it."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None
    prev_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- SQL pieces --------------------------------------------------------------------------------

_CODE = re.compile(r"^[A-Z]{3}$")


def _scale_sql(currency_col: str) -> str:
    """``10 ^ exponent`` of the row's currency, as SQL (exponents from app.records)."""
    by_exp: dict[int, list[str]] = {}
    for code, exp in CURRENCY_EXPONENTS.items():
        assert _CODE.match(code), code
        by_exp.setdefault(exp, []).append(code)
    whens = " ".join(f"WHEN {currency_col} IN ({', '.join(repr(c) for c in sorted(codes))}) THEN {10 ** exp}"
                     for exp, codes in sorted(by_exp.items()) if exp != 2)
    return f"(CASE {whens} ELSE 100 END)"


def like(text: str) -> str:
    """A LIKE pattern matching ``text`` literally anywhere (``%`` and ``_`` are not wildcards)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class _Where:
    def __init__(self) -> None:
        self.sql: list[str] = []
        self.params: list[Any] = []

    def add(self, sql: str, *params: Any) -> None:
        self.sql.append(sql)
        self.params.extend(params)

    def text(self) -> str:
        return " AND ".join(self.sql) or "true"


def _amount(where: _Where, col: str, currency_col: str, f: Filters) -> None:
    if f.amount_min is not None:
        where.add(f"{col} >= ceil(%s::numeric * {_scale_sql(currency_col)})", f.amount_min)
    if f.amount_max is not None:
        where.add(f"{col} <= floor(%s::numeric * {_scale_sql(currency_col)})", f.amount_max)


def _items_where(where: _Where, match_col: str, run_id: int, recon_id: int, f: Filters) -> None:
    """Text and date filters on a match: any of its records fits.

    The text filter starts from the records (one scan of the reconciliation's records), not from
    the matches: probing every match's records in id order until a page is full costs a scan
    per match when few fit (a page measured 300 ms at 100k matches that way, 140 ms this way).
    """
    if f.q:
        pattern = like(f.q)
        where.add(f"{match_col} IN (SELECT qi.match_id FROM records qr JOIN match_items qi ON qi.record_id = qr.id "
                  "AND qi.run_id = %s AND qi.active WHERE qr.reconciliation_id = %s AND (qr.reference ILIKE %s "
                  "OR qr.counterparty ILIKE %s OR qr.description ILIKE %s))", run_id, recon_id, pattern, pattern,
                  pattern)
    if f.date_from or f.date_to:
        where.add(f"EXISTS (SELECT 1 FROM match_items di JOIN records dr ON dr.id = di.record_id "
                  f"WHERE di.match_id = {match_col} AND (%s::date IS NULL OR dr.booking_date >= %s) "
                  "AND (%s::date IS NULL OR dr.booking_date <= %s))", f.date_from, f.date_from, f.date_to, f.date_to)


def _where(t: Tab, run_id: int, recon_id: int, f: Filters) -> _Where:
    w = _Where()
    if t.source == "matches":
        w.add("m.run_id = %s", run_id)
        w.add("m.status = %s", t.status)
        if f.rule:
            w.add("m.rule = %s", f.rule)
        _amount(w, "m.left_amount_minor", "m.currency", f)
        _items_where(w, "m.id", run_id, recon_id, f)
    elif t.source == "discrepancies":
        w.add("d.run_id = %s", run_id)
        w.add("m.status IN ('suggested', 'confirmed')")
        if f.rule:
            w.add("m.rule = %s", f.rule)
        if f.field:
            w.add("d.field = %s", f.field)
        _amount(w, "m.left_amount_minor", "m.currency", f)
        if f.q:
            pattern = like(f.q)
            w.add("(d.left_value ILIKE %s OR d.right_value ILIKE %s OR EXISTS (SELECT 1 FROM match_items qi "
                  "JOIN records qr ON qr.id = qi.record_id WHERE qi.match_id = d.match_id AND "
                  "(qr.reference ILIKE %s OR qr.counterparty ILIKE %s OR qr.description ILIKE %s)))",
                  pattern, pattern, pattern, pattern, pattern)
        if f.date_from or f.date_to:
            _items_where(w, "d.match_id", run_id, recon_id, replace(f, q=None))
    else:
        w.add("r.reconciliation_id = %s", recon_id)
        w.add("r.side = %s", t.side)
        w.add("NOT EXISTS (SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.run_id = %s AND mi.active)",
              run_id)
        if f.rule:
            raise BadQuery("unmatched records have no rule; clear the rule filter")
        _amount(w, "r.amount_minor", "r.currency", f)
        if f.date_from:
            w.add("r.booking_date >= %s", f.date_from)
        if f.date_to:
            w.add("r.booking_date <= %s", f.date_to)
        if f.q:
            pattern = like(f.q)
            w.add("(r.reference ILIKE %s OR r.counterparty ILIKE %s OR r.description ILIKE %s)",
                  pattern, pattern, pattern)
    return w


_SELECT = {
    "matches": (f"SELECT {', '.join('m.' + c for c in MATCH_COLS)}, {{key}} AS sort_key FROM matches m", "m.id"),
    "discrepancies": ("SELECT d.id, d.match_id, m.rule, m.status, d.field, d.left_value, d.right_value, d.delta, "
                      "m.currency, m.left_amount_minor, {key} AS sort_key FROM discrepancies d "
                      "JOIN matches m ON m.id = d.match_id", "d.id"),
    # Unmatched records are found all at once (a hash anti-join, ~70 ms at 100k x 100k), then paged:
    # left to itself, the planner walks records in id order probing each for a match and stops at
    # a page, which takes 400 ms when the unmatched ones sit at the end (a bank's extra lines).
    "unmatched": ("WITH u AS MATERIALIZED (SELECT r.id FROM records r WHERE {where}) "
                  f"SELECT {', '.join('r.' + c for c in RECORD_COLS)}, {{key}} AS sort_key "
                  "FROM u JOIN records r ON r.id = u.id", "r.id"),
}
_COLUMNS = {"matches": MATCH_COLS, "discrepancies": DISCREPANCY_COLS, "unmatched": RECORD_COLS}


# -- cursors -----------------------------------------------------------------------------------

def encode_cursor(key: Any, row_id: int) -> str:
    if isinstance(key, dt.date):
        key = key.isoformat()
    elif isinstance(key, Decimal):
        key = str(key)
    return json.dumps([key, row_id], separators=(",", ":"))


def decode_cursor(text: str, sort: Sort) -> tuple[Any, int]:
    """``(key, id)`` from a cursor, typed for ``sort``; :class:`BadQuery` when it does not fit."""
    try:
        key, row_id = json.loads(text)
        if not isinstance(row_id, int):
            raise ValueError("id is not an integer")
        if sort.type == "int":
            key = int(key)
        elif sort.type == "float":
            key = float(key)
        elif sort.type == "date":
            key = dt.date.fromisoformat(key)
        elif not isinstance(key, str):
            raise ValueError("key is not text")
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise BadQuery(f"page cursor {text[:80]!r} does not fit the sort by {sort.key} ({exc}); "
                       "start again from the first page") from None
    return key, row_id


def keyset(sql: str, where: _Where, sort: Sort, id_col: str, desc: bool, after: str | None, before: str | None,
           limit: int, conn: Any) -> tuple[list[tuple[Any, ...]], str | None, str | None]:
    """Run ``sql`` (selecting ``sort_key`` last) one page either side of a cursor.

    The conditions are appended as ``WHERE``, or put where ``sql`` says ``{where}``.

    Returns ``(rows in display order, next cursor, previous cursor)``.
    """
    if after and before:
        raise BadQuery("give a page cursor for one direction only (after or before)")
    backwards = before is not None
    cursor = before if backwards else after
    conds, params = list(where.sql), list(where.params)
    forward_op = "<" if desc else ">"
    op = {"<": ">", ">": "<"}[forward_op] if backwards else forward_op
    if cursor is not None:
        key, row_id = decode_cursor(cursor, sort)
        if sort.expr == id_col:
            conds.append(f"{id_col} {op} %s")
            params.append(row_id)
        else:
            conds.append(f"({sort.expr}, {id_col}) {op} (%s, %s)")
            params += [key, row_id]
    ascending = (not desc) != backwards
    direction = "ASC" if ascending else "DESC"
    order = f"{id_col} {direction}" if sort.expr == id_col else f"{sort.expr} {direction}, {id_col} {direction}"
    where_sql = " AND ".join(conds) or "true"
    if "{where}" in sql:  # the query places its own WHERE (inside a CTE)
        query = f"{sql.format(key=sort.expr, where=where_sql)} ORDER BY {order} LIMIT %s"
    else:
        query = f"{sql.format(key=sort.expr)} WHERE {where_sql} ORDER BY {order} LIMIT %s"
    rows = conn.execute(query, [*params, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    if not rows:
        return rows, None, None

    def edge(row: tuple[Any, ...]) -> str:
        return encode_cursor(row[-1], row[0])

    has_next = more if not backwards else True
    has_prev = (cursor is not None) if not backwards else more
    return rows, edge(rows[-1]) if has_next else None, edge(rows[0]) if has_prev else None


# -- result tabs -------------------------------------------------------------------------------

def result_page(conn: Connection, t: Tab, run_id: int, recon_id: int, f: Filters, *, after: str | None = None,
                before: str | None = None, limit: int = 50) -> Page:
    """One page of a result tab, its rows as dicts (matches with their records and discrepancies)."""
    f.check()
    sort = t.sort(f.sort)
    sql, id_col = _SELECT[t.source]
    where = _where(t, run_id, recon_id, f)
    rows, next_cursor, prev_cursor = keyset(sql, where, sort, id_col, f.desc, after, before, limit, conn)
    items = [dict(zip(_COLUMNS[t.source], r[:-1])) for r in rows]
    if t.source == "matches":
        attach_records(conn, items)
    return Page(items, next_cursor, prev_cursor)


def attach_records(conn: Any, matches: list[dict[str, Any]]) -> None:
    """Give each match its ``left`` and ``right`` records and its ``discrepancies`` (two queries)."""
    ids = [m["id"] for m in matches]
    records: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for r in conn.execute(f"SELECT mi.match_id, {', '.join('r.' + c for c in RECORD_COLS)} FROM match_items mi "
                              "JOIN records r ON r.id = mi.record_id WHERE mi.match_id = ANY(%s) "
                              "ORDER BY mi.match_id, r.side, r.id", (ids,)):
            records[r[0]].append(dict(zip(RECORD_COLS, r[1:])))
        for d in conn.execute("SELECT match_id, field, left_value, right_value, delta FROM discrepancies "
                              "WHERE match_id = ANY(%s) ORDER BY match_id, id", (ids,)):
            found[d[0]].append({"field": d[1], "left": d[2], "right": d[3], "delta": d[4]})
    for m in matches:
        m["left"] = [r for r in records[m["id"]] if r["side"] == "left"]
        m["right"] = [r for r in records[m["id"]] if r["side"] == "right"]
        m["discrepancies"] = found[m["id"]]


def matching_ids(conn: Connection, t: Tab, run_id: int, recon_id: int, f: Filters, limit: int) -> list[int]:
    """Ids of the tab's rows that fit ``f``, lowest first, at most ``limit`` (bulk actions)."""
    f.check()
    if t.source != "matches":
        raise BadQuery(f"bulk actions apply to matches, not to the {t.label} tab")
    where = _where(t, run_id, recon_id, f)
    rows = conn.execute(f"SELECT m.id FROM matches m WHERE {where.text()} ORDER BY m.id LIMIT %s",
                        [*where.params, limit]).fetchall()
    return [r[0] for r in rows]


def match(db: Database, match_id: int) -> dict[str, Any] | None:
    """One match (any status, any run) with its records and discrepancies, or ``None``."""
    with db.primary() as conn:
        row = conn.execute(f"SELECT {', '.join(MATCH_COLS)} FROM matches WHERE id = %s", (match_id,)).fetchone()
        if row is None:
            return None
        item = dict(zip(MATCH_COLS, row))
        attach_records(conn, [item])
    return item


def tab_counts(conn: Connection, recon_id: int, run_id: int) -> dict[str, int]:
    """Rows of each tab (unfiltered): matches per status, active discrepancies, unmatched per side."""
    counts = dict(conn.execute("SELECT status, count(*) FROM matches WHERE run_id = %s GROUP BY status",
                               (run_id,)).fetchall())
    disc = conn.execute("SELECT count(*) FROM discrepancies d JOIN matches m ON m.id = d.match_id "
                        "WHERE d.run_id = %s AND m.status IN ('suggested', 'confirmed')", (run_id,)).fetchone()
    totals = dict(conn.execute("SELECT side, count(*) FROM records WHERE reconciliation_id = %s GROUP BY side",
                               (recon_id,)).fetchall())
    matched = dict(conn.execute("SELECT side, count(*) FROM match_items WHERE run_id = %s AND active GROUP BY side",
                                (run_id,)).fetchall())
    return {"matched": counts.get("confirmed", 0), "suggested": counts.get("suggested", 0),
            "discrepancies": disc[0] if disc else 0,
            "left": totals.get("left", 0) - matched.get("left", 0),
            "right": totals.get("right", 0) - matched.get("right", 0)}


def rules_of_run(conn: Connection, run_id: int) -> list[str]:
    """The rule labels a run used (from its summary), and "manual" for links made by hand."""
    row = conn.execute("SELECT summary FROM runs WHERE id = %s", (run_id,)).fetchone()
    names = [r.get("rule") for r in ((row[0] or {}).get("rules") or [])] if row and isinstance(row[0], dict) else []
    return [n for n in names if n] + ["manual"]


# -- reconciliations, audit, summary ------------------------------------------------------------

RECON_COLS = ("id", "name", "status", "current_run_id", "created_by", "created_at", "updated_at")
_RECON_SORT = Sort("id", "newest", "c.id", "int")


def reconciliation_page(conn: Connection, q: str | None, *, after: str | None, before: str | None,
                        limit: int = 25) -> Page:
    """Reconciliations newest first, optionally those whose name contains ``q``."""
    where = _Where()
    if q:
        where.add("c.name ILIKE %s", like(q))
    sql = f"SELECT {', '.join('c.' + c for c in RECON_COLS)}, c.id AS sort_key FROM reconciliations c"
    rows, next_cursor, prev_cursor = keyset(sql, where, _RECON_SORT, "c.id", True, after, before, limit, conn)
    return Page([dict(zip(RECON_COLS, r[:-1])) for r in rows], next_cursor, prev_cursor)


AUDIT_COLS = ("id", "at", "actor", "token_id", "role", "action", "entity", "entity_id", "request_id", "before",
              "after")


def reconciliation_audit(conn: Connection, recon_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Every audit row about a reconciliation, its imports, runs and reviewed matches, newest first."""
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c for c in AUDIT_COLS)} FROM audit_log a WHERE "
        "(a.entity = 'reconciliation' AND a.entity_id = %(id)s::text) "
        "OR (a.entity = 'run' AND a.entity_id IN (SELECT id::text FROM runs WHERE reconciliation_id = %(id)s)) "
        "OR (a.entity = 'import' AND a.entity_id IN "
        "(SELECT id::text FROM imports WHERE reconciliation_id = %(id)s)) "
        "OR (a.entity = 'match' AND a.entity_id ~ '^[0-9]+$' AND EXISTS (SELECT 1 FROM matches m "
        "WHERE m.id = a.entity_id::bigint AND m.reconciliation_id = %(id)s)) "
        "ORDER BY a.id DESC LIMIT %(limit)s", {"id": recon_id, "limit": limit}).fetchall()
    return [dict(zip(AUDIT_COLS, r)) for r in rows]


def rule_totals(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """Per rule and currency (live, after review): active matches, records per side, left amount.

    A pair holds one record a side, so only groups need their items counted: two small queries
    instead of joining every record (measured 70 ms against 250 ms at 100k x 100k).
    """
    active = "m.run_id = %s AND m.status IN ('suggested', 'confirmed')"
    rows = conn.execute(
        f"SELECT coalesce(m.rule, '(none)'), m.currency, count(*), count(*) FILTER (WHERE m.kind = 'pair'), "
        f"coalesce(sum(m.left_amount_minor), 0) FROM matches m WHERE {active} GROUP BY 1, 2 ORDER BY 1, 2",
        (run_id,)).fetchall()
    groups = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(
        "SELECT coalesce(m.rule, '(none)'), m.currency, count(*) FILTER (WHERE i.side = 'left'), "
        "count(*) FILTER (WHERE i.side = 'right') FROM matches m JOIN match_items i ON i.match_id = m.id AND i.active "
        f"WHERE {active} AND m.kind = 'group' GROUP BY 1, 2", (run_id,))}
    out = []
    for rule, currency, matches, pairs, left_amount in rows:
        group_left, group_right = groups.get((rule, currency), (0, 0))
        out.append({"rule": rule, "currency": currency, "matches": matches, "left": pairs + group_left,
                    "right": pairs + group_right, "left_amount_minor": int(left_amount)})
    return out


def amounts_by_date(conn: Connection, recon_id: int, run_id: int) -> dict[str, list[tuple[dt.date, int, int]]]:
    """Per currency: ``(booking date, matched, unmatched)`` absolute amounts in its minor units."""
    rows = conn.execute(
        "SELECT r.currency, r.booking_date, "
        "coalesce(sum(abs(r.amount_minor)) FILTER (WHERE mi.record_id IS NOT NULL), 0), "
        "coalesce(sum(abs(r.amount_minor)) FILTER (WHERE mi.record_id IS NULL), 0) FROM records r "
        "LEFT JOIN match_items mi ON mi.record_id = r.id AND mi.run_id = %s AND mi.active "
        "WHERE r.reconciliation_id = %s AND r.booking_date IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
        (run_id, recon_id)).fetchall()
    out: dict[str, list[tuple[dt.date, int, int]]] = {}
    for currency, day, matched, unmatched in rows:
        out.setdefault(currency, []).append((day, int(matched), int(unmatched)))
    return out
