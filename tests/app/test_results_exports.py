"""Exports trace every row to its source file, line and source id; download names survive any language.

A user reading an export must be able to find each record in the file it came from: matches,
unmatched records and discrepancies carry the import, file name, line and the importer's
source id of the records on *both* sides. Download file names are the reconciliation's name,
sent per RFC 6266 (an ASCII ``filename=`` fallback and ``filename*=UTF-8''...``), so a name in
any script is a download, not an HTTP 500.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient

from tests.app.test_service_flow import LEFT, RIGHT, upload

NAME = "Relevé – Сверка März ✓"
"""Latin-1 letters, an en dash, Cyrillic and a symbol: not encodable as latin-1 (Starlette's header codec)."""


@pytest.fixture(scope="module")
def exported(app_client: TestClient, as_operator: dict[str, str], workers, wait_run) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": NAME}, headers=as_operator).json()["id"]
    imports = {side: upload(app_client, recon, as_operator, side, data, name).json()
               for side, data, name in (("left", LEFT, "bank.csv"), ("right", RIGHT, "ledger.csv"))}
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
    return {"recon": recon, "run": run["id"], "imports": imports}


def export(client: TestClient, exported: dict[str, Any], hdrs: dict[str, str], view: str, fmt: str = "csv"):  # type: ignore[no-untyped-def]
    r = client.get(f"/api/v1/reconciliations/{exported['recon']}/export", headers=hdrs,
                   params={"view": view, "format": fmt})
    assert r.status_code == 200, r.text
    return r


def rows(client: TestClient, exported: dict[str, Any], hdrs: dict[str, str], view: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(export(client, exported, hdrs, view).text)))


SOURCE = ("import_id", "source_file", "line", "source_id")


def test_matches_export_traces_both_sides_to_file_line_and_source_id(app_client: TestClient,
                                                                     exported: dict[str, Any],
                                                                     as_viewer: dict[str, str]) -> None:
    table = rows(app_client, exported, as_viewer, "matches")
    inv1 = [r for r in table if r["reference"] == "INV-1"]
    assert {r["side"]: tuple(r[c] for c in SOURCE) for r in inv1} == {
        "left": (str(exported["imports"]["left"]["id"]), "bank.csv", "2", "1"),
        "right": (str(exported["imports"]["right"]["id"]), "ledger.csv", "2", "1"),
    }
    assert all(r["line"] and r["source_file"] and r["source_id"] for r in table)


def test_unmatched_export_traces_records_to_file_line_and_source_id(app_client: TestClient,
                                                                    exported: dict[str, Any],
                                                                    as_viewer: dict[str, str]) -> None:
    table = rows(app_client, exported, as_viewer, "unmatched")
    assert sorted((r["side"], r["source_file"], r["line"], r["source_id"]) for r in table) == [
        ("left", "bank.csv", "7", "6"), ("right", "ledger.csv", "8", "7")]


def test_discrepancies_export_names_both_sides_records(app_client: TestClient, exported: dict[str, Any],
                                                       as_viewer: dict[str, str]) -> None:
    table = rows(app_client, exported, as_viewer, "discrepancies")
    inv2 = [r for r in table if r["field"] == "booking_date" and r["left"] == "2026-03-03"]
    assert [(r["left_source_file"], r["left_line"], r["left_source_id"], r["right_source_file"], r["right_line"],
             r["right_source_id"]) for r in inv2] == [("bank.csv", "3", "2", "ledger.csv", "3", "2")]


GROUP_LEFT = b"date,reference,amount,currency\n2026-03-20,GRP-9,300.00,EUR\n"
GROUP_RIGHT = b"date,reference,amount,currency\n2026-03-21,GRP-9,100.00,EUR\n2026-03-22,GRP-9,200.00,EUR\n"


def test_group_discrepancies_list_every_record_of_a_side(app_client: TestClient, as_operator: dict[str, str],
                                                         workers, wait_run) -> None:  # type: ignore[no-untyped-def]
    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": "split payment"}, headers=as_operator).json()["id"]
    upload(app_client, recon, as_operator, "left", GROUP_LEFT, "bank.csv")
    upload(app_client, recon, as_operator, "right", GROUP_RIGHT, "ledger.csv")
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
    table = rows(app_client, {"recon": recon}, as_operator, "discrepancies")
    assert table, "the split payment's later dates are a discrepancy"
    assert {(r["left_source_file"], r["left_line"], r["right_source_file"], r["right_line"], r["right_source_id"])
            for r in table} == {("bank.csv", "2", "ledger.csv; ledger.csv", "2; 3", "1; 2")}


def test_xlsx_export_has_the_source_columns(app_client: TestClient, exported: dict[str, Any],
                                            as_viewer: dict[str, str]) -> None:
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(export(app_client, exported, as_viewer, "matches", "xlsx").content),
                          read_only=True)["matches"]
    header, *body = list(sheet.iter_rows(values_only=True))
    assert set(SOURCE) <= set(header) and len(body) == 11
    first = dict(zip(header, body[0]))
    assert first["source_file"] in ("bank.csv", "ledger.csv") and isinstance(first["line"], int)


def _disposition(value: str) -> tuple[str, str]:
    """``(filename, filename*)`` of a Content-Disposition value, the latter decoded."""
    plain = re.search(r'filename="([^"]*)"', value)
    star = re.search(r"filename\*=UTF-8''([^;\s]+)", value)
    assert plain and star, value
    return plain.group(1), unquote(star.group(1), encoding="utf-8", errors="strict")


@pytest.mark.parametrize("view, fmt", [("matches", "csv"), ("unmatched", "xlsx")], ids=["csv", "xlsx"])
def test_export_is_named_after_a_non_ascii_reconciliation(app_client: TestClient, exported: dict[str, Any],
                                                          as_viewer: dict[str, str], view: str, fmt: str) -> None:
    value = export(app_client, exported, as_viewer, view, fmt).headers["content-disposition"]
    assert value.startswith("attachment;") and value.isascii()
    plain, utf8 = _disposition(value)
    assert utf8 == f"{NAME}-run-{exported['run']}-{view}.{fmt}"
    assert plain.endswith(f"-run-{exported['run']}-{view}.{fmt}") and plain.startswith("Releve")


@pytest.mark.parametrize("name, fallback", [
    ('a"b\\c/d;e\r\nf', "a_b_c_d_e_f"),
    ("../../etc/passwd", ".._.._etc_passwd"),
    ("ЖЖЖ", "download"),
], ids=["quotes-and-separators", "path", "nothing-ascii"])
def test_content_disposition_never_breaks_the_header(name: str, fallback: str) -> None:
    from app.web.results import content_disposition

    value = content_disposition(name)
    plain, utf8 = _disposition(value)
    assert value.isascii() and "\r" not in value and "\n" not in value
    assert plain == fallback
    assert "/" not in utf8 and "\\" not in utf8 and "\n" not in utf8


@pytest.mark.parametrize("text, cell", [
    ("=HYPERLINK(\"http://evil\")", "'=HYPERLINK(\"http://evil\")"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("+1+1", "'+1+1"),
    ("-", "'-"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("-12.50", "-12.50"),
    ("+7", "+7"),
    ("-12.50\n", "'-12.50\n"),
    ("Acme = 1", "Acme = 1"),
    ("", ""),
], ids=["equals", "at", "plus", "dash", "tab", "cr", "negative-number", "plus-number", "number-and-newline",
        "inner-equals", "empty"])
def test_export_text_is_defused_against_formulas(db, text: str, cell: str) -> None:  # type: ignore[no-untyped-def]
    from app.db.results import Results
    from app.web.results import export_params, safe_text_sql

    params = export_params(Results(1, "x", "succeeded", 1, None, 0, 0, None), None)
    assert db.execute(f"SELECT {safe_text_sql('%(text)s::text')}", {**params, "text": text}).fetchone() == (cell,)
