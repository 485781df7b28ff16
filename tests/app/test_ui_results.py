"""Result pages, review and exports through the UI, server side, against a real worker's run."""

from __future__ import annotations

import csv
import io
import random
import re

import httpx
import psycopg
import pytest

from tests.app.fix_ui import UI, create, upload, wait_for_run

pytest_plugins = ["tests.app.fix_ui"]

_ROW = re.compile(r'<tr data-row id="(match|record|disc)-(\d+)"')


def ids(page: httpx.Response) -> list[int]:
    assert page.status_code == 200, page.text[:2000]
    return [int(m.group(2)) for m in _ROW.finditer(page.text)]


def _next(page: httpx.Response, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page.text)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture(scope="module")
def big(operator_ui: UI, workers) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """260 x 250 generated records: enough for several pages on every tab."""
    workers.ensure()
    rng = random.Random(5)
    head = "date,reference,amount,currency,counterparty,description\n"
    left, right = [head], [head]
    def text(cents: int) -> str:
        return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"

    for i in range(260):
        cents = rng.randrange(100, 900_000) * rng.choice((1, -1))
        day = f"2026-0{rng.randrange(1, 4)}-{rng.randrange(1, 28):02d}"
        left.append(f"{day},R{i:04d},{text(cents)},EUR,Party {i % 17},Invoice {i}\n")
        if i % 13 == 0:
            continue  # unmatched left
        ref = f"R{i:04d}" if i % 5 else ""
        off = 50 if i % 11 == 0 else 0  # same reference, amount off: suggested, with a discrepancy
        right.append(f"{day},{ref},{text(cents + off)},EUR,Party {i % 17},Pay {i}\n")
    ui = operator_ui
    recon = create(ui, "UI paging")
    assert upload(ui, recon, "left", "".join(left).encode(), "l.csv").status_code == 303
    assert upload(ui, recon, "right", "".join(right).encode(), "r.csv").status_code == 303
    r = ui.post(f"/ui/reconciliations/{recon}/run", [("op", "reset")])
    form = r.text
    from tests.app.fix_ui import rule_form_fields

    r = ui.post(f"/ui/reconciliations/{recon}/run", [*rule_form_fields(form), ("op", "run")])
    assert r.status_code == 303, r.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    assert "succeeded" in wait_for_run(ui, run_id)
    return {"recon": recon, "run": run_id}


def _all(db: psycopg.Connection, sql: str, *params: object) -> list[int]:
    return [r[0] for r in db.execute(sql, params)]


@pytest.mark.parametrize(("tab", "sort", "direction"), [
    ("matched", "id", "asc"), ("matched", "amount", "desc"), ("matched", "score", "asc"), ("matched", "rule", "desc"),
    ("left", "date", "asc"), ("left", "amount", "desc"), ("right", "reference", "asc"),
    ("discrepancies", "field", "asc"),
], ids=lambda v: str(v))
def test_paging_walks_every_row_once_both_ways(operator_ui: UI, db: psycopg.Connection, big: dict[str, int],
                                               tab: str, sort: str, direction: str) -> None:
    base = f"/ui/reconciliations/{big['recon']}/results?tab={tab}&sort={sort}&dir={direction}&size=25"
    url: str | None = base
    pages: list[list[int]] = []
    while url:
        page = operator_ui.get(url)
        pages.append(ids(page))
        url = _next(page, "next")
    seen = [i for p in pages for i in p]
    expected = {
        "matched": lambda: _all(db, "SELECT id FROM matches WHERE run_id = %s AND status = 'confirmed'", big["run"]),
        "left": lambda: _all(db, "SELECT r.id FROM records r WHERE reconciliation_id = %s AND side = 'left' AND NOT "
                             "EXISTS (SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.active)",
                             big["recon"]),
        "right": lambda: _all(db, "SELECT r.id FROM records r WHERE reconciliation_id = %s AND side = 'right' AND NOT "
                              "EXISTS (SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.active)",
                              big["recon"]),
        "discrepancies": lambda: _all(db, "SELECT d.id FROM discrepancies d JOIN matches m ON m.id = d.match_id "
                                      "WHERE d.run_id = %s AND m.status IN ('suggested', 'confirmed')", big["run"]),
    }[tab]()
    assert len(seen) == len(set(seen)) == len(expected) and set(seen) == set(expected)
    assert len(pages) == max(1, -(-len(expected) // 25))
    # and back from the last page to the first
    last = operator_ui.get(base)
    while (following := _next(last, "next")):
        last = operator_ui.get(following)
    back = [ids(last)]
    while (prev := _next(last, "prev")):
        last = operator_ui.get(prev)
        back.append(ids(last))
    assert [i for p in reversed(back) for i in p] == seen


def test_filters_narrow_the_rows(operator_ui: UI, db: psycopg.Connection, big: dict[str, int]) -> None:
    recon, run = big["recon"], big["run"]
    base = f"/ui/reconciliations/{recon}/results"
    unmatched = "NOT EXISTS (SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.active)"
    got = ids(operator_ui.get(f"{base}?tab=left&amount_min=-100.00&amount_max=2500&size=200"))
    assert got == _all(db, f"SELECT id FROM records r WHERE reconciliation_id = %s AND side = 'left' AND {unmatched} "
                       "AND amount_minor BETWEEN -10000 AND 250000 ORDER BY id", recon)
    got = ids(operator_ui.get(f"{base}?tab=left&date_from=2026-02-01&date_to=2026-02-28&size=200"))
    assert got == _all(db, f"SELECT id FROM records r WHERE reconciliation_id = %s AND side = 'left' AND {unmatched} "
                       "AND booking_date BETWEEN '2026-02-01' AND '2026-02-28' ORDER BY id", recon)
    got = ids(operator_ui.get(f"{base}?tab=matched&q=party+3&size=200"))
    assert got and got == _all(db, "SELECT m.id FROM matches m WHERE m.run_id = %s AND m.status = 'confirmed' AND "
                               "EXISTS (SELECT 1 FROM match_items i JOIN records r ON r.id = i.record_id WHERE "
                               "i.match_id = m.id AND r.counterparty ILIKE '%%party 3%%') ORDER BY m.id", run)
    got = ids(operator_ui.get(f"{base}?tab=matched&rule=reference&size=200"))
    assert got == _all(db, "SELECT id FROM matches WHERE run_id = %s AND status = 'confirmed' AND rule = 'reference' "
                       "ORDER BY id", run)
    assert ids(operator_ui.get(f"{base}?tab=left&q=100%25&size=200")) == [], "% is literal text, not a wildcard"


@pytest.mark.parametrize(("query", "message"), [
    ("tab=nope", "tab &#39;nope&#39; does not exist"), ("tab=left&sort=score", "sort &#39;score&#39; is not offered"),
    ("tab=left&amount_min=ten", "is not a number"), ("tab=left&date_from=03/01/2026", "is not a date"),
    ("tab=left&amount_min=5&amount_max=1", "above the highest"), ("tab=left&after=garbage", "does not fit the sort"),
    ("tab=left&rule=reference", "unmatched records have no rule"), ("tab=left&size=7", "page size"),
], ids=["tab", "sort", "amount", "date", "range", "cursor", "rule-on-unmatched", "size"])
def test_bad_filters_are_explained(operator_ui: UI, big: dict[str, int], query: str, message: str) -> None:
    r = operator_ui.get(f"/ui/reconciliations/{big['recon']}/results?{query}")
    assert r.status_code == 422 and message in r.text


def test_results_before_any_run_say_so(operator_ui: UI) -> None:
    recon = create(operator_ui, "no run yet")
    page = operator_ui.get(f"/ui/reconciliations/{recon}/results")
    assert page.status_code == 200 and "There is no finished run yet" in page.text
    assert "There is no finished run yet" in operator_ui.get(f"/ui/reconciliations/{recon}/summary").text


def test_review_actions_write_the_audit_trail_with_the_ui_request(operator_ui: UI, db: psycopg.Connection,
                                                                   reconciled: dict[str, int]) -> None:
    suggested = _all(db, "SELECT id FROM matches WHERE run_id = %s AND status = 'suggested' ORDER BY id",
                     reconciled["run"])
    assert len(suggested) >= 3
    one, two = suggested[:2]
    row = operator_ui.post(f"/ui/matches/{one}/confirm", {"row": "1", "sel": "1", "note": "checked the invoice"},
                           htmx=True)
    assert row.status_code == 200 and row.text.lstrip().startswith(f'<tr data-row id="match-{one}"')
    assert "confirmed" in row.text and 'name="match_ids"' in row.text
    again = operator_ui.post(f"/ui/matches/{one}/confirm", {"row": "1"}, htmx=True)
    assert again.headers["hx-retarget"] == "#alerts" and "its status is &#39;confirmed&#39;" in again.text
    r = operator_ui.post(f"/ui/matches/{two}/reject", {"back": f"/ui/matches/{two}"})
    assert r.status_code == 303 and r.headers["location"] == f"/ui/matches/{two}"
    assert "Match " + str(two) + " is now rejected." in operator_ui.get(f"/ui/matches/{two}").text
    audit = db.execute("SELECT action, actor, role, request_id, after->>'note' FROM audit_log WHERE entity = 'match' "
                       "AND entity_id = ANY(%s) ORDER BY id", ([str(one), str(two)],)).fetchall()
    assert [(a[0], a[1], a[2], a[4]) for a in audit] == [
        ("match.confirm", "ui-operator", "operator", "checked the invoice"),
        ("match.reject", "ui-operator", "operator", None)]
    assert all(a[3] for a in audit), "every audit row carries the UI request's id"
    page = operator_ui.get(f"/ui/matches/{one}")
    assert "match.confirm" in page.text and "checked the invoice" in page.text
    trail = operator_ui.get(f"/ui/reconciliations/{reconciled['recon']}/audit").text
    assert "match.reject" in trail and "run.create" in trail and "import.create" in trail


def test_bulk_confirm_of_the_filtered_set(operator_ui: UI, db: psycopg.Connection, big: dict[str, int]) -> None:
    run = big["run"]
    before = _all(db, "SELECT id FROM matches WHERE run_id = %s AND status = 'suggested' ORDER BY id", run)
    assert before, "the generated data leaves suggestions"
    r = operator_ui.post(f"/ui/reconciliations/{big['recon']}/bulk-confirm",
                         {"scope": "filtered", "q": "Party 1", "note": "bulk"})
    assert r.status_code == 303 and "tab=suggested" in r.headers["location"] and "q=Party+1" in r.headers["location"]
    confirmed = set(_all(db, "SELECT entity_id::bigint FROM audit_log WHERE action = 'match.confirm' AND "
                         "after->>'note' = 'bulk'"))
    fitting = {m for m in before if db.execute(
        "SELECT 1 FROM match_items i JOIN records r ON r.id = i.record_id WHERE i.match_id = %s AND "
        "(r.counterparty ILIKE '%%Party 1%%' OR r.reference ILIKE '%%Party 1%%' OR r.description ILIKE '%%Party 1%%')",
        (m,)).fetchone()}
    assert confirmed == fitting
    assert "Confirmed" in operator_ui.get(r.headers["location"]).text


def test_bulk_confirm_of_selected_rows_skips_those_no_longer_suggested(operator_ui: UI, db: psycopg.Connection,
                                                                      big: dict[str, int]) -> None:
    run = big["run"]
    confirmed = _all(db, "SELECT id FROM matches WHERE run_id = %s AND status = 'confirmed' ORDER BY id LIMIT 1", run)
    suggested = _all(db, "SELECT id FROM matches WHERE run_id = %s AND status = 'suggested' ORDER BY id LIMIT 1", run)
    r = operator_ui.post(f"/ui/reconciliations/{big['recon']}/bulk-confirm",
                         [("scope", "selected"), *(("match_ids", str(i)) for i in confirmed + suggested)])
    assert r.status_code == 303
    page = operator_ui.get(r.headers["location"]).text
    assert f"Confirmed {len(suggested)} match" in page and f"1 skipped (no longer suggested): {confirmed[0]}" in page
    nothing = operator_ui.post(f"/ui/reconciliations/{big['recon']}/bulk-confirm", {"scope": "selected"})
    assert nothing.status_code == 422 and "select at least one match" in nothing.text


def test_link_by_hand_and_its_refusals(operator_ui: UI, db: psycopg.Connection, big: dict[str, int]) -> None:
    recon, run = big["recon"], big["run"]
    page = operator_ui.get(f"/ui/reconciliations/{recon}/link")
    assert page.status_code == 200 and 'name="left_ids"' in page.text and 'name="right_ids"' in page.text
    left = _all(db, "SELECT r.id FROM records r WHERE reconciliation_id = %s AND side = 'left' AND NOT EXISTS "
                "(SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.active) ORDER BY id LIMIT 1", recon)
    right = _all(db, "SELECT r.id FROM records r WHERE reconciliation_id = %s AND side = 'right' AND NOT EXISTS "
                 "(SELECT 1 FROM match_items mi WHERE mi.record_id = r.id AND mi.active) ORDER BY id LIMIT 1", recon)
    taken = _all(db, "SELECT record_id FROM match_items WHERE run_id = %s AND active AND side = 'right' LIMIT 1", run)
    busy = operator_ui.post(f"/ui/reconciliations/{recon}/link", [("left_ids", left[0]), ("right_ids", taken[0])])
    assert busy.status_code == 409 and "already in an active match" in busy.text and f"record {taken[0]}" in busy.text
    one_side = operator_ui.post(f"/ui/reconciliations/{recon}/link", [("left_ids", left[0])])
    assert one_side.status_code == 422 and "at least one record on each side" in one_side.text
    r = operator_ui.post(f"/ui/reconciliations/{recon}/link", [("left_ids", left[0]), ("right_ids", right[0]),
                                                                ("note", "same payment")])
    assert r.status_code == 303
    assert "(confirmed, manual)" in operator_ui.get(r.headers["location"]).text
    assert db.execute("SELECT origin, status FROM matches m JOIN match_items i ON i.match_id = m.id WHERE "
                      "i.record_id = %s AND i.active", (left[0],)).fetchone() == ("manual", "confirmed")


@pytest.mark.parametrize(("view", "fmt", "side"), [
    ("matches", "csv", None), ("matches", "xlsx", None), ("unmatched", "csv", "left"), ("unmatched", "xlsx", "right"),
    ("discrepancies", "csv", None), ("discrepancies", "xlsx", None),
], ids=lambda v: str(v))
def test_every_export_button_downloads(operator_ui: UI, viewer_ui: UI, reconciled: dict[str, int], view: str,
                                       fmt: str, side: str | None) -> None:
    page = viewer_ui.get(f"/ui/reconciliations/{reconciled['recon']}/results").text
    href = f"/ui/reconciliations/{reconciled['recon']}/export?view={view}&amp;format={fmt}"
    href += f"&amp;side={side}" if side else ""
    assert f'href="{href}"' in page, "the button is on the page, for viewers too"
    r = viewer_ui.get(href.replace("&amp;", "&"))
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(r.text)))
        assert len(rows) >= 2
    else:
        assert r.content[:2] == b"PK"


def test_summary_shows_counts_rules_and_the_chart(operator_ui: UI, reconciled: dict[str, int]) -> None:
    page = operator_ui.get(f"/ui/reconciliations/{reconciled['recon']}/summary").text
    assert 'id="match-rate"' in page and "%" in page
    for rule in ("reference", "group", "amount_date"):
        assert f'<th scope="row">{rule}</th>' in page
    assert page.count("<rect ") >= 10 and 'class="bar-matched"' in page and 'class="bar-unmatched"' in page
    assert "Matched and unmatched amounts by day (EUR, 2026-03-01 to 2026-03-13)" in page


def test_the_run_page_polls_until_the_run_is_done(operator_ui: UI, reconciled: dict[str, int]) -> None:
    page = operator_ui.get(f"/ui/runs/{reconciled['run']}").text
    assert 'hx-trigger="load delay:1s"' not in page, "a finished run's page does not poll"
    assert "Review the results" in page
    fragment = operator_ui.get(f"/ui/runs/{reconciled['run']}/progress", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<section id="run-progress"')
    assert operator_ui.get(f"/ui/runs/{reconciled['run']}/progress").status_code == 303


def test_run_form_refusals(operator_ui: UI) -> None:
    recon = create(operator_ui, "run refusals")
    r = operator_ui.post(f"/ui/reconciliations/{recon}/run", [("r0_kind", "reference"), ("op", "run")])
    assert r.status_code == 409 and "upload both sides before running" in r.text
    added = operator_ui.post(f"/ui/reconciliations/{recon}/run", [("r0_kind", "reference"), ("op", "add"),
                                                                   ("add_kind", "fuzzy")])
    assert added.status_code == 200 and 'name="r1_kind" value="fuzzy"' in added.text
    bad = operator_ui.post(f"/ui/reconciliations/{recon}/run", [("r0_kind", "nope"), ("op", "run")])
    assert bad.status_code == 422 and "kind &#39;nope&#39; is not one of" in bad.text
