"""Administration over HTTP: API tokens (admin) and the audit trail (operator and up)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from app import auth
from app.auth import Principal
from app.db import Database
from app.web.deps import audit, database, require, services
from app.web.services import Services

router = APIRouter(prefix="/api/v1", tags=["admin"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    role: Literal["viewer", "operator", "admin"]


@router.get("/whoami", summary="The calling token's name and role")
def whoami(who: Principal = Depends(require("viewer"))) -> dict[str, Any]:
    return auth.principal_to_json(who)


@router.post("/tokens", status_code=201, summary="Create an API token (shown once)")
def create_token(body: TokenIn, request: Request, db: Database = Depends(database),
                 who: Principal = Depends(require("admin"))) -> dict[str, Any]:
    with db.primary() as conn:
        token_id, token = auth.create_token(conn, name=body.name, role=body.role)
        audit(conn, request, who, "token.create", "api_token", token_id, after={"name": body.name, "role": body.role})
    return {"id": token_id, "name": body.name, "role": body.role, "token": token}


@router.get("/tokens", summary="List tokens (never their values)")
def list_tokens(db: Database = Depends(database), _: Principal = Depends(require("admin"))) -> list[dict[str, Any]]:
    cols = ("id", "name", "role", "prefix", "created_at", "revoked_at", "last_used_at")
    with db.primary() as conn:
        return [dict(zip(cols, r)) for r in conn.execute(f"SELECT {', '.join(cols)} FROM api_tokens ORDER BY id")]


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token")
def revoke(token_id: int, request: Request, svc: Services = Depends(services),
           who: Principal = Depends(require("admin"))) -> Response:
    db = svc.require_db()
    with db.primary() as conn:
        row = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL "
                           "RETURNING token_sha256, name, role", (token_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"no active token with id {token_id}")
        audit(conn, request, who, "token.revoke", "api_token", token_id, before={"name": row[1], "role": row[2]})
    return Response(status_code=204)


@router.get("/audit", summary="Audit trail, newest first")
def audit_trail(db: Database = Depends(database), _: Principal = Depends(require("operator")),
                entity: str | None = None, entity_id: str | None = None, action: str | None = None,
                before: int | None = Query(None, ge=1), limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    cols = ("id", "at", "actor", "token_id", "role", "action", "entity", "entity_id", "request_id", "before", "after")
    with db.reader() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM audit_log WHERE (%(e)s::text IS NULL OR entity = %(e)s) "
            "AND (%(i)s::text IS NULL OR entity_id = %(i)s) AND (%(a)s::text IS NULL OR action = %(a)s) "
            "AND (%(b)s::bigint IS NULL OR id < %(b)s) ORDER BY id DESC LIMIT %(l)s",
            {"e": entity, "i": entity_id, "a": action, "b": before, "l": limit}).fetchall()
    items = [dict(zip(cols, r)) for r in rows]
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}
