"""The main flow, as an operator does it in the browser: sign in, create, upload both sample
files (fixing a mapping), run with an edited rule, review with the keyboard, link by hand,
export, read the summary and the audit trail, sign out. Every page: screenshot and axe-core."""

from __future__ import annotations

import csv
import io
import re

import psycopg
from playwright.sync_api import expect

from tests.browser.conftest import SAMPLES, Visit


def _upload(v: Visit, side: str, filename: str, *, fix_mapping: bool = False) -> None:
    v.page.get_by_role("link", name=f"Upload the {side} side").click()
    v.page.wait_for_url(re.compile(rf"/upload/{side}$"))
    v.check(f"upload-{side}")
    v.page.get_by_label("File to import").set_input_files(str(SAMPLES / filename))
    expect(v.page.locator("#preview-summary")).to_contain_text("Read as csv")
    expect(v.page.get_by_role("table", name="The first records as they will be imported")).to_be_visible()
    mapping = v.page.locator("#map_booking_date")
    expect(mapping.locator("option").first).to_have_text("auto: “date”")
    if fix_mapping:
        # A wrong column for the amount shows its consequences line by line; choosing the right
        # column by hand fixes it, and the import uses the mapping chosen here.
        v.page.select_option("#map_amount", "reference")
        problems = v.page.locator("#preview-problems")
        expect(problems).to_contain_text("'INV-1001'")
        expect(problems.locator("tbody tr").first.locator("td").nth(1)).to_have_text("reference")
        v.check(f"upload-{side}-preview-mapping-problem")
        v.page.select_option("#map_amount", "amount")
        expect(problems).to_have_count(0)
        sample = v.page.get_by_role("table", name="The file's first rows as read")
        expect(sample.locator("thead th").nth(3)).to_contain_text("amount")
        records = v.page.get_by_role("table", name="The first records as they will be imported")
        expect(records).to_contain_text("1,250.00")
        v.check(f"upload-{side}-preview-mapped")
    else:
        v.check(f"upload-{side}-preview")
    v.page.get_by_role("button", name="Import", exact=True).click()
    expect(v.page.locator("#flash")).to_contain_text(f"as the {side} side")


def test_operator_main_flow(visit: Visit) -> None:
    v, page = visit, visit.page
    v.goto("/ui/")
    expect(page).to_have_url(re.compile(r"/ui/signin\?reason=signin"))
    v.sign_in("operator")
    expect(page.locator("#flash")).to_contain_text("Signed in as browser operator")
    v.check("reconciliations-empty")

    page.get_by_label("New reconciliation").fill("March: bank vs ledger")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("March: bank vs ledger")
    v.check("reconciliation-new")
    recon = int(page.url.rstrip("/").rsplit("/", 1)[1])

    _upload(v, "left", "bank_statement.csv")
    _upload(v, "right", "ledger_export.csv", fix_mapping=True)
    v.check("reconciliation-uploaded")

    # Run with the keyless amount+date rule turned to suggestions, so there is something to review.
    page.get_by_role("link", name="Run the matching…").click()
    v.check("run-form")
    rule = page.locator("fieldset.rule").filter(has=page.locator('input[value="amount_date"]'))
    rule.get_by_label("status", exact=True).select_option("suggested")
    page.get_by_role("button", name="Run with these rules").first.click()
    expect(page).to_have_url(re.compile(r"/ui/runs/\d+$"))
    expect(page.get_by_role("link", name="Review the results")).to_be_visible(timeout=60_000)
    v.check("run-succeeded")

    page.get_by_role("link", name="Review the results").click()
    table = page.locator("table.results")
    rows = table.locator("tbody tr[data-row]")
    expect(rows.first).to_be_visible()
    suggested = rows.count()
    assert suggested >= 2, f"the edited rule set should leave at least two suggestions, got {suggested}"
    v.check("results-suggested")

    # Keyboard review: j selects the first row, c confirms it (focus moves on), r rejects the next.
    first_id, second_id = rows.nth(0).get_attribute("id"), rows.nth(1).get_attribute("id")
    second_parties = rows.nth(1).locator("td").nth(4).inner_text()
    page.locator("body").press("j")
    expect(page.locator(f"#{first_id}")).to_be_focused()
    page.keyboard.press("c")
    expect(page.locator(f"#{first_id}")).to_contain_text("confirmed")
    expect(page.locator(f"#{second_id}")).to_be_focused()
    page.keyboard.press("r")
    expect(page.locator(f"#{second_id}")).to_contain_text("rejected")
    v.check("results-reviewed")

    # The confirmed pair side by side, with its audit trail.
    page.locator(f"#{first_id} a[data-open]").click()
    expect(page.get_by_role("table", name=re.compile("Both sides"))).to_be_visible()
    expect(page.get_by_role("table", name=re.compile("Changes to match"))).to_contain_text("match.confirm")
    v.check("match-pair")

    # Link the rejected pair's records again by hand.
    page.get_by_role("link", name="Link by hand").click()
    party = second_parties.split()[2] if len(second_parties.split()) > 2 else second_parties.split()[0]
    counterparty = re.sub(r"[^A-Za-z ].*", "", second_parties.splitlines()[-1]).strip() or party
    page.get_by_label("Text").fill(counterparty.split()[0])
    page.get_by_role("button", name="Filter").click()
    left_box = page.locator('input[name="left_ids"]').first
    right_box = page.locator('input[name="right_ids"]').first
    left_box.check()
    right_box.check()
    expect(page.locator("#link-totals")).to_contain_text("difference")
    v.check("link")
    page.get_by_role("button", name="Link the selected records").click()
    expect(page.locator("#flash")).to_contain_text("(confirmed, manual)")

    page.goto(f"{v.service.base}/ui/reconciliations/{recon}/results?tab=matched")
    expect(page.locator("table.results")).to_contain_text("manual")
    v.check("results-matched")
    for tab in ("discrepancies", "left", "right"):
        page.goto(f"{v.service.base}/ui/reconciliations/{recon}/results?tab={tab}")
        v.check(f"results-{tab}")

    # Export: every format the API offers is a button; the CSV holds the matches.
    with page.expect_download() as got:
        page.get_by_role("link", name="matches (CSV)").click()
    body = got.value.path().read_text()
    exported = list(csv.DictReader(io.StringIO(body)))
    assert exported and {"match_id", "status", "amount"} <= set(exported[0])
    assert {"confirmed"} <= {r["status"] for r in exported}
    with page.expect_download() as got:
        page.get_by_role("link", name="unmatched left (XLSX)").click()
    assert got.value.path().read_bytes()[:2] == b"PK"

    page.get_by_role("link", name="Summary").click()
    expect(page.locator("figure.chart svg rect").first).to_be_attached()
    expect(page.get_by_role("table", name=re.compile("Per rule"))).to_contain_text("manual")
    v.check("summary")

    page.get_by_role("link", name="Audit trail").click()
    audit = page.get_by_role("table", name="Audit trail")
    for action in ("reconciliation.create", "import.create", "run.create", "match.confirm", "match.reject",
                   "match.link"):
        expect(audit).to_contain_text(action)
    v.check("audit")

    with psycopg.connect(v.service.dsn) as conn:
        row = conn.execute("SELECT options->'columns' FROM imports WHERE reconciliation_id = %s AND side = 'right'",
                           (recon,)).fetchone()
        chosen = {k: v for k, v in row[0].items() if v is not None}
        assert chosen == {"amount": "amount"}, "the mapping fixed in the preview is what the import used"
        actors = {r[0] for r in conn.execute("SELECT DISTINCT actor FROM audit_log WHERE action LIKE 'match.%'")}
        assert "browser operator" in actors

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator(".notice")).to_contain_text("You are signed out")
    v.goto(f"/ui/reconciliations/{recon}")
    expect(page).to_have_url(re.compile(r"/ui/signin\?reason="))
