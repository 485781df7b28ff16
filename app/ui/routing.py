"""How every UI route behaves: :class:`UIRoute` and the :func:`signed_in` dependency.

:class:`UIRoute` wraps each handler so that, whatever happens, the browser gets HTML with the
security headers (:mod:`app.ui.render`): the API's JSON error handlers never answer a page.

    SignInRequired          -> 303 to /ui/signin?next=... (htmx: HX-Redirect)
    HTTPException           -> an error page with the API's message and problems (htmx: the alert region)
    RequestValidationError  -> 422 page naming each bad parameter
    SessionUnavailable, DatabaseUnavailable, psycopg.OperationalError -> 503 page, retry later

:func:`signed_in` resolves the session cookie, checks the token is still active, counts the
request against the token's rate limit (the API's own limit: the UI is no way around it),
checks the role, and for every unsafe method the CSRF token and ``Sec-Fetch-Site``.

Trap: the UI calls the API's route functions directly (:mod:`app.ui.api`), which bypasses
their ``Depends(require(...))`` role checks, so every mutating UI route must name its role
here. ``tests/app/test_ui_security.py`` holds that for every route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from app.auth import ROLES
from app.db import DatabaseUnavailable
from app.ui.render import error_page, is_htmx, secure
from app.ui.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    SessionPolicy,
    SessionStore,
    SessionUnavailable,
    UISession,
    same_secret,
    still_active,
)
from app.web.services import Services

log = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MAX_FORM_FIELDS = 3000
"""A form's field limit: the rule form and a page of selected rows stay well below it."""


class SignInRequired(Exception):
    """No live session: ``reason`` is "signin", "expired" or "revoked"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def store(request: Request) -> SessionStore:
    """The app's session store, built on first use from its cache and ``app.state.ui_policy``."""
    found = getattr(request.app.state, "ui_sessions", None)
    if found is None:
        policy = getattr(request.app.state, "ui_policy", None) or SessionPolicy()
        found = request.app.state.ui_sessions = SessionStore(services(request).cache, policy)
    return found  # type: ignore[no-any-return]


def safe_next(target: str | None) -> str:
    """A redirect target after sign-in: a path under /ui/ on this site, else the start page."""
    if not target or not target.startswith("/ui/") or target.startswith("//") or "\\" in target \
            or any(ord(ch) < 32 for ch in target):
        return "/ui/reconciliations"
    return target


async def form_of(request: Request) -> FormData:
    """The request's form (parsed once, cached by Starlette), within the UI's field limit.

    A body larger than the service's upload limit is refused (413) before it is read.
    """
    limit = services(request).settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise HTTPException(413, f"the upload of {declared} bytes exceeds the limit of {limit} bytes "
                            "(RECON_MAX_UPLOAD_BYTES)")
    return await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)


async def posted(request: Request) -> FormData:
    """Dependency: the posted form, so that handlers doing blocking work can be plain ``def``."""
    return await form_of(request)


def _resolve(request: Request, role: str) -> UISession:
    svc = services(request)
    sessions = store(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    session = sessions.load(cookie)
    if session is None:
        if not sessions.available():
            raise SessionUnavailable("the session store (Redis) is unreachable")
        raise SignInRequired("expired" if cookie else "signin")
    if not still_active(svc, session):
        sessions.destroy(session)
        raise SignInRequired("revoked")
    limit = svc.settings.rate_limit_per_minute
    allowed, retry_after = svc.cache.hit_rate_limit(f"token:{session.principal.token_id}", limit)
    if not allowed:
        raise HTTPException(429, f"rate limit of {limit} requests per minute reached for your token; "
                            f"retry in {retry_after} s", headers={"Retry-After": str(retry_after)})
    if not session.can(role):
        raise HTTPException(403, f"your role {session.principal.role!r} may not do this; it needs {role!r} "
                            f"or higher (roles: {', '.join(ROLES)})")
    if request.method == "GET" and not is_htmx(request):
        session.flashes = sessions.pop_flashes(session)
    return session


def signed_in(role: str = "viewer") -> Callable[[Request], Awaitable[UISession]]:
    """Dependency: the live session of a user with at least ``role``; CSRF-checked when unsafe."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")

    async def dependency(request: Request) -> UISession:
        session = await run_in_threadpool(_resolve, request, role)
        if request.method not in SAFE_METHODS:
            await check_csrf(request, session.csrf)
        request.state.ui = session
        return session

    dependency.__name__ = f"signed_in_{role}"
    return dependency


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse a cross-site or token-less unsafe request with 403 (the form's token or the header)."""
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin", "none"):
        raise HTTPException(403, f"refused a {site} request: forms of this site post to this site only")
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await form_of(request)).get(CSRF_FIELD) or "")
    if not same_secret(sent, expected):
        raise HTTPException(403, "the form's security token is missing or out of date (CSRF check); "
                            "reload the page and try again")


def _signin_redirect(request: Request, reason: str) -> Response:
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method not in SAFE_METHODS:
        back = request.headers.get("hx-current-url") or "/ui/reconciliations"
        if "://" in back:
            back = "/" + back.split("://", 1)[1].partition("/")[2]
    target = f"/ui/signin?reason={reason}&next={quote(safe_next(back), safe='/')}"
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _problems(detail: Any) -> tuple[str, list[str]]:
    """The API's error body (a string, or a dict with detail and problems) as text and lines."""
    if not isinstance(detail, dict):
        return str(detail), []
    lines = []
    for p in detail.get("problems") or []:
        if isinstance(p, dict):
            where = ", ".join(f"{k} {p[k]}" for k in ("line", "column", "field") if p.get(k) not in (None, ""))
            lines.append(f"{where}: {p.get('reason')}" if where else str(p.get("reason")))
        else:
            lines.append(str(p))
    return str(detail.get("detail") or "request refused"), lines


_TITLES = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict",
           413: "Too large", 415: "Unsupported file", 422: "Please check the input", 429: "Slow down",
           503: "Temporarily unavailable"}


class UIRoute(APIRoute):
    """An APIRoute that always answers HTML with the UI's security headers (see module doc)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                response = _signin_redirect(request, exc.reason)
            except StarletteHTTPException as exc:
                detail, problems = _problems(exc.detail)
                response = error_page(request, exc.status_code, _TITLES.get(exc.status_code, "Error"), detail,
                                      problems)
                for name, value in (exc.headers or {}).items():
                    response.headers[name] = value
            except RequestValidationError as exc:
                problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
                response = error_page(request, 422, _TITLES[422], "some values in the address are not valid",
                                      problems)
            except SessionUnavailable as exc:
                log.error("ui session store unavailable", extra={"error": str(exc)})
                response = error_page(request, 503, _TITLES[503], "Signing in is unavailable right now: the "
                                      "session store cannot be reached. The API still works; try again shortly.")
                response.headers["Retry-After"] = "5"
            except (DatabaseUnavailable, psycopg.OperationalError) as exc:
                log.error("ui database unavailable", extra={"error": str(exc)})
                response = error_page(request, 503, _TITLES[503], "The database cannot be reached right now; "
                                      "nothing was changed. Try again in a few seconds.")
                response.headers["Retry-After"] = "5"
            return secure(response, static=request.url.path.startswith("/ui/static/"))

        return route
