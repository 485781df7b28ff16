"""Uploads through the UI, server side: the preview, a fixed mapping, and every refusal by line."""

from __future__ import annotations

import psycopg
import pytest

from tests.app.fix_ui import SAMPLES, UI, create, upload

pytest_plugins = ["tests.app.fix_ui"]

GERMAN = ("Buchungstag;Verwendungszweck;Betrag EUR;Empfänger\n"
          "02.03.2026;Rechnung 1;1.250,00;Acme GmbH\n"
          "03.03.2026;Rechnung 2;-89,90;Büro AG\n").encode()


def _preview(ui: UI, recon: int, data: bytes, name: str, **fields: str):  # type: ignore[no-untyped-def]
    return ui.post(f"/ui/reconciliations/{recon}/upload/left/preview", list(fields.items()),
                   files={"file": (name, data, "text/csv")}, htmx=True)


def test_preview_shows_format_mapping_rows_and_records(operator_ui: UI) -> None:
    recon = create(operator_ui, "preview")
    r = _preview(operator_ui, recon, (SAMPLES / "bank_statement.csv").read_bytes(), "bank.csv")
    assert r.status_code == 200 and r.text.lstrip().startswith('<div id="preview"'), "htmx gets the fragment"
    assert "Read as <strong>csv</strong>, delimiter <strong>comma</strong>, header on line 1" in r.text
    assert "auto: “date”" in r.text and "auto: none found" in r.text
    assert "Payment INV-1001" in r.text and "1,250.00" in r.text
    assert 'id="preview-problems"' not in r.text


def test_a_mapping_the_detection_misses_is_fixed_in_the_preview(operator_ui: UI, db: psycopg.Connection) -> None:
    recon = create(operator_ui, "german bank")
    r = _preview(operator_ui, recon, GERMAN, "konto.csv", opt_decimal=",", opt_thousands=".")
    assert "no amount column" in r.text and "no currency column" in r.text
    fields = {"opt_decimal": ",", "opt_thousands": ".", "opt_default_currency": "EUR", "map_amount": "Betrag EUR"}
    r = _preview(operator_ui, recon, GERMAN, "konto.csv", **fields)
    assert 'id="preview-problems"' not in r.text and "-89.90" in r.text
    assert '<option value="Betrag EUR" selected>' in r.text
    imported = upload(operator_ui, recon, "left", GERMAN, "konto.csv", **fields)
    assert imported.status_code == 303
    options = db.execute("SELECT options FROM imports WHERE reconciliation_id = %s", (recon,)).fetchone()[0]
    assert options["columns"]["amount"] == "Betrag EUR" and options["decimal"] == "," and options["thousands"] == "."
    amounts = [r[0] for r in db.execute("SELECT amount_minor FROM records WHERE reconciliation_id = %s ORDER BY id",
                                        (recon,))]
    assert amounts == [125000, -8990]


def test_refusals_show_every_problem_with_its_line(operator_ui: UI) -> None:
    recon = create(operator_ui, "refusals")
    broken = b"date,amount,currency\n2026-03-01,1.00,EUR\n2026-13-01,x,EUR\n2026-03-03,2.00\n"
    r = upload(operator_ui, recon, "left", broken, "broken.csv")
    assert r.status_code == 422
    assert "3 problems, by line and column" in r.text
    for source in ("2026-13-01,x,EUR", "2026-03-03,2.00"):
        assert f'<code class="source">{source}</code>' in r.text
    assert r.text.count('id="preview-problems"') == 0, "the problems are listed once"


@pytest.mark.parametrize(("data", "name", "status", "message"), [
    (b"%PDF-1.7 binary", "statement.pdf", 415, "a PDF document"),
    (b"", "empty.csv", 422, "empty"),
], ids=["pdf", "empty"])
def test_files_that_are_not_statements(operator_ui: UI, data: bytes, name: str, status: int, message: str) -> None:
    recon = create(operator_ui, f"not a statement: {name}")
    r = upload(operator_ui, recon, "left", data, name)
    assert r.status_code == status and message in r.text


def test_the_same_file_twice_is_refused(operator_ui: UI) -> None:
    recon = create(operator_ui, "duplicate")
    data = (SAMPLES / "ledger_export.csv").read_bytes()
    assert upload(operator_ui, recon, "right", data, "ledger.csv").status_code == 303
    r = upload(operator_ui, recon, "left", data, "again.csv")
    assert r.status_code == 409 and "has the same content" in r.text


def test_too_large_is_refused_before_reading(operator_ui: UI) -> None:
    recon = create(operator_ui, "too large")
    big = b"date,amount,currency\n" + b"2026-03-01,1.00,EUR\n" * 200_000
    r = upload(operator_ui, recon, "left", big, "big.csv")
    assert r.status_code == 413 and "exceeds the limit" in r.text


def test_invalid_options_are_named(operator_ui: UI) -> None:
    recon = create(operator_ui, "bad options")
    r = upload(operator_ui, recon, "left", (SAMPLES / "bank_statement.csv").read_bytes(), "bank.csv",
               opt_default_currency="EUX")
    assert r.status_code == 422 and "unknown currency" in r.text
    assert "The import options are not valid." in r.text


def test_unknown_side_is_not_found(operator_ui: UI) -> None:
    recon = create(operator_ui, "sides")
    assert operator_ui.get(f"/ui/reconciliations/{recon}/upload/middle").status_code == 404
