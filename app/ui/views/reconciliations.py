"""Reconciliations: the list (newest first, paged, search by name), create, overview, delete, audit."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request
from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.responses import Response

from app.ui import api, queries
from app.ui.render import page
from app.ui.routing import posted, signed_in
from app.ui.session import UISession
from app.ui.views.common import flash, redirect, svc, ui_router, url

router = ui_router()


@router.get("/reconciliations")
def listing(request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    params = request.query_params
    q = (params.get("q") or "").strip() or None
    if q and len(q) > 200:
        raise HTTPException(422, f"the search text has {len(q)} characters; at most 200")
    try:
        with svc(request).require_db().primary() as conn:
            result = queries.reconciliation_page(conn, q, after=params.get("after"), before=params.get("before"))
    except queries.BadQuery as exc:
        raise HTTPException(422, str(exc)) from None
    return page(request, "reconciliations.html", result=result, q=q or "", error=None, name="",
                next_url=url("/ui/reconciliations", q=q, after=result.next_cursor) if result.next_cursor else None,
                prev_url=url("/ui/reconciliations", q=q, before=result.prev_cursor) if result.prev_cursor else None)


@router.post("/reconciliations")
def create(request: Request, session: UISession = Depends(signed_in("operator")),
           form: FormData = Depends(posted)) -> Response:
    name = str(form.get("name") or "").strip()
    try:
        rec = api.create_reconciliation(svc(request), request, session.principal, name)
    except ValidationError:
        with svc(request).require_db().primary() as conn:
            result = queries.reconciliation_page(conn, None, after=None, before=None)
        return page(request, "reconciliations.html", status=422, result=result, q="", name=name,
                    error="A name is needed: 1 to 200 characters.", next_url=None, prev_url=None)
    flash(request, session, f"Created reconciliation “{rec['name']}”. Upload both sides next.")
    return redirect(f"/ui/reconciliations/{rec['id']}", request)


def overview(request: Request, session: UISession, recon_id: int) -> dict[str, Any]:
    rec = api.reconciliation(svc(request), session.principal, recon_id)
    rec["sides"] = {side: [i for i in rec["imports"] if i["side"] == side] for side in ("left", "right")}
    return rec


@router.get("/reconciliations/{recon_id}")
def show(recon_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    rec = overview(request, session, recon_id)
    return page(request, "reconciliation.html", rec=rec)


@router.get("/reconciliations/{recon_id}/delete")
def confirm_delete(recon_id: int, request: Request, session: UISession = Depends(signed_in("admin"))) -> Response:
    rec = overview(request, session, recon_id)
    return page(request, "delete.html", rec=rec)


@router.post("/reconciliations/{recon_id}/delete")
def delete(recon_id: int, request: Request, session: UISession = Depends(signed_in("admin"))) -> Response:
    rec = api.reconciliation(svc(request), session.principal, recon_id)
    api.delete_reconciliation(svc(request), request, session.principal, recon_id)
    flash(request, session, f"Deleted reconciliation “{rec['name']}” with its imports, runs and matches.")
    return redirect("/ui/reconciliations", request)


@router.get("/reconciliations/{recon_id}/audit")
def audit(recon_id: int, request: Request, session: UISession = Depends(signed_in("operator"))) -> Response:
    rec = api.reconciliation(svc(request), session.principal, recon_id)
    with svc(request).require_db().primary() as conn:
        rows = queries.reconciliation_audit(conn, recon_id)
    return page(request, "audit.html", rec=rec, rows=rows)
