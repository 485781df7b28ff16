"""Every import format through the HTTP API: a good file is stored (201), a broken one is 422
with its problems listed and nothing stored. The formats' own edge cases are tested in
tests/app/test_importers_*.py; here the point is the service's all-or-nothing contract."""

from __future__ import annotations

import io
import json
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

FIXTURES = Path(__file__).parent / "fixtures_data"
DE_OPTIONS = json.dumps({"delimiter": ";", "decimal": ",", "thousands": ".", "date_format": "%d.%m.%Y"})


def xlsx(rows: list[list[object]]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def good_and_bad() -> list[tuple[str, str, bytes, bytes, str | None]]:
    """(id, filename, good bytes, broken bytes, options)."""
    ofx = (FIXTURES / "bank.ofx").read_bytes()
    sta = (FIXTURES / "bank.sta").read_bytes()
    camt = (FIXTURES / "camt053_v08.xml").read_bytes()
    de = (FIXTURES / "bank_de.csv").read_bytes()
    header = ["date", "reference", "amount", "currency"]
    return [
        ("ofx", "bank.ofx", ofx, ofx.replace(b"<TRNAMT>500.00", b"<TRNAMT>5OO.OO", 1), None),
        ("mt940-balance", "bank.sta", sta, sta.replace(b":62F:C240103EUR1299,50", b":62F:C240103EUR1299,51", 1), None),
        ("camt053-balance", "camt.xml", camt, camt.replace(b'<Amt Ccy="EUR">500.00</Amt>', b'<Amt Ccy="EUR">501.00</Amt>', 1),
         None),
        ("csv-decimal-comma", "bank_de.csv", de, de.replace(b"1.234,56", b"1.234,5x", 1), DE_OPTIONS),
        ("xlsx", "book.xlsx", xlsx([header, ["2026-03-01", "A", 12.5, "EUR"], ["2026-03-02", "B", -3, "EUR"]]),
         xlsx([header, ["2026-03-01", "A", "twelve", "EUR"], ["not a date", "B", -3, "EUR"]]), None),
    ]


CASES = good_and_bad()


@pytest.fixture()
def recon(app_client: TestClient, as_operator: dict[str, str]) -> int:
    return int(app_client.post("/api/v1/reconciliations", json={"name": "formats"}, headers=as_operator).json()["id"])


def post(client: TestClient, recon: int, hdrs: dict[str, str], name: str, data: bytes, options: str | None):  # type: ignore[no-untyped-def]
    form = {"side": "left", **({"options": options} if options else {})}
    return client.post(f"/api/v1/reconciliations/{recon}/imports", headers=hdrs, data=form,
                       files={"file": (name, data, "application/octet-stream")})


@pytest.mark.parametrize("name, good, options, fmt", [(c[1], c[2], c[4], c[0].split("-")[0]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_good_file_is_imported(app_client: TestClient, recon: int, as_operator: dict[str, str],
                               db: psycopg.Connection, name: str, good: bytes, options: str | None, fmt: str) -> None:
    r = post(app_client, recon, as_operator, name, good, options)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == fmt
    stored = db.execute("SELECT count(*), min(amount_minor) IS NOT NULL FROM records WHERE import_id = %s",
                        (body["id"],)).fetchone()
    assert stored == (body["record_count"], True) and body["record_count"] > 0


@pytest.mark.parametrize("name, bad, options", [(c[1], c[3], c[4]) for c in CASES], ids=[c[0] for c in CASES])
def test_broken_file_is_422_and_nothing_is_stored(app_client: TestClient, recon: int, as_operator: dict[str, str],
                                                  db: psycopg.Connection, name: str, bad: bytes,
                                                  options: str | None) -> None:
    r = post(app_client, recon, as_operator, name, bad, options)
    assert r.status_code == 422, r.text
    problems = r.json()["problems"]
    assert problems and all(set(p) == {"line", "column", "reason"} and p["reason"] for p in problems)
    assert db.execute("SELECT count(*) FROM imports WHERE reconciliation_id = %s", (recon,)).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM records WHERE reconciliation_id = %s", (recon,)).fetchone() == (0,)


def test_xlsx_broken_lists_every_problem(app_client: TestClient, recon: int, as_operator: dict[str, str]) -> None:
    bad = [c for c in CASES if c[0] == "xlsx"][0][3]
    r = post(app_client, recon, as_operator, "book.xlsx", bad, None)
    assert sorted({p["line"] for p in r.json()["problems"]}) == [2, 3]
