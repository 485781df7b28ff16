"""Application factory: wires settings, pools, middleware, routers and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.cache import CacheUnavailable
from app.db import DatabaseUnavailable
from app.settings import Settings, get_settings
from app.web.middleware import ObservabilityMiddleware
from app.web.routes import register as register_routes
from app.web.services import Services, build_services

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. ``/health`` never touches PostgreSQL or Redis."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = build_services(settings)
        app.state.services = services
        await run_in_threadpool(_warm_up_importers)
        try:
            yield
        finally:
            if services.db is not None:
                services.db.close()
            services.cache.close()

    app = FastAPI(
        title="Reconciliation service",
        version=settings.version,
        description="Upload two sides of financial records, match them, review and export the result.",
        lifespan=lifespan,
    )

    @app.get("/health", tags=["operations"], summary="Liveness: the process is up")
    def health() -> dict[str, str]:
        return {"status": "ok", "slot": settings.slot, "version": settings.version}

    @app.get("/ready", tags=["operations"], summary="Readiness: PostgreSQL and Redis reachable",
             responses={503: {"description": "a dependency is unreachable; body names which"}})
    async def ready(request: Request) -> JSONResponse:
        services: Services = request.app.state.services

        def check_db() -> str:
            try:
                services.require_db().ping(timeout=2.0)
                return "ok"
            except DatabaseUnavailable as exc:
                return f"unavailable: {exc}"

        def check_redis() -> str:
            try:
                services.cache.ping()
                return "ok"
            except CacheUnavailable as exc:
                return f"unavailable: {exc}"

        # Both at once: a probe's latency is the slower check, not the sum of two timeouts.
        db_state, redis_state = await asyncio.gather(run_in_threadpool(check_db), run_in_threadpool(check_redis))
        checks = {"database": db_state, "redis": redis_state}
        ok = all(v == "ok" for v in checks.values())
        failed = [k for k, v in checks.items() if v != "ok"]
        return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks, "failed": failed},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        body, content_type = await run_in_threadpool(metrics.render)
        return Response(body, media_type=content_type)

    _install_error_handlers(app)
    register_routes(app)
    if settings.fault_rate:  # release drills: a version that fails (inside the metrics)
        from app.web.faults import FaultInjectionMiddleware

        app.add_middleware(FaultInjectionMiddleware, rate=settings.fault_rate)
    app.add_middleware(ObservabilityMiddleware, slot=settings.slot, version=settings.version)
    from app import tracing

    tracing.instrument_app(app, settings)
    return app


def _warm_up_importers() -> None:
    """Import every format module and parse a two-line CSV before serving.

    Otherwise the first upload in a fresh process pays the imports (polars CSV path, lxml,
    ofxtools, mt940) on a user's clock. A failure here is logged, never fatal: the import
    path then runs lazily as usual.
    """
    import importlib

    from app import importers

    try:
        for module in importers.FORMATS.values():
            importlib.import_module(module)
        importers.parse(b"date,reference,amount,currency\n2026-01-01,W,1.00,EUR\n", filename="warm-up.csv",
                        side="left")
    except Exception as exc:  # noqa: BLE001 - warm-up is an optimisation only
        log.warning("importer warm-up failed", extra={"error": str(exc)})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DatabaseUnavailable)
    async def _db_down(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        log.error("database unavailable", extra={"error": str(exc)})
        return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(psycopg.OperationalError)
    async def _db_lost(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # A connection broke mid-request (server restart, failover): the caller may retry.
        log.error("database connection lost", extra={"error": str(exc)})
        return JSONResponse({"detail": "database connection lost, retry later"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append({"field": loc, "reason": err.get("msg"), "value": _safe(err.get("input"))})
        return JSONResponse({"detail": "invalid request", "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        return JSONResponse(jsonable_encoder(body), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _safe(value: object) -> object:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, str) or len(value) < 200 else value[:200] + "..."
    return repr(value)[:200]
