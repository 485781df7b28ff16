"""The browser's side of the UI's security: the session cookie's flags, CSRF refused, hostile
names and memo fields rendered inert, the CSP header on every response, no inline script."""

from __future__ import annotations

import re

import psycopg
from playwright.sync_api import expect

from tests.browser.conftest import Visit, run_via_api, upload_via_api

HOSTILE_NAME = '<script>window.__xss = "name"</script><img src=x onerror="window.__xss = \'img\'">'
HOSTILE_CSV = (b"date,reference,amount,currency,counterparty,description\n"
               b'2026-03-02,"<b>REF</b>",10.00,EUR,"<img src=x onerror=window.__xss=1>",'
               b'"""><svg onload=window.__xss=2>"\n'
               b'2026-03-03,javascript:alert(1),20.00,EUR,"<script>window.__xss=3</script>","{{7*7}} ${7*7}"\n')
HOSTILE_CSV_RIGHT = (b"date,reference,amount,currency,counterparty,description\n"
                     b'2026-03-02,"<b>REF</b>",10.00,EUR,"<img src=x onerror=window.__xss=4>","<iframe src=/ui/>"\n'
                     b"2026-03-09,X,99.00,EUR,\"<a href='javascript:alert(1)'>click</a>\",memo\n")


def test_session_cookie_flags_and_csp(visit: Visit) -> None:
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["__Host-recon-ui"]
    assert session["httpOnly"] is True
    assert session["secure"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/"
    assert not session["domain"].startswith("."), "a __Host- cookie is host-only"
    assert session["expires"] == -1, "a session cookie: gone when the browser closes"
    assert "recon-ui" not in page.evaluate("document.cookie"), "HttpOnly: scripts cannot read the session"
    response = v.goto("/ui/reconciliations")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    # No inline script or style anywhere in the page (the CSP would refuse it anyway).
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("style").count() == 0
    assert page.locator("[style]").count() == 0


def test_csrf_is_refused_without_the_token(visit: Visit) -> None:
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    token = page.locator('input[name="csrf"]').first.get_attribute("value")
    # The browser's own cookie jar, no token: refused.
    refused = page.request.post("/ui/reconciliations", form={"name": "csrf: no token"})
    assert refused.status == 403
    assert "CSRF" in refused.text()
    wrong = page.request.post("/ui/reconciliations", form={"name": "csrf: wrong token", "csrf": "x" * 43})
    assert wrong.status == 403
    # A cross-site request is refused even with the right token.
    cross = page.request.post("/ui/reconciliations", form={"name": "csrf: cross-site", "csrf": token},
                              headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    # fetch() from the page itself without the header or field: refused too.
    status = page.evaluate("""async () => (await fetch('/ui/reconciliations', {method: 'POST',
        body: new URLSearchParams({name: 'csrf: fetch'})})).status""")
    assert status == 403
    ok = page.request.post("/ui/reconciliations", form={"name": "csrf: with token", "csrf": token}, max_redirects=0)
    assert ok.status == 303
    with psycopg.connect(v.service.dsn) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM reconciliations WHERE name LIKE 'csrf:%'")}
    assert names == {"csrf: with token"}
    # Sign-in has no session yet: its form needs the double-submit cookie's value.
    anonymous = page.context.browser.new_context(ignore_https_errors=True, base_url=v.service.base)
    try:
        forged = anonymous.request.post("/ui/signin", form={"token": v.service.tokens["operator"], "csrf": "forged"})
        assert forged.status == 403
        assert not [c for c in anonymous.cookies() if c["name"] == "__Host-recon-ui"]
    finally:
        anonymous.close()


def test_hostile_names_and_memo_fields_stay_text(visit: Visit, tmp_path) -> None:  # type: ignore[no-untyped-def]
    v, page = visit, visit.page
    v.sign_in("operator", check=False)
    page.get_by_label("New reconciliation").fill(HOSTILE_NAME)
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"/ui/reconciliations/\d+$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(HOSTILE_NAME)

    # The preview shows a hostile file's cells as text.
    hostile = tmp_path / "hostile.csv"
    hostile.write_bytes(HOSTILE_CSV)
    page.get_by_role("link", name="Upload the left side").click()
    page.get_by_label("File to import").set_input_files(str(hostile))
    expect(page.get_by_role("table", name="The file's first rows as read")).to_contain_text(
        "<img src=x onerror=window.__xss=1>")
    v.check("xss-preview")

    recon = upload_via_api(v.service, HOSTILE_NAME + " (api)", HOSTILE_CSV, HOSTILE_CSV_RIGHT)
    assert run_via_api(v.service, recon)["status"] == "succeeded"
    pages = ["/ui/reconciliations", f"/ui/reconciliations/{recon}", f"/ui/reconciliations/{recon}/summary",
             f"/ui/reconciliations/{recon}/audit", f"/ui/reconciliations/{recon}/link"]
    pages += [f"/ui/reconciliations/{recon}/results?tab={t}" for t in ("matched", "suggested", "left", "right")]
    for path in pages:
        v.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__xss") is None, f"script ran on {path}"
        for selector in ('img[src="x"]', "svg[onload]", "iframe", "main script", "a[href^='javascript:']", "main b"):
            assert page.locator(selector).count() == 0, f"{selector} became markup on {path}"
    v.goto(f"/ui/reconciliations/{recon}/results?tab=matched")
    expect(page.locator("table.results")).to_contain_text("<img src=x onerror=window.__xss=1>")
    v.check("xss-results")
    page.locator("table.results a[data-open]").first.click()
    expect(page.get_by_role("table", name=re.compile("Both sides"))).to_contain_text("<iframe src=/ui/>")
    assert page.evaluate("window.__xss") is None
    v.check("xss-match")
