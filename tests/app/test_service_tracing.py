"""OpenTelemetry: off by default; with a provider, every request yields a server span (in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app import tracing
from app.settings import Settings


@pytest.fixture()
def exporter() -> Iterator[object]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use_provider(provider)
    try:
        yield memory
    finally:
        tracing.use_provider(None)


def test_tracing_is_off_by_default() -> None:
    assert Settings().otlp_endpoint is None
    assert tracing.tracer_provider(Settings()) is None


def test_requests_produce_spans_with_the_route_template(settings: Settings, exporter, as_viewer) -> None:  # type: ignore[no-untyped-def]
    from app.web import create_app

    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/runs/424242", headers=as_viewer).status_code == 404
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER"]
    assert server, [s.name for s in spans]
    span = server[-1]
    assert span.name == "GET /api/v1/runs/{run_id}"
    assert span.attributes.get("http.route") == "/api/v1/runs/{run_id}"
    assert span.attributes.get("http.status_code", span.attributes.get("http.response.status_code")) == 404


def test_otlp_endpoint_builds_an_http_exporter() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = tracing._provider_from_settings(Settings(otlp_endpoint="http://127.0.0.1:4318", version="1.0"))
    exporters = [p.span_exporter for p in provider._active_span_processor._span_processors]
    assert isinstance(exporters[0], OTLPSpanExporter)
    assert exporters[0]._endpoint == "http://127.0.0.1:4318/v1/traces"
    assert provider.resource.attributes["service.version"] == "1.0"
    provider.shutdown()


def test_serve_exports_spans_over_otlp_http(spawn) -> None:  # type: ignore[no-untyped-def]
    """A real `serve` process with RECON_OTLP_ENDPOINT posts protobuf spans to the collector URL."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import httpx

    from testing.servers import free_port

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = HTTPServer(("127.0.0.1", free_port()), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    port = free_port()
    proc = spawn("serve", "--port", str(port), env={
        "RECON_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}", "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/api/v1/runs/1", timeout=1).status_code == 401:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, proc.output()[-2000:]
        path, body = received[0]
        assert path == "/v1/traces"
        assert b"/api/v1/runs/{run_id}" in body and b"recon" in body
    finally:
        proc.stop()
        collector.shutdown()
