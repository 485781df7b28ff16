"""Jinja2 environment, the HTML response of every page, and the security headers the UI sends.

Autoescaping is on for every template and there is no ``|safe`` on data anywhere: a counterparty
named ``<script>alert(1)</script>`` in a bank file is text on the page. The one place markup is
built in Python (the summary chart) escapes its labels itself.

Headers on every ``/ui`` response (pages, fragments, redirects, errors)::

    Content-Security-Policy  scripts, styles, images and fetches from this origin only; no inline
                             script or style, no eval, no framing, forms post here only
    Cache-Control            no-store on pages (they hold financial data), a year on static files
    X-Content-Type-Options, Referrer-Policy, X-Frame-Options, Cross-Origin-Opener-Policy,
    Permissions-Policy

Trap: Nginx adds its own ``Content-Security-Policy: default-src 'none'`` to the API's
locations; a second policy is enforced *as well*, so the ``/ui/`` location must not add one
(docs/ui.md, "Behind Nginx").
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from app.records import CURRENCY_EXPONENTS, from_minor
from app.ui import assets

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

HTMX_CONFIG = json.dumps({
    # htmx would otherwise add a <style> element (refused by the CSP) and may eval attribute code.
    "includeIndicatorStyles": False, "allowEval": False, "allowScriptTags": False,
    # Pages hold financial data: never copy them into localStorage for the back button.
    "historyCacheSize": 0, "refreshOnHistoryMiss": True, "selfRequestsOnly": True,
    "defaultSwapStyle": "outerHTML",
}, separators=(",", ":"))


def money(amount_minor: int | None, currency: str | None, *, sign: bool = False) -> str:
    """``125000, "EUR"`` -> ``"1,250.00"`` (exact: Decimal, never float)."""
    if amount_minor is None:
        return ""
    if currency not in CURRENCY_EXPONENTS:
        return str(amount_minor)
    exponent = CURRENCY_EXPONENTS[currency]
    value: Decimal = from_minor(int(amount_minor), currency)
    text = f"{value:,.{exponent}f}"
    return f"+{text}" if sign and value > 0 else text


def _date(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f} %"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html", "svg"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(asset=assets.url, htmx=assets.HTMX, htmx_config=HTMX_CONFIG)
    env.filters.update(money=money, date=_date, pct=_pct, pretty=_json)
    return env


ENV = _environment()


def page(request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> HTMLResponse:
    """Render ``template`` with the signed-in session (if any) as ``ui`` and the request as ``request``."""
    ui = getattr(request.state, "ui", None)
    body = ENV.get_template(template).render(request=request, ui=ui, **context)
    return HTMLResponse(body, status_code=status, headers=headers)


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def secure(response: Response, *, static: bool = False) -> Response:
    """Stamp the security headers (and the cache policy) on ``response``; returns it."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not static:
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, status: int, title: str, detail: str,
               problems: list[str] | None = None) -> HTMLResponse:
    """An error as a page, or as a fragment for htmx swapped into the page's alert region."""
    if is_htmx(request):
        # htmx does not swap 4xx/5xx bodies; answer 200 and retarget the alert region instead.
        return page(request, "fragments/alert.html", status=200, title=title, detail=detail,
                    problems=problems or [], headers={"HX-Retarget": "#alerts", "HX-Reswap": "innerHTML"})
    return page(request, "error.html", status=status, title=title, detail=detail, problems=problems or [])
