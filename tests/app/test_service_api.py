"""HTTP API: authentication, roles, rate limits and bad input on every endpoint that takes input."""

from __future__ import annotations

import json

import psycopg
import pytest
from fastapi.testclient import TestClient

PDF = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"


@pytest.fixture()
def recon(app_client: TestClient, as_operator: dict[str, str]) -> int:
    r = app_client.post("/api/v1/reconciliations", json={"name": "api test"}, headers=as_operator)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


# -- auth ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, reason", [
    (None, "missing API token"),
    ("Basic dXNlcjpwYXNz", "missing API token"),
    ("Bearer rk_not-a-real-token", "unknown or revoked API token"),
], ids=["no-header", "basic-scheme", "unknown-token"])
def test_requests_without_a_valid_token_get_401(app_client: TestClient, header: str | None, reason: str) -> None:
    r = app_client.get("/api/v1/reconciliations", headers={"Authorization": header} if header else {})
    assert r.status_code == 401
    assert reason in r.json()["detail"]
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path, body", [
    ("post", "/api/v1/reconciliations", {"name": "x"}),
    ("post", "/api/v1/tokens", {"name": "x", "role": "viewer"}),
    ("post", "/api/v1/matches/1/confirm", None),
    ("post", "/api/v1/reconciliations/1/runs", None),
    ("delete", "/api/v1/reconciliations/1", None),
    ("get", "/api/v1/audit", None),
], ids=["create-recon", "create-token", "confirm", "run", "delete", "audit"])
def test_viewer_cannot_mutate(app_client: TestClient, as_viewer: dict[str, str], method: str, path: str,
                              body: dict | None) -> None:  # type: ignore[type-arg]
    r = app_client.request(method, path, json=body, headers=as_viewer)
    assert r.status_code == 403, r.text
    assert "role 'viewer' may not do this" in r.json()["detail"]


def test_operator_cannot_administer(app_client: TestClient, as_operator: dict[str, str]) -> None:
    r = app_client.post("/api/v1/tokens", json={"name": "x", "role": "admin"}, headers=as_operator)
    assert r.status_code == 403 and "needs 'admin'" in r.json()["detail"]


def test_whoami_reports_the_role(app_client: TestClient, as_viewer: dict[str, str]) -> None:
    assert app_client.get("/api/v1/whoami", headers=as_viewer).json()["role"] == "viewer"


def test_token_lifecycle_over_http_is_audited(app_client: TestClient, as_admin: dict[str, str],
                                              db: psycopg.Connection) -> None:
    r = app_client.post("/api/v1/tokens", json={"name": "temp", "role": "viewer"}, headers=as_admin)
    assert r.status_code == 201
    token, token_id = r.json()["token"], r.json()["id"]
    mine = {"Authorization": f"Bearer {token}"}
    assert app_client.get("/api/v1/whoami", headers=mine).status_code == 200
    assert token not in json.dumps(app_client.get("/api/v1/tokens", headers=as_admin).json())
    assert app_client.delete(f"/api/v1/tokens/{token_id}", headers=as_admin).status_code == 204
    assert app_client.get("/api/v1/whoami", headers=mine).status_code == 401  # cache entry dropped
    assert app_client.delete(f"/api/v1/tokens/{token_id}", headers=as_admin).status_code == 404
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log WHERE entity = 'api_token' AND entity_id = %s "
                                        "ORDER BY id", (str(token_id),))]
    assert actions == ["token.create", "token.revoke"]


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "role": "root"}, "body.role"),
    ({"name": "", "role": "viewer"}, "body.name"),
    ({"role": "viewer"}, "body.name"),
    ({"name": "x", "role": "viewer", "extra": 1}, "body.extra"),
], ids=["bad-role", "empty-name", "no-name", "extra-field"])
def test_create_token_rejects_bad_input(app_client: TestClient, as_admin: dict[str, str], body: dict,  # type: ignore[type-arg]
                                        field: str) -> None:
    r = app_client.post("/api/v1/tokens", json=body, headers=as_admin)
    assert r.status_code == 422
    assert field in [p["field"] for p in r.json()["problems"]]


def test_rate_limit_returns_429_with_retry_after(settings, dsn: str) -> None:  # type: ignore[no-untyped-def]
    from app import auth
    from app.web import create_app

    with psycopg.connect(dsn) as conn:
        _, token = auth.create_token(conn, name="limited", role="viewer")
        conn.commit()
    limited = settings.model_copy(update={"rate_limit_per_minute": 3})
    with TestClient(create_app(limited)) as client:
        codes = [client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code
                 for _ in range(5)]
        r = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert "rate limit of 3 requests per minute" in r.json()["detail"]


# -- reconciliations ----------------------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({}, "body.name"),
    ({"name": ""}, "body.name"),
    ({"name": "x" * 201}, "body.name"),
    ({"name": "x", "rules": {"rules": []}}, "body.rules"),
    ({"name": "x", "rules": {"rules": [{"kind": "telepathy"}]}}, "body.rules.rules.0"),
    ({"name": "x", "rules": {"tolerances": {"EURO": {"absolute_minor": 1}}}}, "body.rules.tolerances"),
    ({"name": "x", "colour": "red"}, "body.colour"),
], ids=["missing-name", "empty-name", "long-name", "no-rules", "unknown-rule-kind", "bad-currency", "extra"])
def test_create_reconciliation_rejects_bad_input(app_client: TestClient, as_operator: dict[str, str],
                                                 body: dict, field: str) -> None:  # type: ignore[type-arg]
    r = app_client.post("/api/v1/reconciliations", json=body, headers=as_operator)
    assert r.status_code == 422, r.text
    assert any(p["field"].startswith(field) for p in r.json()["problems"]), r.json()


def test_create_reconciliation_with_rules_is_audited(app_client: TestClient, as_operator: dict[str, str],
                                                     db: psycopg.Connection) -> None:
    rules = {"rules": [{"kind": "reference", "date_window_days": 5}], "tolerances": {"EUR": {"absolute_minor": 2}}}
    r = app_client.post("/api/v1/reconciliations", json={"name": "with rules", "rules": rules}, headers=as_operator)
    assert r.status_code == 201
    body = r.json()
    assert body["rules"]["rules"][0]["date_window_days"] == 5 and body["status"] == "draft"
    row = db.execute("SELECT actor, role, after->>'name', request_id FROM audit_log WHERE action = "
                     "'reconciliation.create' AND entity_id = %s", (str(body["id"]),)).fetchone()
    assert row[:3] == ("test-operator", "operator", "with rules") and row[3] == r.headers["X-Request-ID"]


@pytest.mark.parametrize("path", ["/api/v1/reconciliations/999999", "/api/v1/reconciliations/999999/imports",
                                  "/api/v1/runs/999999", "/api/v1/reconciliations/999999/matches",
                                  "/api/v1/imports/999999/file"],
                         ids=["recon", "imports", "run", "matches", "file"])
def test_missing_objects_are_404_naming_the_id(app_client: TestClient, as_viewer: dict[str, str], path: str) -> None:
    r = app_client.get(path, headers=as_viewer)
    assert r.status_code == 404 and "999999" in r.json()["detail"]


@pytest.mark.parametrize("query", ["limit=0", "limit=5000", "limit=abc", "before=x"])
def test_list_reconciliations_rejects_bad_paging(app_client: TestClient, as_viewer: dict[str, str], query: str) -> None:
    assert app_client.get(f"/api/v1/reconciliations?{query}", headers=as_viewer).status_code == 422


def test_delete_needs_admin_and_is_audited(app_client: TestClient, recon: int, as_admin: dict[str, str],
                                           db: psycopg.Connection) -> None:
    assert app_client.delete(f"/api/v1/reconciliations/{recon}", headers=as_admin).status_code == 204
    assert db.execute("SELECT count(*) FROM reconciliations WHERE id = %s", (recon,)).fetchone()[0] == 0
    before = db.execute("SELECT before->>'name' FROM audit_log WHERE action = 'reconciliation.delete' AND "
                        "entity_id = %s", (str(recon),)).fetchone()
    assert before == ("api test",)


# -- uploads: bad input -------------------------------------------------------------------------

def _upload(client: TestClient, recon: int, hdrs: dict[str, str], data: bytes, *, side: str | None = "left",
            filename: str = "bank.csv", options: str | None = None):  # type: ignore[no-untyped-def]
    form = {}
    if side is not None:
        form["side"] = side
    if options is not None:
        form["options"] = options
    return client.post(f"/api/v1/reconciliations/{recon}/imports", headers=hdrs, data=form,
                       files={"file": (filename, data, "application/octet-stream")})


def _count_imports(db: psycopg.Connection, recon: int) -> tuple[int, int]:
    return db.execute("SELECT (SELECT count(*) FROM imports WHERE reconciliation_id = %s), "
                      "(SELECT count(*) FROM records WHERE reconciliation_id = %s)", (recon, recon)).fetchone()


def test_upload_oversized_is_413_and_stores_nothing(app_client: TestClient, recon: int, as_operator: dict[str, str],
                                                    db: psycopg.Connection) -> None:
    r = _upload(app_client, recon, as_operator, b"a,b\n" * (600 * 1024))  # 2.4 MB > 2 MiB limit
    assert r.status_code == 413
    assert "exceeds the limit of 2097152 bytes" in r.json()["detail"]
    assert _count_imports(db, recon) == (0, 0)


@pytest.mark.parametrize("data, filename, detail", [
    (PDF, "statement.pdf", "a PDF document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old.xls", "legacy .xls"),
    (b"<?xml version='1.0'?><invoice/>", "x.xml", "neither camt.053 nor OFX"),
    (b"PK\x03\x04" + b"\x00" * 100, "archive.zip", "ZIP archive"),
], ids=["pdf", "xls", "xml", "zip"])
def test_upload_unknown_format_is_415(app_client: TestClient, recon: int, as_operator: dict[str, str],
                                      db: psycopg.Connection, data: bytes, filename: str, detail: str) -> None:
    r = _upload(app_client, recon, as_operator, data, filename=filename)
    assert r.status_code == 415, r.text
    assert detail in r.json()["detail"] and "supported formats are csv" in r.json()["detail"]
    assert _count_imports(db, recon) == (0, 0)


def test_upload_not_multipart_is_415(app_client: TestClient, recon: int, as_operator: dict[str, str]) -> None:
    r = app_client.post(f"/api/v1/reconciliations/{recon}/imports", headers=as_operator, json={"file": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]


@pytest.mark.parametrize("side, options, problems", [
    ("middle", None, {"side"}),
    (None, None, {"side"}),
    ("left", "{not json", {"options"}),
    ("left", json.dumps({"decimal": ";"}), {"options.decimal"}),
    ("left", json.dumps({"delimiter": ",", "decimal": ","}), {"options"}),
    ("left", json.dumps({"colour": "red"}), {"options.colour"}),
    ("up", json.dumps({"sign": "sideways"}), {"side", "options.sign"}),
], ids=["bad-side", "no-side", "options-not-json", "bad-decimal", "delimiter-is-decimal", "unknown-option",
        "two-problems"])
def test_upload_bad_form_is_422_listing_every_problem(app_client: TestClient, recon: int, as_operator: dict[str, str],
                                                      side: str | None, options: str | None,
                                                      problems: set[str]) -> None:
    r = _upload(app_client, recon, as_operator, b"date,amount\n2024-01-01,1.00\n", side=side, options=options)
    assert r.status_code == 422, r.text
    assert {p["field"] for p in r.json()["problems"]} == problems


def test_upload_without_file_is_422(app_client: TestClient, recon: int, as_operator: dict[str, str]) -> None:
    r = app_client.post(f"/api/v1/reconciliations/{recon}/imports", headers=as_operator,
                        data={"side": "left"}, files={"other": ("x", b"y")})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "file"


def test_upload_empty_file_is_422(app_client: TestClient, recon: int, as_operator: dict[str, str]) -> None:
    r = _upload(app_client, recon, as_operator, b"   \n")
    assert r.status_code == 422
    assert r.json()["problems"] == [{"line": None, "column": None, "reason": "the file is empty"}]


def test_upload_into_missing_reconciliation_is_404(app_client: TestClient, as_operator: dict[str, str]) -> None:
    assert _upload(app_client, 999999, as_operator, b"date,amount\n2024-01-01,1\n").status_code == 404


@pytest.mark.parametrize("body", [{"dry_run": "maybe"}, {"rules": {"rules": []}}, {"speed": 11}],
                         ids=["bad-dry-run", "empty-rules", "extra"])
def test_start_run_rejects_bad_input(app_client: TestClient, recon: int, as_operator: dict[str, str],
                                     body: dict) -> None:  # type: ignore[type-arg]
    assert app_client.post(f"/api/v1/reconciliations/{recon}/runs", json=body, headers=as_operator).status_code == 422


def test_start_run_without_both_sides_is_409(app_client: TestClient, recon: int, as_operator: dict[str, str]) -> None:
    r = app_client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator)
    assert r.status_code == 409 and "['left', 'right']" in r.json()["detail"]


def test_results_before_any_run_are_409(app_client: TestClient, recon: int, as_viewer: dict[str, str]) -> None:
    r = app_client.get(f"/api/v1/reconciliations/{recon}/matches", headers=as_viewer)
    assert r.status_code == 409 and "has no finished run yet" in r.json()["detail"]


@pytest.mark.parametrize("body", [{"note": "x" * 3000}, {"unknown": 1}], ids=["long-note", "extra"])
def test_review_rejects_bad_body(app_client: TestClient, as_operator: dict[str, str], body: dict) -> None:  # type: ignore[type-arg]
    assert app_client.post("/api/v1/matches/1/confirm", json=body, headers=as_operator).status_code == 422


def test_openapi_document_lists_the_api(app_client: TestClient) -> None:
    spec = app_client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Reconciliation service"
    for path in ("/api/v1/reconciliations/{recon_id}/imports", "/api/v1/runs/{run_id}",
                 "/api/v1/reconciliations/{recon_id}/export", "/api/v1/matches/{match_id}/confirm", "/ready"):
        assert path in spec["paths"]
    upload = spec["paths"]["/api/v1/reconciliations/{recon_id}/imports"]["post"]
    assert set(upload["responses"]) >= {"201", "409", "413", "415", "422"}


def test_unknown_tokens_are_throttled_per_client(settings) -> None:  # type: ignore[no-untyped-def]
    from app.web import create_app

    strict = settings.model_copy(update={"auth_failures_per_minute": 3})
    with TestClient(create_app(strict), client=("203.0.113.9", 5000)) as client:
        codes = [client.get("/api/v1/whoami", headers={"Authorization": f"Bearer rk_guess{i}"}).status_code
                 for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
