"""Manual review of the current run: confirm, reject, link, unlink. Every action is audited.

Transitions (anything else is 409 naming the current status)::

    suggested ──confirm──► confirmed          suggested ──reject──► rejected
    suggested | confirmed ──unlink──► unlinked
    (unmatched records) ──link──► confirmed (origin manual)

Rejected and unlinked matches are kept (inactive) for the audit trail; their records become
unmatched. Reviewed confirmed matches are carried over to the next run.
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from app.auth import Principal
from app.web.deps import audit, error, require, services
from app.web.results import current_run
from app.web.services import Services

router = APIRouter(prefix="/api/v1", tags=["review"])

_STATE_COLS = ("id", "run_id", "reconciliation_id", "kind", "status", "origin", "rule", "reviewed_by", "reviewed_at")


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=2000, description="why; kept in the audit trail")


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    left_ids: list[int] = Field(min_length=1, max_length=1000, description="record ids of the left side")
    right_ids: list[int] = Field(min_length=1, max_length=1000, description="record ids of the right side")
    note: str | None = Field(default=None, max_length=2000)


def _transition(svc: Services, request: Request, who: Principal, match_id: int, action: str,
                allowed_from: tuple[str, ...], to: str, note: str | None) -> dict[str, Any]:
    db = svc.require_db()
    with db.primary() as conn:
        row = conn.execute(f"SELECT {', '.join('m.' + c for c in _STATE_COLS)}, c.current_run_id FROM matches m "
                           "JOIN reconciliations c ON c.id = m.reconciliation_id WHERE m.id = %s FOR UPDATE OF m",
                           (match_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"match {match_id} does not exist")
        before = dict(zip(_STATE_COLS, row[:-1]))
        if before["run_id"] != row[-1]:
            raise HTTPException(409, f"match {match_id} belongs to run {before['run_id']}, not the current run "
                                f"{row[-1]} of reconciliation {before['reconciliation_id']}; review the current run")
        if before["status"] not in allowed_from:
            raise HTTPException(409, f"cannot {action} match {match_id}: its status is {before['status']!r}, "
                                f"{action} applies to {' or '.join(repr(s) for s in allowed_from)}")
        after_row = conn.execute(
            f"UPDATE matches SET status = %s, reviewed_by = %s, reviewed_at = now(), updated_at = now() "
            f"WHERE id = %s RETURNING {', '.join(_STATE_COLS)}", (to, who.name, match_id)).fetchone()
        after = dict(zip(_STATE_COLS, after_row))
        if to in ("rejected", "unlinked"):
            conn.execute("UPDATE match_items SET active = false WHERE match_id = %s", (match_id,))
        conn.execute("UPDATE runs SET review_version = review_version + 1 WHERE id = %s", (before["run_id"],))
        audit(conn, request, who, f"match.{action}", "match", match_id, before=before, after={**after, "note": note})
    return after


_TRANSITION_ERRORS = error(409, "the match is not in the current run, or its status does not allow this; "
                           "detail names the status")


@router.post("/matches/{match_id}/confirm", summary="Confirm a suggested match", responses=_TRANSITION_ERRORS)
def confirm(match_id: int, request: Request, body: ReviewIn | None = None, svc: Services = Depends(services),
            who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    return _transition(svc, request, who, match_id, "confirm", ("suggested",), "confirmed", (body or ReviewIn()).note)


@router.post("/matches/{match_id}/reject", summary="Reject a suggested match (its records become unmatched)",
             responses=_TRANSITION_ERRORS)
def reject(match_id: int, request: Request, body: ReviewIn | None = None, svc: Services = Depends(services),
           who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    return _transition(svc, request, who, match_id, "reject", ("suggested",), "rejected", (body or ReviewIn()).note)


@router.post("/matches/{match_id}/unlink", summary="Dissolve a match (its records become unmatched)",
             responses=_TRANSITION_ERRORS)
def unlink(match_id: int, request: Request, body: ReviewIn | None = None, svc: Services = Depends(services),
           who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    return _transition(svc, request, who, match_id, "unlink", ("suggested", "confirmed"), "unlinked",
                       (body or ReviewIn()).note)


@router.post("/reconciliations/{recon_id}/links", status_code=201,
             summary="Link unmatched records manually (1:1, 1:n or n:1); the match is confirmed",
             responses=error(409, "no finished run yet, or a record is already in an active match (problems)"))
def link(recon_id: int, body: LinkIn, request: Request, svc: Services = Depends(services),
         who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    db = svc.require_db()
    run_id = current_run(db, recon_id)
    if len(body.left_ids) > 1 and len(body.right_ids) > 1:
        raise HTTPException(422, "a link is one-to-one, one-to-many or many-to-one; got "
                            f"{len(body.left_ids)} left and {len(body.right_ids)} right records")
    wanted = {("left", i) for i in body.left_ids} | {("right", i) for i in body.right_ids}
    if len(wanted) != len(body.left_ids) + len(body.right_ids):
        raise HTTPException(422, "a record id is listed twice")
    with db.primary() as conn:
        rows = conn.execute("SELECT id, side, amount_minor, currency, booking_date FROM records "
                            "WHERE reconciliation_id = %s AND id = ANY(%s) FOR SHARE",
                            (recon_id, [i for _, i in wanted])).fetchall()
        found = {(r[1], r[0]): r for r in rows}
        problems = [{"field": f"body.{side}_ids", "value": i,
                     "reason": f"record {i} is not a {side} record of reconciliation {recon_id}"}
                    for side, i in sorted(wanted) if (side, i) not in found]
        if problems:
            raise HTTPException(422, {"detail": "cannot link", "problems": problems})
        currencies = sorted({r[3] for r in rows})
        if len(currencies) != 1:
            raise HTTPException(422, f"records of different currencies {currencies} cannot be linked")
        left_sum = sum(r[2] for r in rows if r[1] == "left")
        right_sum = sum(r[2] for r in rows if r[1] == "right")
        dates = [r[4] for r in rows]
        kind = "pair" if len(rows) == 2 else "group"
        try:
            with conn.transaction():
                mrow = conn.execute(
                    "INSERT INTO matches (run_id, reconciliation_id, kind, status, origin, rule, criteria, "
                    "amount_delta_minor, date_delta_days, left_amount_minor, right_amount_minor, currency, "
                    "reviewed_by, reviewed_at) VALUES (%s, %s, %s, 'confirmed', 'manual', 'manual', '[]', %s, %s, %s, "
                    "%s, %s, %s, now()) RETURNING id",
                    (run_id, recon_id, kind, right_sum - left_sum, (max(dates) - min(dates)).days, left_sum,
                     right_sum, currencies[0], who.name)).fetchone()
                match_id = int(mrow[0])
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO match_items (match_id, run_id, record_id, side) VALUES (%s,%s,%s,%s)",
                                    [(match_id, run_id, i, side) for side, i in sorted(wanted)])
        except psycopg.errors.UniqueViolation as exc:
            busy = conn.execute("SELECT mi.record_id, mi.match_id FROM match_items mi WHERE mi.run_id = %s AND "
                                "mi.active AND mi.record_id = ANY(%s) ORDER BY 1", (run_id, [i for _, i in wanted])).fetchall()
            raise HTTPException(409, {"detail": "record(s) already in an active match; unlink or reject it first",
                                      "problems": [f"record {r} is in match {m}" for r, m in busy]}) from exc
        conn.execute("UPDATE runs SET review_version = review_version + 1 WHERE id = %s", (run_id,))
        after = {"id": match_id, "run_id": run_id, "kind": kind, "status": "confirmed", "origin": "manual",
                 "left_ids": body.left_ids, "right_ids": body.right_ids, "amount_delta_minor": right_sum - left_sum,
                 "currency": currencies[0], "note": body.note}
        audit(conn, request, who, "match.link", "match", match_id, before=None, after=after)
    return after
