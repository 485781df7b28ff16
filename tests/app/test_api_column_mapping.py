"""Column mapping and separators through the upload endpoint (issue #12): errors that say what
would be valid, ids the file brings, decimal commas found from the data, and a rejected
10,000-line file answered in a few hundred bytes, not 1.8 MB."""

from __future__ import annotations

import json

import psycopg
import pytest
from fastapi.testclient import TestClient

from app.importers import ColumnMapping, ImportOptions


@pytest.fixture()
def recon(app_client: TestClient, as_operator: dict[str, str]) -> int:
    r = app_client.post("/api/v1/reconciliations", json={"name": "mapping"}, headers=as_operator)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _upload(client: TestClient, recon: int, hdrs: dict[str, str], text: str, options: dict | None = None):  # type: ignore[no-untyped-def, type-arg]
    form = {"side": "left", **({"options": json.dumps(options)} if options is not None else {})}
    return client.post(f"/api/v1/reconciliations/{recon}/imports", headers=hdrs, data=form,
                       files={"file": ("bank.csv", text.encode(), "text/csv")})


@pytest.mark.parametrize("options, field, model", [
    ({"columns": {"entry_id": "entry_id"}}, "options.columns.entry_id", ColumnMapping),
    ({"colour": "red"}, "options.colour", ImportOptions),
], ids=["mapping-key", "option-key"])
def test_an_unknown_key_is_quoted_with_the_valid_ones(app_client: TestClient, as_operator: dict[str, str], recon: int,
                                                      options: dict, field: str, model: type) -> None:  # type: ignore[type-arg]
    r = _upload(app_client, recon, as_operator, "date,amount,currency\n2024-01-02,1.00,EUR\n", options)
    assert r.status_code == 422, r.text
    (problem,) = [p for p in r.json()["problems"] if p["field"] == field]
    bad = field.rsplit(".", 1)[1]
    assert f"unknown key {bad!r}" in problem["reason"]
    assert all(key in problem["reason"] for key in model.model_fields), problem["reason"]
    assert "Extra inputs are not permitted" not in r.text


def test_the_files_id_column_is_stored_as_source_id(app_client: TestClient, as_operator: dict[str, str], recon: int,
                                                    db: psycopg.Connection) -> None:
    r = _upload(app_client, recon, as_operator,
                "entry_id,date,amount,currency\nL-0001,2024-01-02,1.00,EUR\nL-0002,2024-01-03,2.00,EUR\n")
    assert r.status_code == 201, r.text
    rows = db.execute("SELECT source_id, line FROM records WHERE import_id = %s ORDER BY line",
                      (r.json()["id"],)).fetchall()
    assert rows == [("L-0001", 2), ("L-0002", 3)]


def test_mapping_the_date_to_the_amount_column_is_a_clear_422(app_client: TestClient, as_operator: dict[str, str],
                                                              recon: int) -> None:
    r = _upload(app_client, recon, as_operator, "Datum;Betrag;Währung\n02.01.2024;1,00;EUR\n",
                {"columns": {"booking_date": "Betrag"}})
    assert r.status_code == 422, r.text
    assert any("'Betrag' is mapped to booking_date" in p["reason"] for p in r.json()["problems"]), r.json()


def test_a_decimal_comma_file_imports_without_options(app_client: TestClient, as_operator: dict[str, str],
                                                      recon: int) -> None:
    def german(minor: int) -> str:  # 1.234,56
        whole, cents = divmod(minor, 100)
        return f"{whole:,}".replace(",", ".") + f",{cents:02d}"

    rows = "".join(f"02.01.2024;R{i};{german(i * 1234)};EUR\n" for i in range(1, 10_001))
    r = _upload(app_client, recon, as_operator, "Buchungstag;Referenz;Betrag;Währung\n" + rows)
    assert r.status_code == 201, r.text[:500]
    assert r.json()["record_count"] == 10_000
    assert any("decimal comma" in w for w in r.json()["warnings"])


def test_ten_thousand_bad_amounts_are_one_problem(app_client: TestClient, as_operator: dict[str, str],
                                                  recon: int) -> None:
    rows = "".join(f"2024-01-02;R{i};{i} EUR;EUR\n" for i in range(10_000))
    r = _upload(app_client, recon, as_operator, "date;reference;amount;currency\n" + rows)
    assert r.status_code == 422
    assert len(r.content) < 2_000, len(r.content)
    (problem,) = r.json()["problems"]
    assert problem["count"] == 10_000 and problem["lines"] == [2, 3, 4, 5, 6] and problem["column"] == "amount"
