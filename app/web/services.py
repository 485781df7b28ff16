"""What request handlers need (settings, PostgreSQL pools, Redis cache), built once per process.

Its own module so that the routers and :mod:`app.web.deps` can name :class:`Services` without
importing the application factory, which imports the routers.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.cache import Cache
from app.db import Database, DatabaseUnavailable
from app.settings import Settings, SettingsError


@dataclass
class Services:
    """What request handlers need; built once per process in the lifespan."""

    settings: Settings
    db: Database | None
    cache: Cache
    db_error: str | None = None

    def require_db(self) -> Database:
        """The database, or :class:`DatabaseUnavailable` (HTTP 503) naming why there is none."""
        if self.db is None:
            raise DatabaseUnavailable(self.db_error or "database not configured")
        return self.db


def build_services(settings: Settings) -> Services:
    """Open the pools without waiting for PostgreSQL: a service that starts while its database is
    down still answers ``/health`` and reports the problem on ``/ready``."""
    try:
        db: Database | None = Database(settings).open(wait=False)
        db_error = None
    except SettingsError as exc:
        db, db_error = None, str(exc)
    return Services(settings=settings, db=db, cache=Cache(settings), db_error=db_error)
