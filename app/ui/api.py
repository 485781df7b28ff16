"""The one seam between the UI and the HTTP API: the UI acts through the API's own functions.

Creating, deleting, uploading, running, reviewing and exporting call the route functions of
:mod:`app.web` directly, with the signed-in principal in place of the bearer token, so the UI
and the API share every validation, every 409 and every ``audit_log`` row (written with the
UI request's id, the token id and the role, exactly like an API call).

Traps:

* Calling a route function directly skips its ``Depends(require(role))``. The UI route that
  calls it names the role itself (:func:`app.ui.routing.signed_in`).
* Calling it directly also skips FastAPI's defaults for ``Query(...)`` parameters, so every
  parameter is passed explicitly here.
* The upload goes through ``reconciliations._store_upload`` (private): it is the API's whole
  all-or-nothing store path (duplicate check, parse, COPY, audit, metrics) and the UI must not
  fork it. If it is renamed, this module is the only place to change (docs/ui.md asks for it to
  become public).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator
from typing import Any

import psycopg
from fastapi import Request
from starlette.responses import Response

import app.web.admin as admin
import app.web.reconciliations as reconciliations
import app.web.results as results
import app.web.review as review
from app import importers
from app.auth import Principal
from app.db.results import Results
from app.web.services import Services


def _literals(fn: Any, param: str) -> tuple[str, ...]:
    hint = typing.get_type_hints(fn)[param]
    args = typing.get_args(hint)
    # Optional[Literal[...]] unwraps to (Literal[...], NoneType)
    if args and typing.get_origin(args[0]) is typing.Literal:
        args = typing.get_args(args[0])
    return tuple(a for a in args if isinstance(a, str))


EXPORT_VIEWS: tuple[str, ...] = _literals(results.export, "view")
EXPORT_FORMATS: tuple[str, ...] = _literals(results.export, "format")
"""What the API's export offers, read from its signature: a new format there is a new button here."""


def create_reconciliation(svc: Services, request: Request, who: Principal, name: str) -> dict[str, Any]:
    body = reconciliations.ReconciliationIn(name=name)
    return reconciliations.create_reconciliation(body, request, db=svc.require_db(), who=who)


def delete_reconciliation(svc: Services, request: Request, who: Principal, recon_id: int) -> None:
    reconciliations.delete_reconciliation(recon_id, request, db=svc.require_db(), who=who)


def reconciliation(svc: Services, who: Principal, recon_id: int) -> dict[str, Any]:
    """The reconciliation with its imports and latest runs (404 when it does not exist)."""
    return reconciliations.show_reconciliation(recon_id, db=svc.require_db(), _=who)


def store_upload(svc: Services, request: Request, who: Principal, recon_id: int, side: str, filename: str,
                 data: bytes, options: importers.ImportOptions) -> dict[str, Any]:
    return reconciliations._store_upload(svc, request, who, recon_id, side, filename, data, options)


def start_run(svc: Services, request: Request, who: Principal, recon_id: int, rules: Any,
              dry_run: bool) -> dict[str, Any]:
    body = reconciliations.RunIn(rules=rules, dry_run=dry_run)
    return reconciliations.start_run(recon_id, request, body=body, svc=svc, who=who)


def run(svc: Services, who: Principal, run_id: int) -> dict[str, Any]:
    return reconciliations.show_run(run_id, svc=svc, _=who)


def current_results(svc: Services, recon_id: int) -> Results:
    """The current results' identity on the primary (404 no reconciliation, 409 no finished run)."""
    return results.current_results(svc.require_db(), recon_id)


@contextlib.contextmanager
def reading(svc: Services, current: Results) -> Iterator[psycopg.Connection]:
    """A connection that sees ``current`` or newer (the API's read-your-writes rule)."""
    with results.reading(svc.require_db(), current) as conn:
        yield conn


def summary(svc: Services, who: Principal, recon_id: int) -> dict[str, Any]:
    return results.summary(recon_id, svc=svc, _=who)  # type: ignore[no-any-return]


def export(svc: Services, who: Principal, recon_id: int, view: str, fmt: str, side: str | None) -> Response:
    return results.export(recon_id, view=view, format=fmt, side=side, svc=svc, _=who)  # type: ignore[arg-type]


def review_action(svc: Services, request: Request, who: Principal, match_id: int, action: str,
                  note: str | None) -> dict[str, Any]:
    """``confirm``, ``reject`` or ``unlink`` one match (409 names its current status)."""
    fn = {"confirm": review.confirm, "reject": review.reject, "unlink": review.unlink}[action]
    return fn(match_id, request, body=review.ReviewIn(note=note or None), svc=svc, who=who)


REVIEW_ACTIONS = ("confirm", "reject", "unlink")


def link(svc: Services, request: Request, who: Principal, recon_id: int, left_ids: list[int],
         right_ids: list[int], note: str | None) -> dict[str, Any]:
    body = review.LinkIn(left_ids=left_ids, right_ids=right_ids, note=note or None)
    return review.link(recon_id, body, request, svc=svc, who=who)


def audit(svc: Services, who: Principal, entity: str, entity_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The audit trail of one entity, newest first."""
    page = admin.audit_trail(db=svc.require_db(), _=who, entity=entity, entity_id=entity_id, action=None,
                             before=None, limit=limit)
    return page["items"]  # type: ignore[no-any-return]
