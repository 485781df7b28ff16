"""Run a reconciliation with a rule set edited as a form; follow the run's progress live.

The form starts from the rules of the latest run (else the reconciliation's, else the engine's
defaults). The progress fragment re-requests itself every second while the run is queued or
running (htmx ``load delay:1s``) and stops once it has succeeded or failed; a failed run shows
the worker's reason.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from app.ui import api, ruleform
from app.ui.render import is_htmx, page
from app.ui.routing import posted, signed_in
from app.ui.session import UISession
from app.ui.views.common import redirect, svc, ui_router

router = ui_router()

_ERROR_CLASS = re.compile(r"^[A-Za-z]*Error: ")
"""The worker stores ``PermanentJobError: run 7: ...``; people read the part after the class."""


def _starting_rules(request: Request, session: UISession, rec: dict[str, Any]) -> tuple[Any, str]:
    if rec["runs"]:
        last = api.run(svc(request), session.principal, rec["runs"][0]["id"])
        if last.get("rules"):
            return last["rules"], f"the rules of run {last['id']}"
    if rec.get("rules"):
        return rec["rules"], "the reconciliation's rules"
    return None, "the engine's default rules"


@router.get("/reconciliations/{recon_id}/run")
def run_form(recon_id: int, request: Request, session: UISession = Depends(signed_in("operator"))) -> Response:
    rec = api.reconciliation(svc(request), session.principal, recon_id)
    rules, origin = _starting_rules(request, session, rec)
    return page(request, "run_form.html", rec=rec, form=ruleform.form_from_rules(rules), origin=origin,
                dry_run=False, error=None)


@router.post("/reconciliations/{recon_id}/run")
def run_submit(recon_id: int, request: Request, session: UISession = Depends(signed_in("operator")),
               form: FormData = Depends(posted)) -> Response:
    services = svc(request)
    rec = api.reconciliation(services, session.principal, recon_id)
    raw, problems = ruleform.raw_from_form(form)
    op = str(form.get("op") or "run")
    dry_run = form.get("dry_run") == "1"
    if op != "run":
        raw = ruleform.apply_op(raw, op, str(form.get("add_kind") or ""))
        return page(request, "run_form.html", rec=rec, form=ruleform.form_from_raw(raw), origin="your edits",
                    dry_run=dry_run, error=None)
    rules, errors = ruleform.validate(raw)
    if rules is None or problems:
        shown = ruleform.form_from_raw(raw, errors)
        shown.errors[:0] = problems
        return page(request, "run_form.html", status=422, rec=rec, form=shown, origin="your edits", dry_run=dry_run,
                    error="The rule set has problems; they are marked below.")
    try:
        started = api.start_run(services, request, session.principal, recon_id, rules, dry_run)
    except HTTPException as exc:
        detail = exc.detail.get("detail") if isinstance(exc.detail, dict) else exc.detail
        return page(request, "run_form.html", status=exc.status_code, rec=rec, form=ruleform.form_from_raw(raw),
                    origin="your edits", dry_run=dry_run, error=str(detail))
    return redirect(f"/ui/runs/{started['id']}", request)


def _run(request: Request, session: UISession, run_id: int) -> dict[str, Any]:
    run = api.run(svc(request), session.principal, run_id)
    progress = run.get("progress") or {}
    total, done = progress.get("total") or 0, progress.get("processed") or 0
    run["percent"] = 100 if run["status"] == "succeeded" else (int(100 * done / total) if total else 0)
    run["finished"] = run["status"] in ("succeeded", "failed")
    reason = run.get("error") or (run.get("job") or {}).get("last_error") or ""
    run["reason"] = _ERROR_CLASS.sub("", reason)
    return run


@router.get("/runs/{run_id}")
def show_run(run_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    run = _run(request, session, run_id)
    rec = api.reconciliation(svc(request), session.principal, run["reconciliation_id"])
    return page(request, "run.html", run=run, rec=rec)


@router.get("/runs/{run_id}/progress")
def run_progress(run_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    run = _run(request, session, run_id)
    if not is_htmx(request):
        return redirect(f"/ui/runs/{run_id}")
    return page(request, "fragments/progress.html", run=run)
