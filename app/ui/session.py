"""Sign-in sessions: an API token is exchanged once for a session cookie; the token is not kept.

The cookie (``__Host-recon-ui``: HttpOnly, Secure, SameSite=Strict, Path=/) holds a random
session id. Redis holds, under the id's SHA-256, who signed in (token id, name, role, the token's
hash), the session's CSRF token and when it was created and last seen. So:

* **Idle expiry**: the Redis key expires ``idle_seconds`` after the last request (refreshed at
  most once a ``refresh_seconds``); **absolute expiry**: ``absolute_seconds`` after sign-in.
* **Sign-out** deletes the key: a copied cookie is worthless afterwards.
* **Revocation**: every request checks in PostgreSQL that the token is still active, as the API's
  bearer check does; a revoked token ends its sessions on the next request, however revoked.
* **CSRF**: every form carries the session's token (htmx sends it as ``X-CSRF-Token``); the
  sign-in form, which has no session yet, uses a double-submit cookie (``__Host-recon-signin``).

Trap: sessions live in Redis only. Redis is where rebuildable state lives (DESIGN.md) and a
session is rebuilt by signing in again; while Redis is unreachable nobody can sign in and the
UI says so (:class:`SessionUnavailable`), while the API (bearer tokens) keeps working.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from app import auth
from app.auth import Principal
from app.cache import Cache, CacheUnavailable
from app.web.services import Services

SESSION_COOKIE = "__Host-recon-ui"
SIGNIN_COOKIE = "__Host-recon-signin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_KEY = "recon:ui:session:"
_FLASH = "recon:ui:flash:"


class SessionUnavailable(RuntimeError):
    """The session store (Redis) cannot be reached: nobody can sign in until it is back."""


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives. One object with explicit defaults (docs/ui.md)."""

    idle_seconds: int = 30 * 60
    absolute_seconds: int = 12 * 3600
    refresh_seconds: int = 60


@dataclass
class UISession:
    """A signed-in browser: who, its CSRF token, and the messages to show on the next page."""

    sid_hash: str
    principal: Principal
    token_sha256: str
    csrf: str
    created: float
    seen: float
    flashes: list[str] = field(default_factory=list)

    def can(self, role: str) -> bool:
        return self.principal.allows(role)

    def to_json(self) -> dict[str, Any]:
        return {"principal": asdict(self.principal), "token_sha256": self.token_sha256, "csrf": self.csrf,
                "created": self.created, "seen": self.seen}

    @classmethod
    def from_json(cls, sid_hash: str, doc: dict[str, Any]) -> UISession:
        p = doc["principal"]
        return cls(sid_hash, Principal(int(p["token_id"]), p["name"], p["role"]), doc["token_sha256"],
                   doc["csrf"], float(doc["created"]), float(doc["seen"]))


def sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time comparison; ``None`` or empty never matches."""
    return bool(a) and bool(b) and secrets.compare_digest(str(a), str(b))


class SessionStore:
    """Sessions in Redis through the service's :class:`~app.cache.Cache`."""

    def __init__(self, cache: Cache, policy: SessionPolicy | None = None) -> None:
        self.cache = cache
        self.policy = policy or SessionPolicy()

    def create(self, principal: Principal, token_sha256: str) -> tuple[str, UISession]:
        """A new session for ``principal``: ``(cookie value, session)``."""
        self._require_store()
        sid = secrets.token_urlsafe(32)
        now = time.time()
        session = UISession(sid_hash(sid), principal, token_sha256, secrets.token_urlsafe(32), now, now)
        self.cache.set_json(_KEY + session.sid_hash, session.to_json(), self.policy.idle_seconds)
        return sid, session

    def load(self, sid: str | None) -> UISession | None:
        """The live session for a cookie value, refreshing its idle timer; ``None`` when expired."""
        if not sid or len(sid) > 100:
            return None
        key_hash = sid_hash(sid)
        doc = self.cache.get_json(_KEY + key_hash)
        if doc is None:
            return None
        session = UISession.from_json(key_hash, doc)
        now = time.time()
        if now - session.created > self.policy.absolute_seconds:
            self.destroy(session)
            return None
        if now - session.seen >= self.policy.refresh_seconds:
            session.seen = now
            self.cache.set_json(_KEY + key_hash, session.to_json(), self.policy.idle_seconds)
        return session

    def destroy(self, session: UISession) -> None:
        self.cache.delete(_KEY + session.sid_hash, _FLASH + session.sid_hash)

    def flash(self, session: UISession, message: str) -> None:
        """Show ``message`` once, on the next page this session renders (after a redirect)."""
        pending = self.cache.get_json(_FLASH + session.sid_hash) or []
        self.cache.set_json(_FLASH + session.sid_hash, [*pending, message][-5:], 300)

    def pop_flashes(self, session: UISession) -> list[str]:
        """The pending messages, once: call it for full pages only (not for polled fragments)."""
        pending = self.cache.get_json(_FLASH + session.sid_hash)
        if pending:
            self.cache.delete(_FLASH + session.sid_hash)
        return list(pending or [])

    def _require_store(self) -> None:
        try:
            self.cache.ping()
        except CacheUnavailable as exc:
            raise SessionUnavailable(f"the session store is unreachable ({exc})") from exc

    def available(self) -> bool:
        try:
            self.cache.ping()
        except CacheUnavailable:
            return False
        return True


def sign_in(svc: Services, token: str) -> tuple[Principal, str] | None:
    """``(principal, token hash)`` for an active API token, else ``None``. Marks it used."""
    with svc.require_db().primary() as conn:
        found = auth.lookup(conn, token)
        if found is not None:
            conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s", (found.token_id,))
    return None if found is None else (found, auth.hash_token(token))


def still_active(svc: Services, session: UISession) -> bool:
    """The session's token is not revoked: asked of PostgreSQL on every request (never Redis)."""
    with svc.require_db().primary() as conn:
        row = conn.execute("SELECT 1 FROM api_tokens WHERE token_sha256 = %s AND revoked_at IS NULL",
                           (session.token_sha256,)).fetchone()
    return row is not None
