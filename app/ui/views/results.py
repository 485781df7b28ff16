"""Results of the current run: tabs with filters, sort and keyset paging; one match side by side;
export in every format the API offers."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request
from starlette.responses import Response

from app.ui import api, queries
from app.ui.render import page
from app.ui.routing import signed_in
from app.ui.session import UISession
from app.ui.views.common import cached, filters_from, page_size, svc, ui_router, url

router = ui_router()

COMPARED = ("booking_date", "value_date", "reference", "amount_minor", "currency", "counterparty", "description")
LABELS = {"booking_date": "booking date", "value_date": "value date", "reference": "reference",
          "amount_minor": "amount", "currency": "currency", "counterparty": "counterparty",
          "description": "description"}


@router.get("/reconciliations/{recon_id}/results")
def results(recon_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    services = svc(request)
    rec = api.reconciliation(services, session.principal, recon_id)
    params = request.query_params
    try:
        tab = queries.tab(params.get("tab") or "suggested")
        filters = filters_from(params)
        tab.sort(filters.sort)
    except queries.BadQuery as exc:
        raise HTTPException(422, str(exc)) from None
    if rec["current_run_id"] is None:
        return page(request, "results.html", rec=rec, tab=tab, tabs=queries.TABS, filters=filters, result=None,
                    counts={}, rules=[], fields=[], keep={}, size=50, links={}, exports=_exports(recon_id))
    size = page_size(params)
    current = api.current_results(services, recon_id)
    run_id = int(current.run_id or 0)
    try:
        with api.reading(services, current) as conn:
            result = queries.result_page(conn, tab, run_id, recon_id, filters, after=params.get("after"),
                                         before=params.get("before"), limit=size)
            counts = cached(request, f"recon:ui:counts:{recon_id}:{current.version}",
                            lambda: queries.tab_counts(conn, recon_id, run_id))
            rules = queries.rules_of_run(conn, run_id)
            fields = [r[0] for r in conn.execute("SELECT DISTINCT field FROM discrepancies WHERE run_id = %s "
                                                 "ORDER BY 1", (run_id,))] if tab.source == "discrepancies" else []
    except queries.BadQuery as exc:
        raise HTTPException(422, str(exc)) from None
    keep = {"tab": tab.key, **filters.as_params(), "size": size if size != 50 else None}
    base = f"/ui/reconciliations/{recon_id}/results"
    links = {"next": url(base, **keep, after=result.next_cursor) if result.next_cursor else None,
             "prev": url(base, **keep, before=result.prev_cursor) if result.prev_cursor else None,
             "first": url(base, **keep) if result.prev_cursor else None,
             "here": url(base, **keep, after=params.get("after"), before=params.get("before"))}
    return page(request, "results.html", rec=rec, tab=tab, tabs=queries.TABS, filters=filters, result=result,
                counts=counts, rules=rules, fields=fields, keep=keep, size=size, links=links,
                exports=_exports(recon_id))


def _exports(recon_id: int) -> list[dict[str, str]]:
    out = []
    for view in api.EXPORT_VIEWS:
        sides: tuple[str | None, ...] = ("left", "right") if view == "unmatched" else (None,)
        for side in sides:
            for fmt in api.EXPORT_FORMATS:
                label = f"{view}{' ' + side if side else ''} ({fmt.upper()})"
                out.append({"label": label, "href": url(f"/ui/reconciliations/{recon_id}/export", view=view,
                                                        format=fmt, side=side)})
    return out


def differences(m: dict[str, Any]) -> dict[str, bool]:
    """Which compared fields differ between the two sides (groups: the amounts' sums, and any value)."""
    out = {}
    for name in COMPARED:
        if name == "amount_minor":
            left = sum(r["amount_minor"] for r in m["left"])
            right = sum(r["amount_minor"] for r in m["right"])
        else:
            left = {r[name] for r in m["left"]}
            right = {r[name] for r in m["right"]}
        out[name] = left != right
    return out


@router.get("/matches/{match_id}")
def show_match(match_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    services = svc(request)
    m = queries.match(services.require_db(), match_id)
    if m is None:
        raise HTTPException(404, f"match {match_id} does not exist")
    rec = api.reconciliation(services, session.principal, m["reconciliation_id"])
    trail = api.audit(services, session.principal, "match", str(match_id)) if session.can("operator") else None
    back = request.query_params.get("back") or ""
    if not back.startswith(f"/ui/reconciliations/{rec['id']}/results"):
        back = f"/ui/reconciliations/{rec['id']}/results?tab={'matched' if m['status'] == 'confirmed' else 'suggested'}"
    return page(request, "match.html", m=m, rec=rec, diff=differences(m), labels=LABELS, trail=trail, back=back,
                current=m["run_id"] == rec["current_run_id"])


@router.get("/reconciliations/{recon_id}/export")
def export(recon_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    params = request.query_params
    view, fmt, side = params.get("view") or "matches", params.get("format") or "csv", params.get("side") or None
    problems = []
    if view not in api.EXPORT_VIEWS:
        problems.append(f"view {view!r} is not one of {', '.join(api.EXPORT_VIEWS)}")
    if fmt not in api.EXPORT_FORMATS:
        problems.append(f"format {fmt!r} is not one of {', '.join(api.EXPORT_FORMATS)}")
    if side not in (None, "left", "right"):
        problems.append(f"side {side!r} is not one of left, right")
    if problems:
        raise HTTPException(422, "; ".join(problems))
    return api.export(svc(request), session.principal, recon_id, view, fmt, side)
