"""Every control on every page is reachable with the Tab key, in order, and works from the keyboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SAMPLES, Service, Visit, run_via_api, upload_via_api

FOCUSABLE = """() => {
  const sel = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]),'
            + ' textarea:not([disabled]), summary, [tabindex="0"]';
  const shown = e => {
    if (e.closest('dialog:not([open])') || e.closest('details:not([open]) > :not(summary)')) return false;
    const s = getComputedStyle(e);
    const r = e.getBoundingClientRect();
    return s.visibility !== 'hidden' && s.display !== 'none' && (r.width > 0 || r.height > 0);
  };
  const found = [...document.querySelectorAll(sel)].filter(shown);
  found.forEach((e, i) => { e.dataset.kb = String(i); });
  return found.map(e => e.outerHTML.slice(0, 120));
}"""


@pytest.fixture(scope="module")
def reconciled(service: Service) -> int:
    recon = upload_via_api(service, "Keyboard", (SAMPLES / "bank_statement.csv").read_bytes(),
                           (SAMPLES / "ledger_export.csv").read_bytes())
    assert run_via_api(service, recon)["status"] == "succeeded"
    return recon


def reachable(v: Visit) -> None:
    """Tab from the top of the page through every control; each must take the focus once."""
    page = v.page
    page.wait_for_load_state("load")
    controls = page.evaluate(FOCUSABLE)
    assert controls, f"no control on {page.url}"
    # Start from the top: focusing the body moves the browser's "sequential focus navigation
    # starting point" there (a mere blur() would leave it at the last focused control).
    page.evaluate("""() => { const b = document.body; b.tabIndex = -1; b.focus(); b.removeAttribute('tabindex');
                             window.scrollTo(0, 0); }""")
    seen: list[str] = []
    # A date input takes three stops (day, month, year); a file input one: allow for more presses
    # than controls, and stop once the focus comes round again.
    for _ in range(len(controls) * 3 + 5):
        page.keyboard.press("Tab")
        kb = page.evaluate("() => document.activeElement ? (document.activeElement.dataset.kb ?? '') : ''")
        if kb and (not seen or seen[-1] != kb):
            if seen and kb == "0":
                break
            seen.append(kb)
    missing = [controls[i] for i in range(len(controls)) if str(i) not in seen]
    assert not missing, f"not reachable with Tab on {page.url}: {missing}"
    assert seen[0] == "0", "the first Tab lands on the skip link"
    order = [int(k) for k in seen]
    assert order == sorted(order), f"Tab order follows the page on {page.url}: {order}"


def test_every_control_is_reachable_by_keyboard(visit: Visit, reconciled: int) -> None:
    v, page = visit, visit.page
    v.goto("/ui/signin")
    reachable(v)
    v.sign_in("operator", check=False)
    recon = f"/ui/reconciliations/{reconciled}"
    for path in ("/ui/reconciliations", recon, f"{recon}/run", f"{recon}/results?tab=suggested",
                 f"{recon}/results?tab=left", f"{recon}/link", f"{recon}/summary", f"{recon}/audit",
                 f"{recon}/upload/right"):
        v.goto(path)
        reachable(v)
    page.get_by_label("File to import").set_input_files(str(SAMPLES / "ledger_export.csv"))
    expect(page.locator("#preview-summary")).to_be_visible()
    reachable(v)
    v.goto(f"{recon}/results?tab=matched")
    page.locator("table.results a[data-open]").first.click()
    reachable(v)


def test_review_from_the_keyboard_alone(visit: Visit, reconciled: int) -> None:
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    v.goto(f"/ui/reconciliations/{reconciled}/results?tab=suggested")
    row = page.locator("table.results tbody tr[data-row]").first
    row_id = row.get_attribute("id")
    confirm = page.get_by_role("button", name=re.compile(r"^Confirm match \d+$")).first
    for _ in range(200):
        page.keyboard.press("Tab")
        if confirm.evaluate("e => e === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the first Confirm button")
    page.keyboard.press("Enter")
    expect(page.locator(f"#{row_id}")).to_contain_text("confirmed")
    # ? opens the list of shortcuts, Escape closes it.
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    v.check("shortcuts")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_hidden()
