"""A viewer's session (reads everything, sees no control that changes anything) and an admin's
delete. Every page: screenshot and axe-core."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SAMPLES, Service, Visit, run_via_api, upload_via_api

MUTATING = ("Create", "Upload", "Run", "Confirm", "Reject", "Unlink", "Link", "Delete", "Import")


@pytest.fixture(scope="module")
def reconciled(service: Service) -> int:
    recon = upload_via_api(service, "Viewer's view", (SAMPLES / "bank_statement.csv").read_bytes(),
                           (SAMPLES / "ledger_export.csv").read_bytes())
    assert run_via_api(service, recon)["status"] == "succeeded"
    return recon


def _no_mutating_controls(v: Visit) -> None:
    page = v.page
    posts = page.locator('form[method="post"]')
    expect(posts).to_have_count(1)  # sign-out only
    expect(posts.first).to_have_attribute("action", "/ui/signout")
    for word in MUTATING:
        named = re.compile(rf"^{word}\b(?! \d)")  # "Run 3" is a link to read run 3
        expect(page.get_by_role("button", name=named)).to_have_count(0)
        # links that open a row (a reconciliation's name can be anything) are not controls
        expect(page.locator("a:not([data-open])").filter(has_text=named)).to_have_count(0)
    expect(page.locator('input[type="checkbox"]')).to_have_count(0)


def test_viewer_reads_but_cannot_change_anything(visit: Visit, reconciled: int) -> None:
    v, page = visit, visit.page
    v.sign_in("viewer", check=False)
    expect(page.locator("header .badge")).to_have_text("viewer")
    _no_mutating_controls(v)
    v.check("viewer-reconciliations")

    page.get_by_role("link", name="Viewer's view").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Viewer's view")
    nav = page.get_by_role("navigation", name=re.compile("Reconciliation"))
    for hidden in ("Run", "Link by hand", "Audit trail"):
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    _no_mutating_controls(v)
    v.check("viewer-reconciliation")

    for tab in ("suggested", "matched", "discrepancies", "left", "right"):
        v.goto(f"/ui/reconciliations/{reconciled}/results?tab={tab}")
        _no_mutating_controls(v)
    v.check("viewer-results")
    v.goto(f"/ui/reconciliations/{reconciled}/results?tab=matched")
    page.locator("table.results a[data-open]").first.click()
    expect(page.get_by_role("table", name=re.compile("Both sides"))).to_be_visible()
    expect(page.get_by_role("heading", name="Audit trail of this match")).to_have_count(0)
    _no_mutating_controls(v)
    v.check("viewer-match")

    v.goto(f"/ui/reconciliations/{reconciled}/summary")
    _no_mutating_controls(v)
    v.check("viewer-summary")

    # Typing the address of an operator's page is refused, with the reason.
    response = v.goto(f"/ui/reconciliations/{reconciled}/run")
    assert response.status == 403
    expect(page.locator(".error-text")).to_contain_text("role 'viewer' may not do this")
    v.check("viewer-forbidden")
    refused = page.request.post(f"/ui/reconciliations/{reconciled}/link", form={"left_ids": "1", "right_ids": "2"})
    assert refused.status == 403


def test_admin_deletes_after_confirming(visit: Visit, service: Service) -> None:
    recon = upload_via_api(service, "To be deleted", b"date,reference,amount,currency\n2026-01-01,A,1.00,EUR\n",
                           b"date,reference,amount,currency\n2026-01-02,A,1.00,EUR\n")
    v, page = visit, visit.page
    v.sign_in("admin", check=False)
    v.goto(f"/ui/reconciliations/{recon}")
    page.get_by_role("link", name="Delete this reconciliation…").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Delete “To be deleted”?")
    v.check("delete-confirm")
    page.get_by_role("button", name="Delete for good").click()
    expect(page.locator("#flash")).to_contain_text("Deleted reconciliation “To be deleted”")
    response = v.goto(f"/ui/reconciliations/{recon}")
    assert response.status == 404
    v.check("not-found")
