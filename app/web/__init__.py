"""HTTP API of the reconciliation service (FastAPI). Build it with :func:`create_app`."""

from app.web.application import create_app

__all__ = ["create_app"]
