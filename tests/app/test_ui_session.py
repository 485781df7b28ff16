"""Sign-in, sessions and the UI's defences, server side: cookie flags, CSRF, expiry, revocation,
roles on every route, security headers, health and static files."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app import auth
from app.settings import Settings
from tests.app.fix_ui import UI, create, csrf_of

pytest_plugins = ["tests.app.fix_ui"]


def test_health_answers_without_a_session(ui_app: FastAPI) -> None:
    r = UI(ui_app).get("/ui/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["service"] == "ui" and r.json()["missing"] == []


def test_static_files_are_served_from_the_list_only(ui_app: FastAPI) -> None:
    ui = UI(ui_app)
    css = ui.get("/ui/static/ui.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "immutable" in css.headers["cache-control"]
    assert ui.get("/ui/static/ui.css", headers={"If-None-Match": css.headers["etag"]}).status_code == 304
    for path in ("/ui/static/../assets.py", "/ui/static/%2e%2e/assets.py", "/ui/static/nothing.js"):
        assert ui.get(path).status_code == 404, path


def test_pages_need_a_session_and_come_back_after_sign_in(ui_app: FastAPI, ui_tokens: dict[str, str]) -> None:
    ui = UI(ui_app)
    r = ui.get("/ui/reconciliations?q=x")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/signin?reason=signin&next=/ui/reconciliations%3Fq%3Dx"
    htmx = ui.get("/ui/reconciliations", headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and htmx.headers["hx-redirect"].startswith("/ui/signin?reason=signin")
    form = ui.get("/ui/signin?next=/ui/reconciliations%3Fq%3Dx")
    r = ui.client.post("/ui/signin", data={"token": ui_tokens["viewer"], "csrf": csrf_of(form.text),
                                           "next": "/ui/reconciliations?q=x"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/reconciliations?q=x"
    page = ui.get("/ui/reconciliations")
    assert "Signed in as ui-viewer" in page.text


def test_session_cookie_flags(ui_app: FastAPI, ui_tokens: dict[str, str]) -> None:
    r = UI(ui_app).sign_in(ui_tokens["viewer"])
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("__Host-recon-ui="))
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= flags
    assert "samesite=strict" in cookie.lower() and "path=/" in cookie.lower()
    assert "domain" not in flags and "max-age" not in flags and "expires" not in flags


@pytest.mark.parametrize(("token", "status", "text"), [
    ("rk_" + "x" * 43, 401, "unknown or revoked"), ("", 422, "Paste your API token"),
], ids=["unknown", "empty"])
def test_a_bad_token_is_refused_on_the_form(ui_app: FastAPI, token: str, status: int, text: str) -> None:
    ui = UI(ui_app)
    r = ui.sign_in(token)
    assert r.status_code == status and text in r.text
    assert "__Host-recon-ui" not in ui.client.cookies


def test_sign_in_without_the_double_submit_value_is_refused(ui_app: FastAPI, ui_tokens: dict[str, str]) -> None:
    ui = UI(ui_app)
    ui.get("/ui/signin")
    r = ui.client.post("/ui/signin", data={"token": ui_tokens["operator"], "csrf": "forged"})
    assert r.status_code == 403 and "did not come from this site" in r.text
    assert "__Host-recon-ui" not in ui.client.cookies


def test_security_headers_on_pages_redirects_and_errors(operator_ui: UI) -> None:
    for r in (operator_ui.get("/ui/reconciliations"), operator_ui.get("/ui/"),
              operator_ui.get("/ui/reconciliations/999999"), UI(operator_ui.client.app).get("/ui/reconciliations")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
        assert r.headers["x-content-type-options"] == "nosniff"
    missing = operator_ui.get("/ui/reconciliations/999999")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "reconciliation 999999 does not exist" in missing.text


@pytest.mark.parametrize(("headers", "with_token"), [
    ({}, False), ({"X-CSRF-Token": "not-it"}, False), ({"Sec-Fetch-Site": "cross-site"}, True),
    ({"Sec-Fetch-Site": "same-site"}, True),
], ids=["no-token", "wrong-header", "cross-site", "same-site-subdomain"])
def test_unsafe_requests_without_the_token_are_refused(operator_ui: UI, db: psycopg.Connection,
                                                      headers: dict[str, str], with_token: bool) -> None:
    name = f"csrf probe {headers}"
    r = operator_ui.client.post("/ui/reconciliations", headers=headers,
                                data={"name": name, **({"csrf": operator_ui.csrf} if with_token else {})})
    assert r.status_code == 403
    assert db.execute("SELECT count(*) FROM reconciliations WHERE name = %s", (name,)).fetchone() == (0,)


def test_the_token_in_the_htmx_header_is_accepted(operator_ui: UI) -> None:
    r = operator_ui.client.post("/ui/reconciliations", data={"name": "via header"},
                                headers={"X-CSRF-Token": operator_ui.csrf, "HX-Request": "true"})
    assert r.status_code == 200 and r.headers["hx-redirect"].startswith("/ui/reconciliations/")


def test_sign_out_ends_the_session_for_copies_of_the_cookie(ui_app: FastAPI, ui_tokens: dict[str, str]) -> None:
    ui = UI(ui_app, ui_tokens["operator"])
    stolen = ui.client.cookies["__Host-recon-ui"]
    r = ui.post("/ui/signout")
    assert r.status_code == 303 and r.headers["location"] == "/ui/signin?reason=signed_out"
    thief = UI(ui_app)
    thief.client.cookies.set("__Host-recon-ui", stolen)
    r = thief.get("/ui/reconciliations")
    assert r.status_code == 303 and "reason=expired" in r.headers["location"]


def _session_key(ui: UI) -> str:
    from app.ui.session import sid_hash

    return f"recon:ui:session:{sid_hash(ui.client.cookies['__Host-recon-ui'])}"


def _redis(settings: Settings) -> redis.Redis:
    from app.cache import Cache

    client = Cache(settings).client
    assert client is not None
    return client


def test_idle_sessions_expire(ui_app: FastAPI, ui_tokens: dict[str, str], settings: Settings) -> None:
    ui = UI(ui_app, ui_tokens["viewer"])
    key = _session_key(ui)
    r = _redis(settings)
    assert 0 < r.ttl(key) <= 30 * 60, "the idle timer is the key's TTL"
    r.expire(key, 1)
    time.sleep(1.2)
    page = ui.get("/ui/reconciliations")
    assert page.status_code == 303 and "reason=expired" in page.headers["location"]


def test_sessions_end_after_their_absolute_lifetime(ui_app: FastAPI, ui_tokens: dict[str, str],
                                                     settings: Settings) -> None:
    import json

    ui = UI(ui_app, ui_tokens["viewer"])
    key = _session_key(ui)
    r = _redis(settings)
    doc = json.loads(r.get(key))
    doc["created"] -= 13 * 3600
    r.set(key, json.dumps(doc), ex=600)
    page = ui.get("/ui/reconciliations")
    assert page.status_code == 303 and "reason=expired" in page.headers["location"]
    assert not r.exists(key)


def test_a_revoked_token_ends_its_sessions_at_once(ui_app: FastAPI, dsn: str, as_admin: dict[str, str],
                                                   app_client) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(dsn) as conn:
        token_id, token = auth.create_token(conn, name="ui-soon-revoked", role="operator")
        conn.commit()
    ui = UI(ui_app, token)
    assert ui.get("/ui/reconciliations").status_code == 200
    assert app_client.delete(f"/api/v1/tokens/{token_id}", headers=as_admin).status_code == 204
    r = ui.get("/ui/reconciliations")
    assert r.status_code == 303 and "reason=revoked" in r.headers["location"]


def _routes(routes: list) -> list:  # type: ignore[type-arg]
    """Every route, also inside included routers (FastAPI keeps those nested)."""
    out = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        out += _routes(nested.routes) if nested is not None else [route]
    return out


def _mutating_routes(app: FastAPI) -> list[tuple[str, str, str | None]]:
    out = []
    for route in _routes(app.routes):
        if not isinstance(route, APIRoute) or not route.path.startswith("/ui"):
            continue
        for method in route.methods - {"GET", "HEAD"}:
            roles = [d.call.__name__.removeprefix("signed_in_") for d in route.dependant.dependencies
                     if getattr(d.call, "__name__", "").startswith("signed_in_")]
            out.append((method, route.path, roles[0] if roles else None))
    return out


def test_every_ui_route_that_changes_something_needs_a_role_above_viewer(ui_app: FastAPI) -> None:
    routes = _mutating_routes(ui_app)
    assert len(routes) >= 10
    open_ = {("POST", "/ui/signin")}
    viewer_ok = {("POST", "/ui/signout")}
    for method, path, role in routes:
        if (method, path) in open_:
            continue
        assert role is not None, f"{method} {path} has no signed_in() dependency"
        if (method, path) not in viewer_ok:
            assert role in ("operator", "admin"), f"{method} {path} allows {role}"
    assert ("POST", "/ui/reconciliations/{recon_id}/delete", "admin") in routes


@pytest.mark.parametrize("path", ["/ui/reconciliations", "/ui/reconciliations/1/upload/left",
                                  "/ui/reconciliations/1/run", "/ui/matches/1/confirm",
                                  "/ui/reconciliations/1/bulk-confirm", "/ui/reconciliations/1/link",
                                  "/ui/reconciliations/1/delete"])
def test_a_viewer_is_refused_every_change(viewer_ui: UI, path: str) -> None:
    r = viewer_ui.post(path, {"name": "x"})
    assert r.status_code == 403 and "role &#39;viewer&#39; may not do this" in r.text


def test_an_operator_may_not_delete(operator_ui: UI, admin_ui: UI) -> None:
    recon = create(operator_ui, "not the operator's to delete")
    assert operator_ui.get(f"/ui/reconciliations/{recon}/delete").status_code == 403
    assert "Delete this reconciliation" not in operator_ui.get(f"/ui/reconciliations/{recon}").text
    page = admin_ui.get(f"/ui/reconciliations/{recon}/delete")
    assert page.status_code == 200
    r = admin_ui.post(f"/ui/reconciliations/{recon}/delete")
    assert r.status_code == 303
    assert admin_ui.get(f"/ui/reconciliations/{recon}").status_code == 404
