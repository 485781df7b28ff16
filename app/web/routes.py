"""API routes (filled in below the operational endpoints)."""

from fastapi import FastAPI


def register(app: FastAPI) -> None:
    """Attach the versioned API routers to ``app``."""
