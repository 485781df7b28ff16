"""Request dependencies: services, the calling principal (token + role + rate limit), auditing;
and :class:`ErrorBody`, the one shape of every error the API answers with."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psycopg
from fastapi import Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from app import auth
from app.auth import Principal
from app.db import Database
from app.web.services import Services

log = logging.getLogger(__name__)


class ProblemDetail(BaseModel):
    """One thing wrong with a request (`field`) or with an uploaded file (`line`, `column`)."""

    model_config = ConfigDict(extra="allow")

    reason: str
    field: str | None = Field(default=None, description="dotted path of the request field: body.name, "
                              "query.q, options.columns.amount, file.filename")
    line: int | None = Field(default=None, description="1-based line (row) of the uploaded file")
    column: str | None = Field(default=None, description="header name, field number, XML element or tag")
    value: Any = Field(default=None, description="the offending value, shortened")
    count: int | None = Field(default=None, description="how many lines have this same problem")
    lines: list[int] | None = Field(default=None, description="the first few of those lines")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx body: `detail` says what went wrong; `problems` lists each cause.

    Some errors add context: a duplicate upload's ``existing_import``, a busy run's ``run_id``.
    """

    model_config = ConfigDict(extra="allow")

    detail: str
    problems: list[ProblemDetail | str] | None = Field(default=None, description="objects; plain strings only "
                                                       "in a manual link's 409 (records already matched)")


def error(status: int, description: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry documenting `status` with :class:`ErrorBody`."""
    return {status: {"model": ErrorBody, "description": description}}


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def database(svc: Services = Depends(services)) -> Database:
    return svc.require_db()


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "missing API token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def current_principal(request: Request, svc: Services = Depends(services)) -> Principal:
    """Resolve the bearer token in PostgreSQL, every request, and apply the per-token rate limit.

    Never from Redis: anyone who can write to Redis could plant an entry granting any role, and
    a revocation made straight in the database must hold on the next request. The look-up is
    one indexed equality on the primary."""
    token = _bearer(request)
    client = request.client.host if request.client else "unknown"
    limit = svc.settings.auth_failures_per_minute
    if limit and svc.cache.peek_rate_limit(f"authfail:{client}", limit):
        raise HTTPException(429, f"too many requests with unknown tokens from {client}; retry in a minute",
                            headers={"Retry-After": "60"})
    db = svc.require_db()
    with db.primary() as conn:
        found = auth.lookup(conn, token)
        if found is not None:  # at most one write a minute per token, not one per request
            conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s AND "
                         "(last_used_at IS NULL OR last_used_at < now() - interval '1 minute')", (found.token_id,))
    if found is None:
        if limit:
            svc.cache.hit_rate_limit(f"authfail:{client}", limit)
        raise HTTPException(401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"})
    principal = found
    allowed, retry_after = svc.cache.hit_rate_limit(f"token:{principal.token_id}", svc.settings.rate_limit_per_minute)
    if not allowed:
        raise HTTPException(429, f"rate limit of {svc.settings.rate_limit_per_minute} requests per minute "
                            f"exceeded for token {principal.token_id}", headers={"Retry-After": str(retry_after)})
    request.state.principal = principal
    return principal


def require(role: str) -> Callable[..., Principal]:
    """Dependency factory: the principal, if its role is at least ``role`` (else 403)."""
    auth.check_role(role)

    def _dep(principal: Principal = Depends(current_principal)) -> Principal:
        if not principal.allows(role):
            raise HTTPException(403, f"role {principal.role!r} may not do this; needs {role!r} or higher "
                                f"(roles: {', '.join(auth.ROLES)})")
        return principal

    _dep.__name__ = f"require_{role}"
    return _dep


def audit(conn: psycopg.Connection, request: Request, principal: Principal, action: str, entity: str,
          entity_id: Any, *, before: Any = None, after: Any = None) -> None:
    """Append to the audit trail inside the caller's transaction (who, when, before, after)."""
    conn.execute(
        "INSERT INTO audit_log (actor, token_id, role, action, entity, entity_id, request_id, before, after) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (principal.name, principal.token_id, principal.role, action, entity, None if entity_id is None else str(entity_id),
         getattr(request.state, "request_id", None) or request.scope.get("state", {}).get("request_id"),
         None if before is None else json.dumps(before, default=str),
         None if after is None else json.dumps(after, default=str)),
    )


def content_disposition(filename: str) -> str:
    """``attachment`` naming ``filename`` per RFC 6266, in any script, as an ASCII header value.

    ``filename="..."`` is an ASCII fallback (accents stripped, anything else ``_``) for old
    clients; ``filename*=UTF-8''...`` (RFC 8187 percent-encoding) is the real name, which
    browsers prefer. Control characters and path separators never get through either.
    Trap: Starlette encodes header values as latin-1, so a raw non-latin-1 name is an HTTP 500;
    a lone surrogate cannot be UTF-8 encoded, hence ``backslashreplace``.
    """
    clean = "".join("_" if ch in "/\\" or unicodedata.category(ch).startswith("C") else ch for ch in filename)
    ascii_name = unicodedata.normalize("NFKD", clean).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9 ._()-]", "_", ascii_name)
    ascii_name = re.sub(r" +", " ", re.sub(r"_+", "_", ascii_name)).strip() or "download"
    exact = quote(clean.encode("utf-8", "backslashreplace"), safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{exact}"
