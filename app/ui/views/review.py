"""Review: confirm, reject, unlink one match; confirm many at once; link records by hand.

Every action is the API's own (:mod:`app.ui.api`), so each writes its ``audit_log`` row in the
transaction of the change. With htmx a row action answers the updated row (the list stays
where it was, the keyboard focus too); without it, a redirect back with a message.
"""

from __future__ import annotations

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from app.ui import api, queries
from app.ui.render import is_htmx, page
from app.ui.routing import posted, signed_in
from app.ui.session import UISession
from app.ui.views.common import filters_from, flash, id_list, redirect, svc, ui_router, url

router = ui_router()

BULK_LIMIT = 500
"""Matches confirmed by one bulk request (each is its own audited transaction)."""

LINK_PAGE = 50


def _back(form: FormData, default: str) -> str:
    back = str(form.get("back") or "")
    return back if back.startswith("/ui/") and not back.startswith("//") else default


@router.post("/matches/{match_id}/{action}")
def review_one(match_id: int, action: str, request: Request, session: UISession = Depends(signed_in("operator")),
               form: FormData = Depends(posted)) -> Response:
    if action not in api.REVIEW_ACTIONS:
        raise HTTPException(404, f"action {action!r} does not exist; one of {', '.join(api.REVIEW_ACTIONS)}")
    services = svc(request)
    note = str(form.get("note") or "").strip() or None
    done = api.review_action(services, request, session.principal, match_id, action, note)
    back = _back(form, f"/ui/matches/{match_id}")
    if is_htmx(request) and form.get("row") == "1":
        m = queries.match(services.require_db(), match_id)
        return page(request, "fragments/match_row.html", m=m, back=back, just=done["status"],
                    selectable=form.get("sel") == "1")
    flash(request, session, f"Match {match_id} is now {done['status']}.")
    return redirect(back, request)


@router.post("/reconciliations/{recon_id}/bulk-confirm")
def bulk_confirm(recon_id: int, request: Request, session: UISession = Depends(signed_in("operator")),
                 form: FormData = Depends(posted)) -> Response:
    services = svc(request)
    current = api.current_results(services, recon_id)
    filters = filters_from(form)
    if form.get("scope") == "filtered":
        with api.reading(services, current) as conn:
            ids = queries.matching_ids(conn, queries.TABS["suggested"], int(current.run_id or 0), recon_id, filters,
                                       BULK_LIMIT + 1)
    else:
        ids = id_list(form.getlist("match_ids"), "match")
        if not ids:
            raise HTTPException(422, "select at least one match (the boxes in the first column), or confirm "
                                "every match that fits the filter")
    more = len(ids) > BULK_LIMIT
    ids = ids[:BULK_LIMIT]
    note = str(form.get("note") or "").strip() or None
    confirmed, skipped = 0, []
    for match_id in ids:
        try:
            api.review_action(services, request, session.principal, match_id, "confirm", note)
            confirmed += 1
        except HTTPException as exc:
            if exc.status_code not in (404, 409):
                raise
            skipped.append(match_id)
    message = f"Confirmed {confirmed} match{'es' if confirmed != 1 else ''}."
    if skipped:
        message += f" {len(skipped)} skipped (no longer suggested): {', '.join(map(str, skipped[:10]))}" \
                   f"{'...' if len(skipped) > 10 else ''}."
    if more:
        message += f" More matches fit the filter: one request confirms at most {BULK_LIMIT}; press again."
    flash(request, session, message)
    return redirect(url(f"/ui/reconciliations/{recon_id}/results", tab="suggested", **filters.as_params()), request)


@router.get("/reconciliations/{recon_id}/link")
def link_form(recon_id: int, request: Request, session: UISession = Depends(signed_in("operator"))) -> Response:
    services = svc(request)
    rec = api.reconciliation(services, session.principal, recon_id)
    if rec["current_run_id"] is None:
        raise HTTPException(409, f"reconciliation {recon_id} has no finished run yet; run it first")
    filters = filters_from(request.query_params)
    current = api.current_results(services, recon_id)
    try:
        with api.reading(services, current) as conn:
            sides = {side: queries.result_page(conn, queries.TABS[side], int(current.run_id or 0), recon_id, filters,
                                               limit=LINK_PAGE) for side in ("left", "right")}
    except queries.BadQuery as exc:
        raise HTTPException(422, str(exc)) from None
    return page(request, "link.html", rec=rec, sides=sides, filters=filters, limit=LINK_PAGE,
                here=url(f"/ui/reconciliations/{recon_id}/link", **filters.as_params()))


@router.post("/reconciliations/{recon_id}/link")
def link(recon_id: int, request: Request, session: UISession = Depends(signed_in("operator")),
         form: FormData = Depends(posted)) -> Response:
    left = id_list(form.getlist("left_ids"), "left record")
    right = id_list(form.getlist("right_ids"), "right record")
    if not left or not right:
        raise HTTPException(422, "select at least one record on each side to link")
    note = str(form.get("note") or "").strip() or None
    done = api.link(svc(request), request, session.principal, recon_id, left, right, note)
    flash(request, session, f"Linked {len(left)} left and {len(right)} right record(s) as match {done['id']} "
          f"(confirmed, manual).")
    return redirect(_back(form, f"/ui/reconciliations/{recon_id}/link"), request)
