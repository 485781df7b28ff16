"""What the view modules share: services, redirects, query-string parsing, the page size."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from app.ui import queries
from app.ui.render import is_htmx
from app.ui.routing import UIRoute, services, store
from app.ui.session import UISession
from app.web.services import Services

PAGE_SIZES = (25, 50, 100, 200)


CACHE_SECONDS = 3600


def cached(request: Request, key: str, compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON-able answer, cached in Redis under ``key`` (which must name the results'
    version: a review or an upload changes it). Redis down: computed every time."""
    services = svc(request)
    found = services.cache.get_json(key)
    if found is None:
        found = compute()
        services.cache.set_json(key, found, CACHE_SECONDS)
    return found


def ui_router() -> APIRouter:
    return APIRouter(prefix="/ui", route_class=UIRoute, include_in_schema=False)


def svc(request: Request) -> Services:
    return services(request)


def redirect(url: str, request: Request | None = None) -> Response:
    """303 to ``url``; for htmx a client-side redirect (a full page, not a fragment)."""
    if request is not None and is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def flash(request: Request, session: UISession, message: str) -> None:
    store(request).flash(session, message)


def url(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(clean)}" if clean else path


def _text(params: Any, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _decimal(params: Any, name: str, label: str) -> Decimal | None:
    text = _text(params, name)
    if text is None:
        return None
    try:
        value = Decimal(text.replace(",", "").replace(" ", ""))
    except InvalidOperation:
        raise HTTPException(422, f"{label} {text!r} is not a number; write it like 1250.00 or -89.90") from None
    if not value.is_finite() or abs(value) > Decimal(10) ** 15:
        raise HTTPException(422, f"{label} {text!r} is out of range")
    return value


def _date(params: Any, name: str, label: str) -> dt.date | None:
    text = _text(params, name)
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{label} {text!r} is not a date; use YYYY-MM-DD") from None


def filters_from(params: Any) -> queries.Filters:
    """The filter form's query parameters as :class:`queries.Filters` (422 names a bad value)."""
    direction = _text(params, "dir") or "asc"
    if direction not in ("asc", "desc"):
        raise HTTPException(422, f"sort direction {direction!r} is not one of asc, desc")
    f = queries.Filters(q=_text(params, "q"), rule=_text(params, "rule"), field=_text(params, "field"),
                        amount_min=_decimal(params, "amount_min", "lowest amount"),
                        amount_max=_decimal(params, "amount_max", "highest amount"),
                        date_from=_date(params, "date_from", "from date"), date_to=_date(params, "date_to", "to date"),
                        sort=_text(params, "sort") or "id", desc=direction == "desc")
    try:
        return f.check()
    except queries.BadQuery as exc:
        raise HTTPException(422, str(exc)) from None


def page_size(params: Any, default: int = 50) -> int:
    text = _text(params, "size")
    if text is None:
        return default
    if not text.isdigit() or int(text) not in PAGE_SIZES:
        raise HTTPException(422, f"page size {text!r} is not one of {', '.join(map(str, PAGE_SIZES))}")
    return int(text)


def bad_query(exc: queries.BadQuery) -> HTTPException:
    return HTTPException(422, str(exc))


def id_list(values: list[Any], label: str) -> list[int]:
    out = []
    for v in values:
        text = str(v).strip()
        if not text.isdigit():
            raise HTTPException(422, f"{label} {text!r} is not a record id")
        out.append(int(text))
    return out
