"""The versioned API (``/api/v1``): one router per concept, attached by :func:`register`."""

from fastapi import FastAPI

from app.web.admin import router as admin
from app.web.reconciliations import router as reconciliations
from app.web.results import router as results
from app.web.review import router as review

ROUTERS = (reconciliations, results, review, admin)
"""In the order their routes are matched and listed in the OpenAPI document."""


def register(app: FastAPI) -> None:
    """Attach the API routers to ``app``, then the UI's (``/ui``, left out of the OpenAPI document)."""
    for router in ROUTERS:
        app.include_router(router)
    # Imported here, not at the top: app.ui's modules import app.web's, so importing app.ui
    # first (a test, a benchmark) must not re-enter this module half-initialised.
    from app.ui.views import router as ui

    app.include_router(ui)
