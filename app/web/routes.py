"""The versioned API (``/api/v1``): one router per concept, attached by :func:`register`."""

from fastapi import FastAPI

from app.web.admin import router as admin
from app.web.reconciliations import router as reconciliations
from app.web.results import router as results
from app.web.review import router as review

ROUTERS = (reconciliations, results, review, admin)
"""In the order their routes are matched and listed in the OpenAPI document."""


def register(app: FastAPI) -> None:
    """Attach the API routers to ``app``."""
    for router in ROUTERS:
        app.include_router(router)
