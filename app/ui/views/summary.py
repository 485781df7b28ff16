"""The summary page: counts and amounts (the API's live summary), match rate per rule, and the
matched-vs-unmatched chart over booking dates (cached in Redis per run and review version)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Depends, HTTPException, Request
from starlette.responses import Response

from app.records import CURRENCY_EXPONENTS
from app.ui import api, chart, queries
from app.ui.render import page
from app.ui.routing import signed_in
from app.ui.session import UISession
from app.ui.views.common import cached, svc, ui_router

router = ui_router()


def _per_rule(summary: dict[str, Any], totals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records = sum(a["count"] for a in summary["amounts"])
    engine = {r.get("rule"): r for r in (summary.get("engine") or [])}
    rows: dict[str, dict[str, Any]] = {}
    for t in totals:
        row = rows.setdefault(t["rule"], {"rule": t["rule"], "matches": 0, "records": 0, "amounts": []})
        row["matches"] += t["matches"]
        row["records"] += t["left"] + t["right"]
        row["amounts"].append((t["left_amount_minor"], t["currency"]))
    for name in engine:
        rows.setdefault(name, {"rule": name, "matches": 0, "records": 0, "amounts": []})
    out = []
    for name, row in rows.items():
        row["rate"] = row["records"] / records if records else 0.0
        row["engine"] = engine.get(name) or {}
        out.append(row)
    order = list(engine)
    return sorted(out, key=lambda r: order.index(r["rule"]) if r["rule"] in order else len(order))


def _points(request: Request, recon_id: int, current: Any) -> dict[str, list[list[Any]]]:
    """Every currency's chart points, cached under the results' version (a review or upload changes it)."""
    def compute() -> dict[str, list[list[Any]]]:
        with api.reading(svc(request), current) as conn:
            found = queries.amounts_by_date(conn, recon_id, int(current.run_id))
        return {c: [[d.isoformat(), m, u] for d, m, u in points] for c, points in found.items()}

    return cached(request, f"recon:ui:chart:{recon_id}:{current.version}", compute)  # type: ignore[no-any-return]


def _rule_totals(request: Request, recon_id: int, current: Any) -> list[dict[str, Any]]:
    def compute() -> list[dict[str, Any]]:
        with api.reading(svc(request), current) as conn:
            return queries.rule_totals(conn, int(current.run_id or 0))

    return cached(request, f"recon:ui:rules:{recon_id}:{current.version}", compute)  # type: ignore[no-any-return]


@router.get("/reconciliations/{recon_id}/summary")
def summary(recon_id: int, request: Request, session: UISession = Depends(signed_in("viewer"))) -> Response:
    services = svc(request)
    rec = api.reconciliation(services, session.principal, recon_id)
    if rec["current_run_id"] is None:
        return page(request, "summary.html", rec=rec, summary=None, rules=[], chart=None, currencies=[],
                    currency=None)
    current = api.current_results(services, recon_id)
    # The API's live summary, the per-rule totals and the chart's points are independent reads:
    # run them side by side (each on its own pooled connection), so a page right after a review
    # costs the slowest of them, not their sum.
    with ThreadPoolExecutor(3) as pool:
        summary_f = pool.submit(api.summary, services, session.principal, recon_id)
        rules_f = pool.submit(_rule_totals, request, recon_id, current)
        points_f = pool.submit(_points, request, recon_id, current)
        data, totals, points = summary_f.result(), rules_f.result(), points_f.result()
    currencies = sorted(points, key=lambda c: -sum(a["count"] for a in data["amounts"] if a["currency"] == c))
    currency = request.query_params.get("currency") or (currencies[0] if currencies else "EUR")
    if currency not in CURRENCY_EXPONENTS:
        raise HTTPException(422, f"currency {currency!r} is not an ISO 4217 code; one of {', '.join(currencies)}")
    table = {}
    for a in data["amounts"]:
        row = table.setdefault((a["currency"], a["side"]), {"currency": a["currency"], "side": a["side"]})
        row[a["status"]] = a
    shown = chart.build([(dt.date.fromisoformat(d), m, u) for d, m, u in points.get(currency, [])], currency)
    return page(request, "summary.html", rec=rec, summary=data, rules=_per_rule(data, totals), chart=shown,
                currencies=currencies, currency=currency, table=[table[k] for k in sorted(table)])
