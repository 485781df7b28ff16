"""What people see when something goes wrong: a malformed upload (every problem by line and
column, with the file's own line), an unsupported file, a duplicate, and a failed run."""

from __future__ import annotations

import re

import psycopg
from playwright.sync_api import expect

from tests.browser.conftest import SAMPLES, Visit, upload_via_api

BROKEN = (b"date,reference,amount,currency,counterparty\n"
          b"2026-03-02,INV-1,100.00,EUR,Acme\n"
          b"2026-03-32,INV-2,12.345,EUR,Beta\n"
          b"2026-03-04,INV-3,abc,EUR,Gamma\n"
          b"2026-03-05,INV-4,5.00,EUR\n")


def _new(v: Visit, name: str) -> int:
    v.page.get_by_label("New reconciliation").fill(name)
    v.page.get_by_role("button", name="Create").click()
    v.page.wait_for_url(re.compile(r"/ui/reconciliations/\d+$"))
    return int(v.page.url.rsplit("/", 1)[1])


def test_a_failed_upload_says_what_and_where(visit: Visit, tmp_path) -> None:  # type: ignore[no-untyped-def]
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    recon = _new(v, "Broken upload")
    v.goto(f"/ui/reconciliations/{recon}/upload/left")
    broken = tmp_path / "broken.csv"
    broken.write_bytes(BROKEN)
    page.get_by_label("File to import").set_input_files(str(broken))
    problems = page.locator("#preview-problems")
    expect(problems).to_contain_text("'abc'")
    v.check("upload-preview-problems")

    page.get_by_role("button", name="Import", exact=True).click()
    error = page.locator("#import-error")
    expect(error).to_contain_text("The file was not imported")
    rows = error.get_by_role("table").locator("tbody tr")
    expect(rows).to_have_count(4)
    for i, (line, column, reason, source) in enumerate((
            # the reasons are the importer's words; the test holds only the bad value they quote
            ("3", "amount", "12.345", "2026-03-32,INV-2,12.345,EUR,Beta"),
            ("3", "date", "2026-03-32", "2026-03-32,INV-2,12.345,EUR,Beta"),
            ("4", "amount", "'abc'", "2026-03-04,INV-3,abc,EUR,Gamma"),
            ("5", "—", "found 4", "2026-03-05,INV-4,5.00,EUR"))):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(line)
        expect(cells.nth(1)).to_have_text(column)
        expect(cells.nth(2)).to_contain_text(reason)
        expect(cells.nth(3)).to_have_text(source)
    v.check("upload-failed")

    pdf = tmp_path / "statement.pdf"
    pdf.write_bytes(b"%PDF-1.7\n%binary\n")
    page.get_by_label("File to import").set_input_files(str(pdf))
    expect(page.locator("#preview-error")).to_contain_text("a PDF document")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-error")).to_contain_text("a PDF document")
    v.check("upload-unsupported")

    page.get_by_label("File to import").set_input_files(str(SAMPLES / "bank_statement.csv"))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#flash")).to_contain_text("Imported 10 records")
    v.goto(f"/ui/reconciliations/{recon}/upload/right")
    page.get_by_label("File to import").set_input_files(str(SAMPLES / "bank_statement.csv"))
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-error")).to_contain_text("has the same content")
    v.check("upload-duplicate")


def test_a_failed_run_shows_why(visit: Visit) -> None:
    service = visit.service
    recon = upload_via_api(service, "Run that fails", (SAMPLES / "bank_statement.csv").read_bytes(),
                           (SAMPLES / "ledger_export.csv").read_bytes())
    with psycopg.connect(service.dsn, autocommit=True) as conn:
        # A currency the engine refuses: the job fails for good (no retry) with the engine's reason.
        conn.execute("UPDATE records SET currency = 'XXX' WHERE id = (SELECT min(id) FROM records "
                     "WHERE reconciliation_id = %s)", (recon,))
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    v.goto(f"/ui/reconciliations/{recon}/run")
    page.get_by_role("button", name="Run with these rules").first.click()
    failure = page.locator("#run-failure")
    expect(failure).to_contain_text("The run failed", timeout=60_000)
    expect(failure).to_contain_text("XXX")
    v.check("run-failed")
    page.get_by_role("link", name="Change the rules and run again").click()
    expect(page).to_have_url(re.compile(rf"/ui/reconciliations/{recon}/run$"))


def test_an_invalid_rule_is_marked_where_it_is(visit: Visit) -> None:
    service = visit.service
    recon = upload_via_api(service, "Bad rules", b"date,reference,amount,currency\n2026-01-01,A,1.00,EUR\n",
                           b"date,reference,amount,currency\n2026-01-02,A,1.00,EUR\n")
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    v.goto(f"/ui/reconciliations/{recon}/run")
    first = page.locator("fieldset.rule").first
    # The browser itself holds number fields to the engine's bounds (min/max from the models) ...
    first.get_by_label("date window days").fill("400")
    assert first.get_by_label("date window days").evaluate("e => e.validity.rangeOverflow")
    first.get_by_label("date window days").fill("3")
    # ... the rest is the engine's validation, placed next to the field or the rule it concerns.
    group = page.locator("fieldset.rule").filter(has=page.locator('input[value="group"]'))
    group.get_by_role("group", name="group by").get_by_label("reference").uncheck()
    group.get_by_role("group", name="group by").get_by_label("counterparty").check()
    page.get_by_role("button", name="Run with these rules").first.click()
    expect(page.locator("#run-error")).to_contain_text("The rule set has problems")
    expect(group.locator(".problems")).to_contain_text("must also be in group_by")
    v.check("run-form-invalid")
