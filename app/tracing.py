"""OpenTelemetry traces over OTLP/HTTP; off unless ``RECON_OTLP_ENDPOINT`` is set.

:func:`instrument_app` installs FastAPI instrumentation when a tracer provider is
configured: either from settings (OTLP exporter) or one a test installed beforehand with
:func:`use_provider` (in-memory exporter). Nothing is imported from OpenTelemetry when
tracing is off, so the service starts without the packages.
"""

from __future__ import annotations

import logging
from typing import Any

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
