"""The UI's routes, one module per page family, under ``/ui`` (left out of the OpenAPI document).

    site             /ui, /ui/health, /ui/static/*
    signin           /ui/signin, /ui/signout
    reconciliations  list, create, overview, delete, audit trail
    imports          upload a side: preview (mapping, first rows, problems), import
    runs             the rule form, a run's progress and outcome
    results          result tabs, one match side by side, exports
    review           confirm, reject, unlink, bulk confirm, link by hand
    summary          counts, amounts, match rate per rule, the chart
"""

from fastapi import APIRouter

from app.ui.routing import UIRoute
from app.ui.views import imports, reconciliations, results, review, runs, signin, site, summary

router = APIRouter(route_class=UIRoute, include_in_schema=False)
for module in (site, signin, reconciliations, imports, runs, results, review, summary):
    router.include_router(module.router)

__all__ = ["router"]
