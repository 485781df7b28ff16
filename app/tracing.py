"""OpenTelemetry traces over OTLP/HTTP; off unless ``RECON_OTLP_ENDPOINT`` is set.

What is traced, when a tracer provider is configured (from settings: OTLP exporter; or one a
test installed beforehand with :func:`use_provider`: in-memory exporter)::

    SERVER  GET /api/v1/...            instrument_app (FastAPI; not /health, /metrics)
    (INTERNAL job reconcile)           the worker's span per job (app.jobs.worker)
      ├── CLIENT SELECT / INSERT / COPY ...   every psycopg execute, executemany, copy on a
      │                                       pool's connection (cursor_factory, ours)
      └── CLIENT GET / SET / EVAL / SENTINEL ...  every Redis and Sentinel command
                                              (instrument_redis, the official instrumentation)

Attributes follow OpenTelemetry's database conventions, in the mode
``OTEL_SEMCONV_STABILITY_OPT_IN`` selects (default: ``db.system``, ``db.statement``,
``db.name``, ``net.peer.name``/``net.peer.port``; ``database``: ``db.system.name``,
``db.query.text``, ``db.namespace``, ``server.address``/``server.port``). A statement is
the SQL text with its placeholders, never the bound values; a Redis statement is the command
with every argument replaced by ``?`` (``SET ? ? ? ?``). No DSN, password or key is recorded.

Trap: a database span is only started under a current span (a request or a job). The pools'
own connection set-up, the worker's LISTEN/claim poll and its heartbeat thread run outside
any and are not recorded, so an idle worker exports nothing. psycopg errors can quote row
values (``DETAIL: Key (...)=(...)``): a failed query's span carries the error class and
SQLSTATE, not the message.

Nothing is imported from OpenTelemetry when tracing is off, so the service starts without
the packages. ``opentelemetry-instrumentation-psycopg`` is not used: no release matches the
locked ``opentelemetry-instrumentation`` (docs/app.md, Tracing).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Params, Query, QueryNoTemplate
from psycopg.copy import Copy
from psycopg.rows import Row

from app.settings import Settings

log = logging.getLogger(__name__)

_provider: Any = None


def use_provider(provider: Any) -> None:
    """Install ``provider`` (a ``TracerProvider``) for apps created afterwards (tests)."""
    global _provider
    _provider = provider


def _provider_from_settings(settings: Settings) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = settings.otlp_endpoint or ""
    if not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    resource = Resource.create({"service.name": settings.service_name, "service.version": settings.version,
                                "deployment.slot": settings.slot})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
    return provider


def tracer_provider(settings: Settings) -> Any:
    """The provider to use, or ``None`` when tracing is off."""
    global _provider
    if _provider is None and settings.otlp_endpoint:
        _provider = _provider_from_settings(settings)
        log.info("OTLP tracing on", extra={"endpoint": settings.otlp_endpoint})
    return _provider


def instrument_app(app: Any, settings: Settings) -> None:
    provider = tracer_provider(settings)
    if provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls="health,metrics")


def get_tracer(settings: Settings, name: str = "app") -> Any:
    """A tracer (no-op when tracing is off) for manual spans in the worker."""
    provider = tracer_provider(settings)
    if provider is None:
        from contextlib import nullcontext

        class _Noop:
            def start_as_current_span(self, *_a: Any, **_k: Any) -> Any:
                return nullcontext()

        return _Noop()
    return provider.get_tracer(name)


def _semconv_modes() -> tuple[Any, Any]:
    """(database mode, network mode) as ``OTEL_SEMCONV_STABILITY_OPT_IN`` sets them for every
    instrumentation in the process (the Redis one reads the same)."""
    from opentelemetry.instrumentation._semconv import (
        _OpenTelemetrySemanticConventionStability as Stability,
    )
    from opentelemetry.instrumentation._semconv import _OpenTelemetryStabilitySignalType as Signal

    Stability._initialize()
    return (Stability._get_opentelemetry_stability_opt_in_mode(Signal.DATABASE),
            Stability._get_opentelemetry_stability_opt_in_mode(Signal.HTTP))


# -- PostgreSQL (psycopg 3) -------------------------------------------------------------------

def cursor_factory(settings: Settings) -> type[psycopg.Cursor[Any]] | None:
    """The cursor class for the pools' connections: :class:`TracedCursor` bound to the
    provider when tracing is on, ``None`` (psycopg's own) when it is off."""
    provider = tracer_provider(settings)
    if provider is None:
        return None
    db_mode, net_mode = _semconv_modes()
    return type("TracedCursor", (TracedCursor,), {
        "_tracer": provider.get_tracer("app.db"), "_db_mode": db_mode, "_net_mode": net_mode})


class TracedCursor(psycopg.Cursor[Row]):
    """A client cursor whose ``execute``, ``executemany`` and ``copy`` are CLIENT spans.

    Only :func:`cursor_factory`'s subclass is usable (it carries the tracer). Server-side
    (named) cursors are not covered: psycopg builds those from ``server_cursor_factory``.
    """

    _tracer: Any
    _db_mode: Any
    _net_mode: Any

    def execute(self, query: QueryNoTemplate, params: Params | None = None, *,  # type: ignore[override]
                prepare: bool | None = None, binary: bool | None = None) -> TracedCursor[Row]:
        with self._span(query):
            super().execute(query, params, prepare=prepare, binary=binary)
        return self

    def executemany(self, query: Query, params_seq: Iterable[Params], *, returning: bool = False) -> None:
        with self._span(query):
            super().executemany(query, params_seq, returning=returning)

    @contextlib.contextmanager
    def copy(self, statement: Query, params: Params | None = None, *, writer: Any = None) -> Iterator[Copy]:
        """The span covers the whole ``with`` block: the rows move inside it."""
        with self._span(statement), super().copy(statement, params, writer=writer) as copy:
            yield copy

    @contextlib.contextmanager
    def _span(self, query: Query) -> Iterator[None]:
        from opentelemetry import trace

        statement = _statement(query, self)
        if not statement.strip() or not trace.get_current_span().get_span_context().is_valid:
            yield  # the pool's liveness check (an empty query), or no request/job to belong to
            return
        operation = statement.split(None, 1)[0].upper()
        with self._tracer.start_as_current_span(operation, kind=trace.SpanKind.CLIENT,
                                                attributes=self._attributes(statement, operation),
                                                record_exception=False, set_status_on_exception=False) as span:
            try:
                yield
            except psycopg.Error as exc:
                _failed(span, type(exc).__qualname__, exc.sqlstate)
                raise
            except Exception as exc:
                _failed(span, type(exc).__qualname__, None)
                raise

    def _attributes(self, statement: str, operation: str) -> dict[str, Any]:
        from opentelemetry.instrumentation._semconv import (
            _set_db_name,
            _set_db_operation,
            _set_db_statement,
            _set_db_system,
            _set_db_user,
            _set_http_net_peer_name_client,
            _set_http_peer_port_client,
        )

        info = self.connection.info
        attributes: dict[str, Any] = {}
        _set_db_system(attributes, "postgresql", self._db_mode)
        _set_db_name(attributes, info.dbname, self._db_mode)
        _set_db_user(attributes, info.user, self._db_mode)
        _set_db_operation(attributes, operation, self._db_mode)
        _set_db_statement(attributes, statement, self._db_mode)
        _set_http_net_peer_name_client(attributes, info.host, self._net_mode)
        _set_http_peer_port_client(attributes, info.port, self._net_mode)
        return attributes


def _statement(query: Query, cursor: psycopg.Cursor[Any]) -> str:
    """The SQL as written, placeholders and all (a composed query is rendered: identifiers only).

    Anything else (a Python 3.14 template string carries its values) gives ``""``: no span.
    """
    if isinstance(query, sql.Composable):
        return query.as_string(cursor)
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    return query if isinstance(query, str) else ""


def _failed(span: Any, error_type: str, sqlstate: str | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error_type)
    if sqlstate:
        span.set_attribute("db.response.status_code", sqlstate)
    span.set_status(Status(StatusCode.ERROR, error_type))


# -- Redis (redis-py, through Sentinel) --------------------------------------------------------

def instrument_redis(settings: Settings, *clients: Any) -> None:
    """Trace every command of ``clients`` (the master client and the Sentinel clients).

    Trap: a client resolved through Sentinel has no host in its pool's settings, so the
    official instrumentation reports ``localhost:6379``; the hooks below put the master the
    Sentinels named instead (known once the pool has connected: a command that fails before
    any connection keeps the library's default).
    """
    provider = tracer_provider(settings)
    if provider is None:
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    _, net_mode = _semconv_modes()

    def master_address(span: Any, instance: Any, *_: Any) -> None:
        from opentelemetry.instrumentation._semconv import (
            _set_http_net_peer_name_client,
            _set_http_peer_port_client,
        )

        address = getattr(getattr(instance, "connection_pool", None), "master_address", None)
        if not span.is_recording() or not address:
            return
        attributes: dict[str, Any] = {}
        _set_http_net_peer_name_client(attributes, str(address[0]), net_mode)
        _set_http_peer_port_client(attributes, int(address[1]), net_mode)
        span.set_attributes(attributes)

    for client in clients:
        RedisInstrumentor.instrument_client(client, tracer_provider=provider, request_hook=master_address,
                                            response_hook=master_address)
