"""End to end through the API with a real worker: upload, run, results, review, export, audit."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import ROOT

LEFT = b"""date,reference,amount,currency,counterparty,description
2026-03-02,INV-1,100.00,EUR,Acme,Invoice one
2026-03-03,INV-2,250.50,EUR,Beta,Invoice two
2026-03-04,,-75.25,EUR,Gamma,Card payment
2026-03-10,,42.00,EUR,Delta Widgets Ltd,Widget order 7
2026-03-20,GRP-9,300.00,EUR,Epsilon,Batch
2026-03-21,,999.99,EUR,Zeta,Unmatched left
"""
RIGHT = b"""date,reference,amount,currency,counterparty,description
2026-03-02,INV-1,100.00,EUR,Acme,Invoice one
2026-03-04,INV-2,250.50,EUR,Beta,Invoice two
2026-03-04,,-75.25,EUR,Gamma,Card payment
2026-03-15,,42.01,EUR,Delta Widgets Ltd,Widget order 7
2026-03-20,GRP-9,100.00,EUR,Epsilon,Batch part 1
2026-03-20,GRP-9,200.00,EUR,Epsilon,Batch part 2
2026-03-25,,11.11,EUR,Eta,Unmatched right
"""


def upload(client: TestClient, recon: int, hdrs: dict[str, str], side: str, data: bytes, name: str):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/reconciliations/{recon}/imports", headers=hdrs, data={"side": side},
                       files={"file": (name, data, "text/csv")})


@pytest.fixture(scope="module")
def reconciled(app_client: TestClient, as_operator: dict[str, str], workers) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """A reconciliation of LEFT vs RIGHT, run once by a worker process."""
    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": "flow"}, headers=as_operator).json()["id"]
    imports = [upload(app_client, recon, as_operator, "left", LEFT, "bank.csv"),
               upload(app_client, recon, as_operator, "right", RIGHT, "ledger.csv")]
    assert [r.status_code for r in imports] == [201, 201], [r.text for r in imports]
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator)
    assert run.status_code == 202, run.text
    return {"recon": recon, "run": run.json(), "imports": [r.json() for r in imports]}


def matches(client: TestClient, recon: int, hdrs: dict[str, str], **params: object) -> list[dict]:  # type: ignore[type-arg]
    r = client.get(f"/api/v1/reconciliations/{recon}/matches", headers=hdrs, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]  # type: ignore[no-any-return]


def test_upload_stores_bytes_and_records_in_postgres(reconciled: dict, db: psycopg.Connection) -> None:  # type: ignore[type-arg]
    left = reconciled["imports"][0]
    assert left["record_count"] == 6 and left["format"] == "csv" and left["side"] == "left"
    data, = db.execute("SELECT data FROM imports WHERE id = %s", (left["id"],)).fetchone()
    assert bytes(data) == LEFT
    rows = db.execute("SELECT reference, amount_minor, currency, booking_date::text, line FROM records "
                      "WHERE import_id = %s ORDER BY line", (left["id"],)).fetchall()
    assert rows[0] == ("INV-1", 10000, "EUR", "2026-03-02", 2)
    assert rows[2][1] == -7525


def test_duplicate_upload_is_409_with_the_existing_import(app_client: TestClient, reconciled: dict,  # type: ignore[type-arg]
                                                          as_operator: dict[str, str], db: psycopg.Connection) -> None:
    before = db.execute("SELECT count(*) FROM records WHERE reconciliation_id = %s", (reconciled["recon"],)).fetchone()
    r = upload(app_client, reconciled["recon"], as_operator, "right", LEFT, "renamed.csv")
    assert r.status_code == 409
    assert r.json()["existing_import"]["id"] == reconciled["imports"][0]["id"]
    assert "renamed.csv" in r.json()["detail"] and "bank.csv" in r.json()["detail"]
    after = db.execute("SELECT count(*) FROM records WHERE reconciliation_id = %s", (reconciled["recon"],)).fetchone()
    assert before == after


def test_original_file_can_be_downloaded(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str]) -> None:  # type: ignore[type-arg]
    r = app_client.get(f"/api/v1/imports/{reconciled['imports'][1]['id']}/file", headers=as_viewer)
    assert r.status_code == 200 and r.content == RIGHT


def test_run_reports_progress_and_summary(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str],  # type: ignore[type-arg]
                                          wait_run) -> None:  # type: ignore[no-untyped-def]
    done = wait_run(app_client, reconciled["run"]["id"], as_viewer)
    assert done["status"] == "succeeded", done
    assert done["progress"]["processed"] == done["progress"]["total"] == 13
    s = app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/summary", headers=as_viewer).json()
    assert s["counts"] == {"confirmed_left": 4, "confirmed_right": 5, "suggested_left": 1, "suggested_right": 1,
                           "unmatched_left": 1, "unmatched_right": 1}
    unmatched_left = [a for a in s["amounts"] if a["status"] == "unmatched" and a["side"] == "left"]
    assert unmatched_left == [{"side": "left", "currency": "EUR", "status": "unmatched", "count": 1,
                               "amount_minor": 99999, "amount": "999.99"}]
    assert s["discrepancies"].get("booking_date", 0) >= 1


def test_matches_carry_rule_records_and_discrepancies(app_client: TestClient, reconciled: dict,  # type: ignore[type-arg]
                                                      as_viewer: dict[str, str], wait_run) -> None:  # type: ignore[no-untyped-def]
    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    items = matches(app_client, reconciled["recon"], as_viewer)
    by_ref = {(m["left"][0]["reference"] or m["left"][0]["counterparty"]): m for m in items}
    assert by_ref["INV-1"]["rule"] == "reference" and by_ref["INV-1"]["status"] == "confirmed"
    inv2 = by_ref["INV-2"]
    assert inv2["date_delta_days"] == 1
    assert {"field": "booking_date", "left": "2026-03-03", "right": "2026-03-04", "delta": "1"} in inv2["discrepancies"]
    group = by_ref["GRP-9"]
    assert group["kind"] == "group" and len(group["right"]) == 2
    assert (group["left_amount"], group["right_amount"]) == ("300.00", "300.00")
    fuzzy = by_ref["Delta Widgets Ltd"]
    assert fuzzy["status"] == "suggested" and fuzzy["amount_delta_minor"] == 1
    assert fuzzy["right"][0]["amount"] == "42.01"


@pytest.mark.parametrize("params, expected", [
    ({"status": "suggested"}, 1),
    ({"status": "confirmed"}, 4),
    ({"kind": "group"}, 1),
    ({"rule": "reference"}, 2),
    ({"q": "widget"}, 1),
    ({"currency": "USD"}, 0),
], ids=["suggested", "confirmed", "groups", "rule", "search", "currency"])
def test_match_filters(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str], wait_run,  # type: ignore[no-untyped-def, type-arg]
                       params: dict, expected: int) -> None:  # type: ignore[type-arg]
    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    assert len(matches(app_client, reconciled["recon"], as_viewer, **params)) == expected


def test_pagination_covers_every_match_once(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str],  # type: ignore[type-arg]
                                            wait_run) -> None:  # type: ignore[no-untyped-def]
    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    seen, after = [], 0
    while after is not None:
        page = app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/matches", headers=as_viewer,
                              params={"limit": 2, "after": after}).json()
        seen += [m["id"] for m in page["items"]]
        after = page["next_after"]
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("query", ["status=maybe", "kind=triple", "limit=0", "limit=1001", "after=-1", "q=" + "x" * 201],
                         ids=["status", "kind", "limit-low", "limit-high", "after", "long-q"])
def test_match_listing_rejects_bad_queries(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str],  # type: ignore[type-arg]
                                           query: str) -> None:
    assert app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/matches?{query}",
                          headers=as_viewer).status_code == 422


@pytest.mark.parametrize("query", ["side=middle", "date_from=yesterday", "date_from=2026-03-05&date_to=2026-03-01",
                                   "min_amount_minor=1.5"], ids=["side", "date", "date-order", "amount"])
def test_unmatched_listing_rejects_bad_queries(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str],  # type: ignore[type-arg]
                                               wait_run, query: str) -> None:  # type: ignore[no-untyped-def]
    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    assert app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/unmatched?{query}",
                          headers=as_viewer).status_code == 422


def test_unmatched_per_side(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str], wait_run) -> None:  # type: ignore[no-untyped-def, type-arg]
    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    url = f"/api/v1/reconciliations/{reconciled['recon']}/unmatched"
    left = app_client.get(url, headers=as_viewer, params={"side": "left"}).json()["items"]
    assert [(r["counterparty"], r["amount"]) for r in left] == [("Zeta", "999.99")]
    assert app_client.get(url, headers=as_viewer, params={"side": "right", "min_amount_minor": 2000}).json()["items"] == []


@pytest.mark.parametrize("view, rows", [("matches", 11), ("unmatched", 2), ("discrepancies", None)])
def test_csv_export(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str], wait_run,  # type: ignore[no-untyped-def, type-arg]
                    view: str, rows: int | None) -> None:
    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    r = app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/export", headers=as_viewer,
                       params={"view": view, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f"-{view}.csv" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    if rows is not None:
        assert len(table) == rows
    if view == "unmatched":
        assert {(t["side"], t["amount"], t["amount_minor"]) for t in table} == {("left", "999.99", "99999"),
                                                                              ("right", "11.11", "1111")}


def test_xlsx_export(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str], wait_run) -> None:  # type: ignore[no-untyped-def, type-arg]
    from openpyxl import load_workbook

    wait_run(app_client, reconciled["run"]["id"], as_viewer)
    r = app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/export", headers=as_viewer,
                       params={"view": "matches", "format": "xlsx"})
    assert r.status_code == 200
    ws = load_workbook(io.BytesIO(r.content), read_only=True)["matches"]
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:3] == ("match_id", "status", "kind") and len(rows) == 12


@pytest.mark.parametrize("query", ["view=everything", "format=pdf", "side=up"])
def test_export_rejects_bad_queries(app_client: TestClient, reconciled: dict, as_viewer: dict[str, str],  # type: ignore[type-arg]
                                    query: str) -> None:
    assert app_client.get(f"/api/v1/reconciliations/{reconciled['recon']}/export?{query}",
                          headers=as_viewer).status_code == 422


def test_review_actions_are_audited_and_survive_a_rerun(app_client: TestClient, reconciled: dict,  # type: ignore[no-untyped-def, type-arg]
                                                         as_operator: dict[str, str], db: psycopg.Connection,
                                                         wait_run) -> None:
    recon = reconciled["recon"]
    wait_run(app_client, reconciled["run"]["id"], as_operator)
    suggested = matches(app_client, recon, as_operator, status="suggested")[0]
    r = app_client.post(f"/api/v1/matches/{suggested['id']}/confirm", json={"note": "checked invoice"},
                        headers=as_operator)
    assert r.status_code == 200 and r.json()["status"] == "confirmed" and r.json()["reviewed_by"] == "test-operator"
    again = app_client.post(f"/api/v1/matches/{suggested['id']}/confirm", headers=as_operator)
    assert again.status_code == 409 and "its status is 'confirmed'" in again.json()["detail"]
    assert app_client.post(f"/api/v1/matches/{suggested['id']}/reject", headers=as_operator).status_code == 409

    inv1 = [m for m in matches(app_client, recon, as_operator, rule="reference") if m["left"][0]["reference"] == "INV-1"][0]
    assert app_client.post(f"/api/v1/matches/{inv1['id']}/unlink", headers=as_operator).json()["status"] == "unlinked"
    unmatched = app_client.get(f"/api/v1/reconciliations/{recon}/unmatched", headers=as_operator).json()["items"]
    assert {r["reference"] for r in unmatched} >= {"INV-1"}

    zeta = [r for r in unmatched if r["counterparty"] == "Zeta"][0]
    eta = [r for r in unmatched if r["counterparty"] == "Eta"][0]
    link = app_client.post(f"/api/v1/reconciliations/{recon}/links", headers=as_operator,
                           json={"left_ids": [zeta["id"]], "right_ids": [eta["id"]], "note": "agreed by phone"})
    assert link.status_code == 201, link.text
    assert link.json()["amount_delta_minor"] == 1111 - 99999
    dup = app_client.post(f"/api/v1/reconciliations/{recon}/links", headers=as_operator,
                          json={"left_ids": [zeta["id"]], "right_ids": [eta["id"]]})
    reasons = [p if isinstance(p, str) else p["reason"] for p in dup.json()["problems"]]  # text or {reason, ...}
    assert dup.status_code == 409 and f"record {zeta['id']} is in match {link.json()['id']}" in reasons

    trail = db.execute("SELECT action, actor, before->>'status', after->>'status', after->>'note' FROM audit_log "
                       "WHERE entity = 'match' AND entity_id = ANY(%s) ORDER BY id",
                       ([str(suggested["id"]), str(inv1["id"]), str(link.json()["id"])],)).fetchall()
    assert trail == [("match.confirm", "test-operator", "suggested", "confirmed", "checked invoice"),
                     ("match.unlink", "test-operator", "confirmed", "unlinked", None),
                     ("match.link", "test-operator", None, "confirmed", "agreed by phone")]

    summary = app_client.get(f"/api/v1/reconciliations/{recon}/summary", headers=as_operator).json()
    assert summary["counts"]["unmatched_left"] == 1 and summary["counts"]["suggested_left"] == 0

    rerun = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, rerun["id"], as_operator)["status"] == "succeeded"
    after = matches(app_client, recon, as_operator)
    manual = [m for m in after if m["origin"] == "manual"]
    assert len(manual) == 1 and manual[0]["left"][0]["id"] == zeta["id"]  # people's decisions carried over
    confirmed_fuzzy = [m for m in after if m["right"][0]["amount"] == "42.01"]
    assert confirmed_fuzzy[0]["status"] == "confirmed" and confirmed_fuzzy[0]["reviewed_by"] == "test-operator"
    # the old run's match cannot be reviewed any more
    stale = app_client.post(f"/api/v1/matches/{suggested['id']}/unlink", headers=as_operator)
    assert stale.status_code == 409 and "not the current run" in stale.json()["detail"]


@pytest.mark.parametrize("body, status, text", [
    ({"left_ids": [], "right_ids": [1]}, 422, None),
    ({"left_ids": [1, 2], "right_ids": [3, 4]}, 422, "one-to-one, one-to-many or many-to-one"),
    ({"left_ids": [999999999], "right_ids": [999999998]}, 422, "record 999999998 is not a right record"),
    ({"left_ids": ["x"], "right_ids": [1]}, 422, None),
], ids=["empty-side", "many-to-many", "unknown-records", "not-int"])
def test_link_rejects_bad_input(app_client: TestClient, reconciled: dict, as_operator: dict[str, str], wait_run,  # type: ignore[no-untyped-def, type-arg]
                                body: dict, status: int, text: str | None) -> None:  # type: ignore[type-arg]
    wait_run(app_client, reconciled["run"]["id"], as_operator)
    r = app_client.post(f"/api/v1/reconciliations/{reconciled['recon']}/links", headers=as_operator, json=body)
    assert r.status_code == status, r.text
    if text:
        assert text in r.text


def test_dry_run_stores_summary_but_no_matches(app_client: TestClient, as_operator: dict[str, str], workers,  # type: ignore[no-untyped-def]
                                               db: psycopg.Connection, wait_run) -> None:
    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": "dry"}, headers=as_operator).json()["id"]
    upload(app_client, recon, as_operator, "left", LEFT, "l.csv")
    upload(app_client, recon, as_operator, "right", RIGHT, "r.csv")
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", json={"dry_run": True}, headers=as_operator).json()
    done = wait_run(app_client, run["id"], as_operator)
    assert done["status"] == "succeeded" and done["dry_run"] is True
    assert done["summary"]["counts"]["unmatched_left"] == 1
    assert db.execute("SELECT count(*) FROM matches WHERE run_id = %s", (run["id"],)).fetchone() == (0,)
    assert db.execute("SELECT current_run_id, status FROM reconciliations WHERE id = %s", (recon,)).fetchone() == \
        (None, "draft")


def test_malformed_csv_is_422_with_every_problem_and_nothing_stored(app_client: TestClient, as_operator: dict[str, str],
                                                                     db: psycopg.Connection) -> None:
    recon = app_client.post("/api/v1/reconciliations", json={"name": "bad"}, headers=as_operator).json()["id"]
    bad = (b"date,reference,amount,currency\n2026-03-01,A,1.00,EUR\n2026-03-02,B,one euro,EUR\n"
           b"2026-03-03,C,2.00,EUR\n2026-13-45,D,3.00,EUR\n")
    r = upload(app_client, recon, as_operator, "left", bad, "bad.csv")
    assert r.status_code == 422, r.text
    lines = sorted({p["line"] for p in r.json()["problems"]})
    assert lines == [3, 5]
    assert all(p["reason"] for p in r.json()["problems"])
    assert db.execute("SELECT count(*) FROM imports WHERE reconciliation_id = %s", (recon,)).fetchone() == (0,)


def test_money_is_exact_beyond_float_precision(app_client: TestClient, as_operator: dict[str, str],
                                               db: psycopg.Connection) -> None:
    recon = app_client.post("/api/v1/reconciliations", json={"name": "big money"}, headers=as_operator).json()["id"]
    data = b"date,reference,amount,currency\n2026-03-01,A,90071992547409.93,EUR\n2026-03-01,B,0.10,EUR\n"
    r = upload(app_client, recon, as_operator, "left", data, "big.csv")
    assert r.status_code == 201, r.text
    got = [x for (x,) in db.execute("SELECT amount_minor FROM records WHERE reconciliation_id = %s ORDER BY line",
                                    (recon,))]
    assert got == [9007199254740993, 10]  # 2**53 + 1: not representable as a float


def test_demo_command_against_a_real_server(server: str, tokens: dict[str, str], workers, service_env) -> None:  # type: ignore[no-untyped-def]
    workers.ensure()
    res = subprocess.run([sys.executable, "-m", "app", "demo", "--base-url", server, "--token", tokens["operator"],
                          "--timeout", "60"], cwd=ROOT, env=service_env, capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr
    assert "succeeded" in res.stdout and "match rate" in res.stdout
    assert "left     10 records" not in res.stdout  # format sanity: counts are printed per side below
    assert "bank_statement.csv: 10 records (csv)" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--base-url", "ftp://x"], "must start with http:// or https://"),
    (["--base-url", "http://127.0.0.1:9", "--token", "t", "--cacert", "/nonexistent.pem"], "does not exist"),
    (["--base-url", "http://127.0.0.1:9", "--token", "t"], "cannot reach http://127.0.0.1:9"),
], ids=["scheme", "cacert", "unreachable"])
def test_demo_rejects_bad_arguments(service_env, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    env = {**service_env, "RECON_TOKEN": "rk_x"}
    res = subprocess.run([sys.executable, "-m", "app", "demo", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1 and message in res.stderr, res.stderr


def test_delete_removes_every_row_of_a_reconciled_reconciliation(app_client: TestClient, as_operator: dict[str, str],
                                                                  as_admin: dict[str, str], workers, wait_run,  # type: ignore[no-untyped-def]
                                                                  db: psycopg.Connection) -> None:
    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": "to delete"}, headers=as_operator).json()["id"]
    upload(app_client, recon, as_operator, "left", LEFT, "l.csv")
    upload(app_client, recon, as_operator, "right", RIGHT, "r.csv")
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
    assert app_client.delete(f"/api/v1/reconciliations/{recon}", headers=as_admin).status_code == 204
    left = db.execute(
        "SELECT (SELECT count(*) FROM records WHERE reconciliation_id = %(r)s), "
        "(SELECT count(*) FROM matches WHERE reconciliation_id = %(r)s), "
        "(SELECT count(*) FROM match_items WHERE run_id = %(run)s), "
        "(SELECT count(*) FROM discrepancies WHERE run_id = %(run)s), "
        "(SELECT count(*) FROM imports WHERE reconciliation_id = %(r)s)", {"r": recon, "run": run["id"]}).fetchone()
    assert left == (0, 0, 0, 0, 0)


def test_exports_defuse_spreadsheet_formulas(app_client: TestClient, as_operator: dict[str, str], workers,  # type: ignore[no-untyped-def]
                                             wait_run) -> None:
    from openpyxl import load_workbook

    workers.ensure()
    recon = app_client.post("/api/v1/reconciliations", json={"name": "csv injection"}, headers=as_operator).json()["id"]
    evil = (b"date,reference,amount,currency,counterparty,description\n"
            b"2026-03-01,,-5.00,EUR,\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",@SUM(A1)\n")
    upload(app_client, recon, as_operator, "left", evil, "evil.csv")
    upload(app_client, recon, as_operator, "right", RIGHT, "r.csv")
    run = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator).json()
    assert wait_run(app_client, run["id"], as_operator)["status"] == "succeeded"
    url = f"/api/v1/reconciliations/{recon}/export"
    rows = list(csv.DictReader(io.StringIO(app_client.get(url, headers=as_operator,
                                                          params={"view": "unmatched", "side": "left"}).text)))
    assert rows[0]["counterparty"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert rows[0]["description"] == "'@SUM(A1)" and rows[0]["amount"] == "-5.00"
    book = app_client.get(url, headers=as_operator, params={"view": "unmatched", "side": "left", "format": "xlsx"})
    cells = list(load_workbook(io.BytesIO(book.content))["unmatched"].iter_rows(min_row=2, values_only=True))[0]
    assert "'=HYPERLINK(\"http://evil\",\"x\")" in cells and "'@SUM(A1)" in cells


def test_demo_rejects_a_cacert_that_is_not_pem(service_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.demo import DemoError, run_demo

    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(DemoError, match="is not a usable PEM CA bundle"):
        run_demo("https://127.0.0.1:9", token="rk_x", cacert=str(bad))
