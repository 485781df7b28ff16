"""Upload one side: preview (format, column mapping, first rows, problems), fix the mapping, import.

The preview and the import are one form: the file input stays where it is while htmx swaps the
preview below it, so the mapping chosen there is what the import sends. The import itself is
the API's upload path (:func:`app.ui.api.store_upload`): all or nothing, duplicates refused.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import Response

from app.importers import ImportOptions
from app.ui import api, preview
from app.ui.render import is_htmx, page
from app.ui.routing import posted, signed_in
from app.ui.session import UISession
from app.ui.views.common import flash, redirect, svc, ui_router

router = ui_router()

SIDES = {"left": "Left side (e.g. the bank statement)", "right": "Right side (e.g. the ledger export)"}


def _side(side: str) -> str:
    if side not in SIDES:
        raise HTTPException(404, f"side {side!r} does not exist; one of left, right")
    return side


def _file(form: FormData) -> tuple[str, bytes]:
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise HTTPException(422, "choose a file to upload")
    upload.file.seek(0)
    return upload.filename, upload.file.read()


def _render(request: Request, rec: dict[str, Any], side: str, view: preview.Preview | None, status: int = 200,
            **extra: Any) -> Response:
    context = {"rec": rec, "side": side, "side_label": SIDES[side], "pv": view, "fields": preview.MAPPED_FIELDS,
               "delimiters": preview.DELIMITERS, "import_error": None, "import_problems": [], "problem_total": 0,
               **extra}
    if is_htmx(request) and not context["import_error"]:
        return page(request, "fragments/preview.html", status=status, **context)
    return page(request, "upload.html", status=status, **context)


@router.get("/reconciliations/{recon_id}/upload/{side}")
def upload_form(recon_id: int, side: str, request: Request,
                session: UISession = Depends(signed_in("operator"))) -> Response:
    rec = api.reconciliation(svc(request), session.principal, recon_id)
    return _render(request, rec, _side(side), None)


@router.post("/reconciliations/{recon_id}/upload/{side}/preview")
def preview_upload(recon_id: int, side: str, request: Request, session: UISession = Depends(signed_in("operator")),
                   form: FormData = Depends(posted)) -> Response:
    rec = api.reconciliation(svc(request), session.principal, recon_id)
    side = _side(side)
    options, problems = preview.options_from_form(form)
    filename, data = _file(form)
    view = preview.build(data, filename, side, options, truncated=form.get("truncated") == "1")
    view.option_problems = problems
    return _render(request, rec, side, view)


@router.post("/reconciliations/{recon_id}/upload/{side}")
def import_upload(recon_id: int, side: str, request: Request, session: UISession = Depends(signed_in("operator")),
                  form: FormData = Depends(posted)) -> Response:
    services = svc(request)
    rec = api.reconciliation(services, session.principal, recon_id)
    side = _side(side)
    options, problems = preview.options_from_form(form)
    filename, data = _file(form)
    if problems:
        view = preview.build(data, filename, side, ImportOptions())
        view.option_problems = problems
        return _render(request, rec, side, view, status=422, import_error="The import options are not valid.")
    try:
        imp = api.store_upload(services, request, session.principal, recon_id, side, filename, data, options)
    except HTTPException as exc:
        body = exc.detail if isinstance(exc.detail, dict) else {"detail": str(exc.detail)}
        shown = preview.from_api_problems(body.get("problems") or [], data, filename, options)
        view = preview.build(data, filename, side, options)
        return _render(request, rec, side, view, status=exc.status_code, import_error=str(body.get("detail")),
                       import_problems=shown, problem_total=len(body.get("problems") or []))
    message = f"Imported {imp['record_count']} records from “{imp['filename']}” ({imp['format']}) as the {side} side."
    for warning in imp.get("warnings") or []:
        message += f" Note: {warning}"
    flash(request, session, message)
    return redirect(f"/ui/reconciliations/{recon_id}", request)
