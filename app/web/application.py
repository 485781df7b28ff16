"""Application factory: wires settings, pools, middleware, routers and error handlers.

Every error is one shape, :class:`~app.web.deps.ErrorBody` (``detail`` a string, ``problems``
a list), and the OpenAPI document says so: :func:`document_errors` adds the errors every
operation under ``/api/`` can answer (401, 403, 429 from the token; 422 from the request guard
and validation; 503 from the database; 404 where the path names an object; 413 where there is
a body) and replaces FastAPI's own 422 model, whose ``detail`` is an array. Errors particular
to one route (409, 415) are declared on that route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import metrics
from app.cache import CacheUnavailable
from app.db import DatabaseUnavailable
from app.settings import Settings, get_settings
from app.web.deps import ErrorBody
from app.web.middleware import ObservabilityMiddleware, RequestGuardMiddleware
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
             response_model=Readiness,
             responses={503: {"model": Readiness, "description": "a dependency is unreachable; body names which"}})
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
    _document_errors_in_openapi(app)
    app.add_middleware(RequestGuardMiddleware, max_json_bytes=settings.max_json_bytes,
                       max_upload_bytes=settings.max_upload_bytes, prefix=API_PREFIX)
    if settings.fault_rate:  # release drills: a version that fails (inside the metrics)
        from app.web.faults import FaultInjectionMiddleware

        app.add_middleware(FaultInjectionMiddleware, rate=settings.fault_rate)
    app.add_middleware(ObservabilityMiddleware, slot=settings.slot, version=settings.version)
    from app import tracing

    tracing.instrument_app(app, settings)
    return app


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="database, redis: 'ok' or 'unavailable: why'")
    failed: list[str]


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
            reason = _shorten(str(err.get("msg", "")).removeprefix("Value error, "), 500)
            problems.append({"field": loc, "reason": reason, "value": _safe(err.get("input"))})
        return JSONResponse({"detail": "invalid request", "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = exc.detail if isinstance(exc.detail, dict) else {"detail": exc.detail}
        return JSONResponse(jsonable_encoder(body), status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, and encodable (a lone surrogate is shown escaped)."""
    text = text if len(text) <= limit else text[:limit] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe(value: object) -> object:
    """A bad input, fit to quote: short, and encodable."""
    if isinstance(value, str):
        return _shorten(value, 200)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return repr(value)[:200]


# -- the errors in the OpenAPI document --------------------------------------------------------

_ERROR_REF = "#/components/schemas/ErrorBody"


def _error_schemas() -> dict[str, Any]:
    """ErrorBody and the models it refers to, as OpenAPI components."""
    schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "ErrorBody": schema}


API_PREFIX = "/api/"
"""Every route under it takes a bearer token (``require(role)``) and is checked by the request guard."""


def operation_errors(path: str, operation: dict[str, Any]) -> dict[int, str]:
    """The errors an API operation can answer whatever its own logic, read from its description."""
    errors = {
        401: "missing, unknown or revoked API token",
        403: "the token's role may not do this",
        422: "invalid request: `problems` names each field and why",
        429: "rate limit exceeded; retry after Retry-After seconds",
        503: "database unavailable; retry after Retry-After seconds",
    }
    if "{" in path:
        errors[404] = "the object the path names does not exist"
    if "requestBody" in operation:
        errors[413] = "request body over its limit (RECON_MAX_JSON_BYTES, or RECON_MAX_UPLOAD_BYTES for files)"
    return errors


def document_errors(openapi: dict[str, Any]) -> None:
    """Declare in `openapi` (in place) the errors of every API operation, all as ErrorBody."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(_error_schemas())
    body = {"application/json": {"schema": {"$ref": _ERROR_REF}}}
    for path, item in openapi["paths"].items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path.startswith(API_PREFIX):
                for status, description in operation_errors(path, operation).items():
                    responses.setdefault(str(status), {"description": description})
            for status, response in responses.items():
                if status.startswith(("4", "5")) and (path.startswith(API_PREFIX)
                                                      or "HTTPValidationError" in str(response.get("content"))):
                    response["content"] = body
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def _document_errors_in_openapi(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(original())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
