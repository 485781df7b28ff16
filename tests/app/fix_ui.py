"""Fixtures for the UI's server-side tests (``tests/app/test_ui_*.py``): one app over HTTPS.

The session cookie is ``Secure``: the test clients talk to ``https://testserver`` so that
httpx sends it back. One app (and one lifespan) serves every role; each role has its own
client and cookie jar, signed in through the real sign-in form.

Load with ``pytest_plugins = ["tests.app.fix_ui"]`` in a test module.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.settings import Settings

SAMPLES = Path(__file__).resolve().parents[2] / "app" / "samples"
BASE = "https://testserver"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


class UI:
    """A signed-in browser stand-in: a TestClient with its own cookies and the page's CSRF token."""

    def __init__(self, app: FastAPI, token: str | None = None) -> None:
        self.client = TestClient(app, base_url=BASE, follow_redirects=False)
        self.csrf = ""
        if token:
            self.sign_in(token)

    def sign_in(self, token: str) -> httpx.Response:
        form = self.client.get("/ui/signin")
        r = self.client.post("/ui/signin", data={"token": token, "csrf": csrf_of(form.text),
                                                 "next": "/ui/reconciliations"})
        if r.status_code == 303:
            self.csrf = csrf_of(self.client.get("/ui/reconciliations").text)
        return r

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict[str, Any] | list[tuple[str, Any]] | None = None, *, csrf: bool = True,
             htmx: bool = False, **kw: Any) -> httpx.Response:
        items = list(data.items()) if isinstance(data, dict) else list(data or [])
        if csrf:
            items.append(("csrf", self.csrf))
        form: dict[str, list[Any]] = {}
        for key, value in items:
            form.setdefault(key, []).append(value)
        headers = {"HX-Request": "true"} if htmx else {}
        return self.client.post(url, data=form, headers=headers, **kw)


@pytest.fixture(scope="session")
def ui_app(settings: Settings) -> Iterator[FastAPI]:
    from app.web import create_app

    app = create_app(settings)
    with TestClient(app, base_url=BASE):
        yield app


@pytest.fixture(scope="session")
def ui_tokens(dsn: str) -> dict[str, str]:
    """Tokens of the UI tests' own (so revoking one never touches the API tests' tokens)."""
    from app import auth

    out = {}
    with psycopg.connect(dsn) as conn:
        for role in auth.ROLES:
            _, out[role] = auth.create_token(conn, name=f"ui-{role}", role=role)
        conn.commit()
    return out


@pytest.fixture(scope="session")
def operator_ui(ui_app: FastAPI, ui_tokens: dict[str, str]) -> UI:
    return UI(ui_app, ui_tokens["operator"])


@pytest.fixture(scope="session")
def viewer_ui(ui_app: FastAPI, ui_tokens: dict[str, str]) -> UI:
    return UI(ui_app, ui_tokens["viewer"])


@pytest.fixture(scope="session")
def admin_ui(ui_app: FastAPI, ui_tokens: dict[str, str]) -> UI:
    return UI(ui_app, ui_tokens["admin"])


def create(ui: UI, name: str) -> int:
    r = ui.post("/ui/reconciliations", {"name": name})
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def upload(ui: UI, recon: int, side: str, data: bytes, filename: str, **fields: str) -> httpx.Response:
    return ui.post(f"/ui/reconciliations/{recon}/upload/{side}", list(fields.items()),
                   files={"file": (filename, data, "text/csv")})


def wait_for_run(ui: UI, run_id: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = ui.get(f"/ui/runs/{run_id}/progress", headers={"HX-Request": "true"}).text
        if "hx-trigger" not in page:
            return page
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s")


@pytest.fixture(scope="session")
def reconciled(operator_ui: UI, workers: Any) -> dict[str, int]:
    """The two sample files uploaded and run once (fuzzy and amount_date rules suggest)."""
    workers.ensure()
    ui = operator_ui
    recon = create(ui, "UI samples")
    for side, name in (("left", "bank_statement.csv"), ("right", "ledger_export.csv")):
        r = upload(ui, recon, side, (SAMPLES / name).read_bytes(), name)
        assert r.status_code == 303, r.text
    form = ui.get(f"/ui/reconciliations/{recon}/run").text
    data = rule_form_fields(form)
    data = [(k, "suggested" if k.endswith("_status") and v == "confirmed" and _kind_of(data, k) == "amount_date" else v)
            for k, v in data]
    r = ui.post(f"/ui/reconciliations/{recon}/run", [*data, ("op", "run")])
    assert r.status_code == 303, r.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    assert "succeeded" in wait_for_run(ui, run_id)
    return {"recon": recon, "run": run_id}


def _kind_of(data: list[tuple[str, str]], key: str) -> str:
    prefix = key.split("_", 1)[0]
    return dict(data)[f"{prefix}_kind"]


def rule_form_fields(html: str) -> list[tuple[str, str]]:
    """The rule form's fields as a browser would submit them (inputs, selected options, checked boxes)."""
    out: list[tuple[str, str]] = []
    form = html.split('id="rule-form"', 1)[1].split("</form>", 1)[0]
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or name.group(1) in ("csrf", "dry_run"):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        if 'type="checkbox"' in tag and " checked" not in tag:
            continue
        out.append((name.group(1), value.group(1) if value else ""))
    for name, body in re.findall(r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        if name == "add_kind":
            continue
        chosen = re.search(r'<option value="([^"]*)" selected>', body) or re.search(r'<option value="([^"]*)"', body)
        out.append((name, chosen.group(1) if chosen else ""))
    return out
