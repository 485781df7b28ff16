"""The hand-written XLSX export (app/web/xlsx.py) writes what openpyxl wrote, for any text.

The oracle is the implementation it replaced: the same query's rows through a cursor into
openpyxl's write-only workbook (:func:`openpyxl_xlsx`). Both files are read back with openpyxl
(``load_workbook(read_only=True)``) and compared cell by cell, value and Python type: numbers
as numbers (``100.00`` reads back as the integer 100 from both), dates as dates, text as text,
empty text and NULL as empty cells, formulas defused.

Where they differ on purpose, the new file holds what Excel shows for the data and openpyxl
did not: control characters (and U+FFFE/U+FFFF), on which openpyxl raised (the whole export
was an HTTP 500), are written as Excel's ``_xHHHH_`` escape; a literal ``_xHHHH_`` in the data
gets its underscore escaped (``_x005F_``; openpyxl wrote it raw, which Excel shows decoded).
Cells are compared after :func:`excel_text`, the decoding Excel applies, and raw wherever the
data holds no ``_xHHHH_``. Text openpyxl typed by its look (``#N/A`` an error cell, ``=1+1`` a
formula where the SQL does not defuse) is text here; openpyxl reads both back as that text.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.db import results as stored
from app.db.results import Results
from app.web import results as web_results
from app.web import xlsx
from app.web.results import EXPORTS, export_params, safe_text_sql
from tests.app.test_service_flow import upload

_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")


def excel_text(value: Any) -> Any:
    """A cell's value as Excel shows it: ``_xHHHH_`` is the character U+HHHH (ECMA-376 ST_Xstring)."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value) if isinstance(value, str) else value


def openpyxl_xlsx(rows: Iterable[Sequence[Any]], sheet: str, header: Sequence[str]) -> bytes:
    """The export as the replaced implementation wrote it."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet(sheet)
    ws.append(list(header))
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def read_back(data: bytes) -> tuple[str, list[tuple[Any, ...]]]:
    """``(sheet title, rows)`` as openpyxl reads them, each row padded to the header's width."""
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(data), read_only=True)
    assert len(wb.worksheets) == 1
    ws = wb.worksheets[0]
    rows = [tuple(r) for r in ws.iter_rows(values_only=True)]
    width = len(rows[0])
    return ws.title, [r + (None,) * (width - len(r)) for r in rows]


def assert_same_cells(new: list[tuple[Any, ...]], old: list[tuple[Any, ...]]) -> None:
    assert len(new) == len(old)
    for i, (got, want) in enumerate(zip(new, old)):
        shown = tuple(excel_text(v) for v in got)
        assert [(v, type(v)) for v in shown] == [(v, type(v)) for v in want], f"row {i + 1}"
        raw = [j for j, v in enumerate(want) if not (isinstance(v, str) and _ESCAPED.search(v))]
        assert [got[j] for j in raw] == [want[j] for j in raw], f"row {i + 1}"


# -- xlsx.export on a table of tricky values --------------------------------------------------

TEXTS = [
    "", " ", "  leading", "trailing  ", "00123", "0", "-12.50", "+7", "1e5", "TRUE",
    '=HYPERLINK("http://evil.example","click")', "=1+1", "@SUM(A1)", "+1+1", "-", "-12.50\n",
    "\tstarts with tab", "\rstarts with CR", "a\nb", "a\r\nb", "end\n", "x & y < z > w", "&amp; &#10; &lt;",
    "]]> <![CDATA[x]]>", "quote \" and ' apostrophe", "back\\slash", "Relevé – Сверка März ✓", "日本語のテキスト",
    "emoji 😀👍🏽", "עברית RTL", "e\u0301 combining", "zero\u200bwidth", "nbsp\u00a0", "NEL \x85 and LS \u2028",
    "#N/A", "#DIV/0!", "Acme = 1", "x" * 40_000, "é" * 32_767 + "ü", "_x0041_", "a_x00e9_b_X00E9_", "_x00_",
    "_xZZZZ_", "tab\tinside",
]
"""Text openpyxl accepted: unicode, formulas (defused by the export SQL), XML specials,
leading zeros, line breaks, Excel error codes, over 32,767 characters, literal ``_xHHHH_``."""

CONTROL_TEXTS = {
    "soh": "\x01", "bell": "ring\x07ring", "vertical-tab": "\x0b vt", "form-feed": "ff \x0c",
    "unit-separator": "\x1f", "escape-sequence": "\x1b[31mred\x1b[0m", "copy-quote-char": "a\x02b\x02\x02",
    "with-newline": "mix\x01\nand\r\x02", "fffe": "\ufffe", "ffff": "x\uffffy", "escape-and-literal": "\x01_x0001_",
    "formula-after-control": "=\x07",
}
"""Text openpyxl refused (IllegalCharacterError or lxml's ValueError): the export was a 500."""

NUMERICS = [Decimal("100.00"), Decimal("12.30"), Decimal("-0.05"), Decimal(0), Decimal("-123456789012.34"),
            Decimal("0.001"), Decimal("NaN"), None]
FLOATS = [0.123456, 1.0, 0.0, -0.5, 1e20, 1.5e-07, 0.1234567890123456, float("nan"), float("-inf"), None]
DATES = [dt.date(2026, 3, 2), dt.date(1899, 12, 30), dt.date(1900, 1, 1), dt.date(1900, 2, 28),
         dt.date(1900, 3, 1), dt.date(2000, 2, 29), dt.date(9999, 12, 31), None]
INTS = [0, -1, 7, 2**31, -(2**40), 2**53 - 1, None]

HEADER = ("id", "i8", "amount", "score", "booking_date", "reference", "description", "status", "code", "short")


def tricky_rows(n: int, texts: Sequence[str]) -> list[tuple[Any, ...]]:
    rng = random.Random(12)
    rows = []
    for i in range(n):
        rows.append((i, INTS[i % len(INTS)], NUMERICS[i % len(NUMERICS)], FLOATS[i % len(FLOATS)],
                     DATES[i % len(DATES)], texts[i % len(texts)], rng.choice(texts), rng.choice(texts)[:30] or None,
                     rng.choice(["ab", "", None, "x&y"]), rng.choice(texts)[:8]))
    return rows


QUERY = (f"SELECT id, i8, amount, score, booking_date, {safe_text_sql('reference')}, {safe_text_sql('description')}, "
         "status, code, short::varchar(8) FROM xlsx_tricky ORDER BY id")


@pytest.fixture()
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    """A connection in a transaction that is rolled back: its temp tables vanish with it."""
    with psycopg.connect(dsn) as c:
        yield c
        c.rollback()


@pytest.fixture()
def params() -> dict[str, Any]:
    return export_params(Results(1, "x", "succeeded", 1, None, 0, 0, None), None)


def fill(conn: psycopg.Connection, rows: list[tuple[Any, ...]]) -> None:
    conn.execute("CREATE TEMP TABLE xlsx_tricky (id int, i8 bigint, amount numeric, score float8, booking_date date, "
                 "reference text, description text, status text, code text, short text) ON COMMIT DROP")
    with conn.cursor().copy("COPY xlsx_tricky FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def new_xlsx(conn: psycopg.Connection, query: str, params: dict[str, Any], sheet: str, header: Sequence[str],
             max_rows: int = 1_048_575) -> bytes:
    with xlsx.export(conn, query, params, sheet, header, max_rows) as f:
        return f.read()


def test_cells_equal_openpyxl_on_tricky_values(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    fill(conn, tricky_rows(3000, TEXTS))
    old = read_back(openpyxl_xlsx(conn.execute(QUERY, params).fetchall(), "tricky", HEADER))
    new = read_back(new_xlsx(conn, QUERY, params, "tricky", HEADER))
    assert new[0] == old[0] == "tricky"
    assert new[1][0] == HEADER
    assert_same_cells(new[1], old[1])


def test_text_with_control_characters_across_many_blocks(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    """Rows COPY quotes (``\\x01``, ``\\x02``) or that need ``_xHHHH_`` escapes, among megabytes of plain ones."""
    fill(conn, tricky_rows(3000, TEXTS + list(CONTROL_TEXTS.values())))
    source = conn.execute(QUERY, params).fetchall()
    data = new_xlsx(conn, QUERY, params, "t", HEADER)
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.getinfo("xl/worksheets/sheet1.xml").file_size > 3 * xlsx.BLOCK_BYTES
    _, rows = read_back(data)
    assert [r[0] for r in rows[1:]] == list(range(3000))
    text = [5, 6, 7, 8, 9]
    assert [[excel_text(r[i]) for i in text] for r in rows[1:]] == [
        [(row[i] or "")[:xlsx.MAX_TEXT] or None for i in text] for row in source]


def test_no_rows_is_a_header_only_sheet(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    fill(conn, [])
    assert read_back(new_xlsx(conn, QUERY, params, "t", HEADER)) == ("t", [HEADER])


def test_literal_escape_sequences_show_as_written(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    fill(conn, [(1, None, None, None, None, "_x0041_", "a_x00e9_b", None, None, None)])
    _, rows = read_back(new_xlsx(conn, QUERY, params, "t", HEADER))
    assert rows[1][5:7] == ("_x005F_x0041_", "a_x005F_x00e9_b")
    assert [excel_text(v) for v in rows[1][5:7]] == ["_x0041_", "a_x00e9_b"]


@pytest.mark.parametrize("text", CONTROL_TEXTS.values(), ids=CONTROL_TEXTS.keys())
def test_control_characters_are_written_as_excel_escapes(conn: psycopg.Connection, params: dict[str, Any],
                                                         text: str) -> None:
    rows = [(1, 1, None, None, None, text, f"before {text} after", text[:30], "ab", text[:8]),
            (2, 2, Decimal("1.50"), 0.5, dt.date(2026, 1, 2), "plain", "plain", "plain", None, "plain")]
    fill(conn, rows)
    source = conn.execute(QUERY, params).fetchall()
    from openpyxl.utils.exceptions import IllegalCharacterError

    with pytest.raises((IllegalCharacterError, ValueError)):  # the latter from lxml: U+FFFE, U+FFFF
        openpyxl_xlsx(source, "t", HEADER)
    _, got = read_back(new_xlsx(conn, QUERY, params, "t", HEADER))
    assert [excel_text(v) for v in got[1][5:8]] == [v or None for v in source[0][5:8]]
    assert not any(ch in str(got[1]) for ch in "\x01\x02\x07\x0b\x0c\x1b\x1f\ufffe\uffff")
    assert got[2] == (2, 2, 1.5, 0.5, dt.datetime(2026, 1, 2), "plain", "plain", "plain", None, "plain")


def test_numbers_openpyxl_rounded_read_back_exactly(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    """openpyxl wrote ``%.16g`` of a float: 0.1 + 0.2 read back as 0.3, 2**53 + 1 as 2**53."""
    fill(conn, [(1, 2**53 + 1, None, 0.1 + 0.2, None, None, None, None, None, None)])
    assert read_back(new_xlsx(conn, QUERY, params, "t", HEADER))[1][1][1:4] == (2**53 + 1, None, 0.1 + 0.2)


@pytest.mark.parametrize("day, serial", [(dt.date(1899, 12, 30), 0), (dt.date(1900, 1, 1), 1), (dt.date(1900, 2, 28), 59),
                                         (dt.date(1900, 3, 1), 61), (dt.date(2026, 3, 2), 46083)],
                         ids=["epoch", "1900-01-01", "before-phantom-leap-day", "after-phantom-leap-day", "2026"])
def test_dates_are_excel_serials(conn: psycopg.Connection, params: dict[str, Any], day: dt.date, serial: int) -> None:
    """openpyxl reads 59 and 60 back as the same day; Excel shows 60 as 1900-02-29: check the numbers."""
    from openpyxl.utils.datetime import to_excel

    fill(conn, [(1, None, None, None, day, None, None, None, None, None)])
    with zipfile.ZipFile(io.BytesIO(new_xlsx(conn, QUERY, params, "t", HEADER))) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
    assert f'<c s="1"><v>{serial}</v></c>' in sheet
    assert to_excel(day) == serial


def test_the_package_holds_one_sheet_and_a_date_style(conn: psycopg.Connection, params: dict[str, Any]) -> None:
    fill(conn, tricky_rows(10, TEXTS))
    with zipfile.ZipFile(io.BytesIO(new_xlsx(conn, QUERY, params, "a&b <view>", HEADER))) as z:
        assert z.testzip() is None
        assert set(z.namelist()) == {"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml",
                                     "xl/_rels/workbook.xml.rels", "xl/styles.xml", "xl/worksheets/sheet1.xml"}
        assert 'formatCode="yyyy-mm-dd"' in z.read("xl/styles.xml").decode()
        assert 'name="a&amp;b &lt;view&gt;"' in z.read("xl/workbook.xml").decode()


@pytest.mark.parametrize("max_rows, fits", [(10, True), (9, False)], ids=["at-the-limit", "one-over"])
def test_row_limit(conn: psycopg.Connection, params: dict[str, Any], max_rows: int, fits: bool) -> None:
    fill(conn, tricky_rows(10, TEXTS))
    if fits:
        assert len(read_back(new_xlsx(conn, QUERY, params, "t", HEADER, max_rows))[1]) == 11
    else:
        with pytest.raises(xlsx.TooManyRows, match="more than 9 rows, the XLSX sheet limit; use format=csv"):
            new_xlsx(conn, QUERY, params, "t", HEADER, max_rows)


def test_sheet_xml_limit(conn: psycopg.Connection, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    fill(conn, tricky_rows(100, TEXTS))
    monkeypatch.setattr(xlsx, "MAX_SHEET_BYTES", 100_000)
    with pytest.raises(xlsx.SheetTooLarge, match="over 100000 bytes"):
        new_xlsx(conn, QUERY, params, "t", HEADER)


def test_a_column_type_without_a_cell_rendering_is_named(conn: psycopg.Connection) -> None:
    with pytest.raises(xlsx.UnsupportedColumn, match="'reviewed_at' has type 'timestamptz'; XLSX cells are "
                                                     "rendered for .*date.*int8.*text"):
        xlsx.export(conn, "SELECT 1 AS id, now() AS reviewed_at", {}, "t", ("id", "reviewed_at"), 10)


# -- the API: every view of a run, against the replaced implementation ------------------------

CURRENCIES = {"EUR": 2, "JPY": 0, "KWD": 3}


def _tricky_csv(n: int, side: str) -> bytes:
    """``n`` lines with tricky text; the right side shifts some dates and leaves some lines out."""
    clean = [t for t in TEXTS if t.strip() == t and len(t) < 200 and "\r" not in t and t]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["date", "reference", "amount", "currency", "counterparty", "description"])
    for i in range(n):
        rng = random.Random(i)
        day = dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(60))
        currency = rng.choice(list(CURRENCIES))
        units = rng.randrange(1, 10_000_000) * rng.choice((1, -1))
        ref = f"{i:07d}" if i % 3 else rng.choice(clean)[:40] + f"-{i}"
        party, text = rng.choice(clean)[:60], rng.choice(clean)
        if side == "right" and i % 11 == 5:
            continue  # unmatched on the left
        if side == "right" and i % 7 == 3:
            day += dt.timedelta(days=2)  # a booking_date discrepancy
        exp = CURRENCIES[currency]
        w.writerow([day.isoformat(), ref, f"{Decimal(units).scaleb(-exp):f}", currency, party, text])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def tricky_run(app_client: TestClient, as_operator: dict[str, str], workers, wait_run) -> int:  # type: ignore[no-untyped-def]
    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": "xlsx tricky"}, headers=as_operator).json()["id"]
    for side in ("left", "right"):
        r = upload(app_client, recon, as_operator, side, _tricky_csv(1500, side), f"{side} ✓ & <file>.csv")
        assert r.status_code == 201, r.text
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
    return recon  # type: ignore[no-any-return]


def _replaced_export(dsn: str, recon: int, view: str, side: str | None) -> bytes:
    with psycopg.connect(dsn) as c:
        results = stored.current_results(c, recon)
        assert results is not None
        web_results._prepare(c)
        rows = c.execute(EXPORTS[view].sql(), export_params(results, side)).fetchall()
    return openpyxl_xlsx(rows, view, EXPORTS[view].header)


@pytest.mark.parametrize("view, side", [("matches", None), ("unmatched", None), ("unmatched", "left"),
                                        ("discrepancies", None)],
                         ids=["matches", "unmatched", "unmatched-left", "discrepancies"])
def test_api_xlsx_equals_the_replaced_export(app_client: TestClient, as_viewer: dict[str, str], dsn: str,
                                             tricky_run: int, view: str, side: str | None) -> None:
    params = {"view": view, "format": "xlsx", **({"side": side} if side else {})}
    r = app_client.get(f"/api/v1/reconciliations/{tricky_run}/export", headers=as_viewer, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    new = read_back(r.content)
    old = read_back(_replaced_export(dsn, tricky_run, view, side))
    assert new[0] == old[0] == view
    assert len(new[1]) > 20, len(new[1])
    assert_same_cells(new[1], old[1])


def test_api_xlsx_over_the_row_limit_is_413(app_client: TestClient, as_viewer: dict[str, str], tricky_run: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_results, "XLSX_MAX_ROWS", 5)
    r = app_client.get(f"/api/v1/reconciliations/{tricky_run}/export", headers=as_viewer,
                       params={"view": "matches", "format": "xlsx"})
    assert r.status_code == 413, r.text
    assert "more than 5 rows, the XLSX sheet limit; use format=csv" in r.text
