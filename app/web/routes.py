"""The versioned API (``/api/v1``): one router per concept, attached by :func:`register`."""

from fastapi import FastAPI

from app.web import admin, reconciliations, results, review


def register(app: FastAPI) -> None:
    """Attach the API routers to ``app``."""
    for module in (reconciliations, results, review, admin):
        app.include_router(module.router)
