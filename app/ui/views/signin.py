"""Sign in with an API token (exchanged for a session cookie) and sign out.

The sign-in form has no session yet, so its CSRF defence is a double-submit cookie: a random
value in ``__Host-recon-signin`` (SameSite=Strict) that the form must repeat. Unknown tokens
count against the same per-address limit as the API's bearer check (``authfail:<address>``).
"""

from __future__ import annotations

import secrets

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.ui.render import page
from app.ui.routing import form_of, safe_next, signed_in, store
from app.ui.session import SESSION_COOKIE, SIGNIN_COOKIE, UISession, same_secret, sign_in
from app.ui.views.common import redirect, svc, ui_router

router = ui_router()

REASONS = {
    "expired": "Your session ended after a while without activity. Please sign in again.",
    "revoked": "The token of your session was revoked. Sign in with another token.",
    "signed_out": "You are signed out.",
    "signin": "Please sign in to continue.",
}
_COOKIE = {"httponly": True, "secure": True, "samesite": "strict", "path": "/"}


def _form(request: Request, status: int = 200, error: str | None = None, next_url: str | None = None) -> Response:
    nonce = secrets.token_urlsafe(24)
    reason = request.query_params.get("reason")
    response = page(request, "signin.html", status=status, nonce=nonce, error=error,
                    notice=REASONS.get(reason or ""), next_url=safe_next(next_url or request.query_params.get("next")))
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=3600, **_COOKIE)  # type: ignore[arg-type]
    return response


@router.get("/signin")
def signin_form(request: Request) -> Response:
    return _form(request)


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await form_of(request)
    next_url = safe_next(str(form.get("next") or ""))
    site = request.headers.get("sec-fetch-site")
    if site not in (None, "same-origin", "none") or not same_secret(str(form.get("csrf") or ""),
                                                                     request.cookies.get(SIGNIN_COOKIE)):
        return _form(request, 403, "The sign-in form expired or did not come from this site. Please try again.",
                     next_url)
    token = str(form.get("token") or "").strip()
    if not token:
        return _form(request, 422, "Paste your API token (it starts with rk_).", next_url)
    services = svc(request)
    client = request.client.host if request.client else "unknown"
    limit = services.settings.auth_failures_per_minute
    if limit and await run_in_threadpool(services.cache.peek_rate_limit, f"authfail:{client}", limit):
        raise HTTPException(429, f"too many attempts with unknown tokens from {client}; wait a minute",
                            headers={"Retry-After": "60"})
    found = await run_in_threadpool(sign_in, services, token) if len(token) <= 200 else None
    if found is None:
        if limit:
            await run_in_threadpool(services.cache.hit_rate_limit, f"authfail:{client}", limit)
        return _form(request, 401, "That token is unknown or revoked.", next_url)
    principal, digest = found
    sessions = store(request)
    sid, session = await run_in_threadpool(sessions.create, principal, digest)
    await run_in_threadpool(sessions.flash, session, f"Signed in as {principal.name} ({principal.role}).")
    response = redirect(next_url)
    response.set_cookie(SESSION_COOKIE, sid, **_COOKIE)  # type: ignore[arg-type]
    response.delete_cookie(SIGNIN_COOKIE, **_COOKIE)  # type: ignore[arg-type]
    return response


@router.post("/signout")
def signout(request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    store(request).destroy(session)
    response = redirect("/ui/signin?reason=signed_out", request)
    response.delete_cookie(SESSION_COOKIE, **_COOKIE)  # type: ignore[arg-type]
    return response
