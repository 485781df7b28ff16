"""API tokens with roles, stored as SHA-256 hashes. The HTTP side (bearer token, role check,
rate limit) is :mod:`app.web.deps`.

Roles are ordered: ``viewer`` (read) < ``operator`` (upload, run, review) < ``admin``
(tokens, deletion). A token is ``rk_`` + 43 url-safe characters (256 bits), so an unsalted
SHA-256 is enough: the hash cannot be brute-forced and lookups stay one indexed equality.

Traps: the plain token is shown once by ``python -m app token create`` and never stored. Token
look-ups are never cached in Redis (a writable Redis would otherwise grant any role): each
request asks PostgreSQL, so a revocation, however made, holds on the next request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

ROLES = ("viewer", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
TOKEN_PREFIX = "rk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, name and role."""

    token_id: int
    name: str
    role: str

    def allows(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


def check_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(conn: psycopg.Connection, *, name: str, role: str) -> tuple[int, str]:
    """Store a new token's hash; return ``(id, plain_token)``. The caller commits."""
    check_role(role)
    if not name or not name.strip() or len(name) > 200:
        raise ValueError(f"token name {name!r} must be 1-200 characters")
    token = new_token()
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, token_sha256, prefix) VALUES (%s, %s, %s, %s) RETURNING id",
        (name.strip(), role, hash_token(token), token[:8]),
    ).fetchone()
    assert row is not None
    return int(row[0]), token


def revoke_token(conn: psycopg.Connection, token_id: int) -> bool:
    row = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL "
                       "RETURNING token_sha256", (token_id,)).fetchone()
    return row is not None


def lookup(conn: psycopg.Connection, token: str) -> Principal | None:
    """The active principal for ``token`` or ``None``."""
    row = conn.execute(
        "SELECT id, name, role FROM api_tokens WHERE token_sha256 = %s AND revoked_at IS NULL",
        (hash_token(token),),
    ).fetchone()
    return None if row is None else Principal(int(row[0]), row[1], row[2])


def principal_to_json(p: Principal) -> dict[str, Any]:
    return {"token_id": p.token_id, "name": p.name, "role": p.role}
