"""OpenTelemetry: off by default (the app imports nothing of it); with a provider, every request yields
a server span and every psycopg query and Redis command in it a client span of the same trace,
and so does a job run by the worker (in-memory exporter); no secret or bound value in any
attribute."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app import tracing
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DB_PASSWORD = "db-pw-7c1e9f"  # pragma: allowlist secret (a marker: trust auth ignores it)
REDIS_PASSWORD = "redis-pw-4b8d2a"  # pragma: allowlist secret (the default user is nopass)
MARKER = "TRACE-REF-5517"  # a value that travels as bound parameters and COPY rows only


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


def test_nothing_is_imported_from_opentelemetry_when_tracing_is_off() -> None:
    """The app, its pools, its Redis client and the worker's tracer are built without loading any
    OpenTelemetry module beyond what FastAPI and redis-py import by themselves when the package
    is installed (FastAPI's native telemetry, redis-py's optional metrics: both idle without a
    configured provider)."""
    code = ("import sys\n"
            "import fastapi, redis, psycopg, psycopg_pool\n"
            "libraries = {m for m in sys.modules if m.startswith('opentelemetry')}\n"
            "from app.settings import Settings\n"
            "from app.web import create_app\n"
            "from app.db import Database\n"
            "from app.cache import Cache\n"
            "from app.jobs import worker\n"
            "create_app(Settings())\n"
            "db = Database(Settings(database_url='postgresql://u@127.0.0.1:1/x'))\n"
            "assert 'cursor_factory' not in db._primary.kwargs, db._primary.kwargs\n"
            "Cache(Settings(redis_sentinels='127.0.0.1:1'))\n"
            "worker.tracing.get_tracer(Settings())\n"
            "added = sorted(m for m in sys.modules if m.startswith('opentelemetry') and m not in libraries)\n"
            "assert not added, added\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECON_", "OTEL_"))}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


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


def test_serve_exports_spans_over_otlp_http(spawn, as_viewer) -> None:  # type: ignore[no-untyped-def]
    """A real `serve` process with RECON_OTLP_ENDPOINT posts protobuf spans to the collector URL,
    its PostgreSQL and Redis spans among them."""
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
        assert httpx.get(f"{base}/api/v1/runs/424242", headers=as_viewer, timeout=5).status_code == 404

        def exported() -> bytes:
            return b"".join(body for _, body in received)

        deadline = time.monotonic() + 15
        while b"FROM runs WHERE id = %s" not in exported() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert received, proc.output()[-2000:]
        assert {path for path, _ in received} == {"/v1/traces"}
        body = exported()
        assert b"/api/v1/runs/{run_id}" in body and b"recon" in body
        assert b"postgresql" in body and b"FROM runs WHERE id = %s" in body, body[-2000:]
        assert b"redis" in body and b"EVAL ? ? ? ?" in body, body[-2000:]
    finally:
        proc.stop()
        collector.shutdown()


# -- database and Redis spans -----------------------------------------------------------------

@pytest.fixture()
def secret_settings(settings: Settings) -> Settings:
    """The session's servers, reached with a password in the DSN and a Redis ACL login."""
    dsn = settings.require_database_url()
    assert dsn.startswith("postgresql://postgres@"), dsn
    return settings.model_copy(update={
        "database_url": SecretStr(dsn.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)),
        "redis_username": "default", "redis_password": SecretStr(REDIS_PASSWORD)})


def _client_spans(spans: Any, system: str) -> list[Any]:
    return [s for s in spans if s.kind.name == "CLIENT" and s.attributes.get(
        "db.system", s.attributes.get("db.system.name")) == system]


def _statement(span: Any) -> str:
    return str(span.attributes.get("db.statement", span.attributes.get("db.query.text", "")))


def _root(span: Any, spans: Any) -> Any:
    by_id = {s.context.span_id: s for s in spans}
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
    return span


def _attribute_values(spans: Any) -> list[str]:
    out = []
    for span in spans:
        out += [str(v) for v in span.attributes.values()]
        out += [str(v) for event in span.events for v in event.attributes.values()]
    return out


def _assert_client_span_shape(span: Any, system: str) -> None:
    attributes = span.attributes
    assert attributes.get("db.system", attributes.get("db.system.name")) == system, attributes
    assert _statement(span), attributes
    address = attributes.get("net.peer.name", attributes.get("server.address"))
    port = attributes.get("net.peer.port", attributes.get("server.port"))
    assert address == "127.0.0.1" and isinstance(port, int) and port > 0, attributes


def test_a_request_has_database_and_redis_child_spans_without_secrets(secret_settings: Settings, exporter,  # type: ignore[no-untyped-def]
                                                                      tokens: dict[str, str]) -> None:
    from app.web import create_app

    hdrs = {"Authorization": f"Bearer {tokens['operator']}"}
    with TestClient(create_app(secret_settings)) as client:
        recon = client.post("/api/v1/reconciliations", json={"name": f"tracing {MARKER}"}, headers=hdrs)
        assert recon.status_code == 201, recon.text
        exporter.clear()
        upload = client.post(f"/api/v1/reconciliations/{recon.json()['id']}/imports", headers=hdrs,
                             data={"side": "left"}, files={"file": ("left.csv", (
                                 "date,reference,amount,currency\n"
                                 f"2026-01-05,{MARKER},12.34,EUR\n").encode(), "text/csv")})
        assert upload.status_code == 201, upload.text
        assert client.get("/api/v1/runs/424242", headers=hdrs).status_code == 404
    spans = exporter.get_finished_spans()
    servers = {s.name: s for s in spans if s.kind.name == "SERVER"}
    assert set(servers) == {"POST /api/v1/reconciliations/{recon_id}/imports", "GET /api/v1/runs/{run_id}"}
    db_spans, redis_spans = _client_spans(spans, "postgresql"), _client_spans(spans, "redis")
    assert db_spans and redis_spans, [(s.kind.name, s.name) for s in spans]
    for span in db_spans + redis_spans:
        root = _root(span, spans)
        assert root.kind.name == "SERVER" and root.context.trace_id == span.context.trace_id, span.name
        _assert_client_span_shape(span, span.attributes.get("db.system", span.attributes.get("db.system.name")))

    lookup = [s for s in db_spans if _root(s, spans) is servers["GET /api/v1/runs/{run_id}"]]
    assert any(s.name == "SELECT" and "FROM runs WHERE id = %s" in _statement(s) for s in lookup), \
        [_statement(s) for s in lookup]
    copies = [s for s in db_spans if s.name == "COPY"]
    assert copies and _root(copies[0], spans) is servers["POST /api/v1/reconciliations/{recon_id}/imports"]
    assert all(s.attributes.get("db.name", s.attributes.get("db.namespace")) for s in db_spans)
    assert {s.name for s in redis_spans} >= {"EVAL"}, {s.name for s in redis_spans}
    assert all(_statement(s).split(" ", 1)[-1].strip("? ") == "" for s in redis_spans if " " in _statement(s)
               and not s.name.startswith("SENTINEL")), [_statement(s) for s in redis_spans]

    import hashlib

    token = tokens["operator"]
    secrets = [DB_PASSWORD, REDIS_PASSWORD, token, hashlib.sha256(token.encode()).hexdigest(), "postgresql://"]
    leaked = [(secret, value) for value in _attribute_values(spans) for secret in secrets if secret in value]
    assert leaked == []
    client_values = _attribute_values(db_spans + redis_spans)
    bound = [MARKER, "424242", "recon:"]  # a parameter, a path parameter, a Redis key
    assert [(b, v) for v in client_values for b in bound if b in v] == []


def test_without_the_wiring_no_database_span_is_made(secret_settings: Settings, exporter, as_viewer,  # type: ignore[no-untyped-def]
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The pools' cursor class is what makes database spans: without it the request has none."""
    from app.web import create_app

    monkeypatch.setattr(tracing, "cursor_factory", lambda settings: None)
    with TestClient(create_app(secret_settings)) as client:
        assert client.get("/api/v1/runs/424242", headers=as_viewer).status_code == 404
    spans = exporter.get_finished_spans()
    assert _client_spans(spans, "postgresql") == [] and _client_spans(spans, "redis")


def test_a_failed_query_records_its_sqlstate_not_the_row_values(secret_settings: Settings, exporter) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL quotes the conflicting key in the error's DETAIL: the span keeps the class and
    SQLSTATE only, and no exception event (its message would carry the value)."""
    import psycopg

    from app.db import Database

    database = Database(secret_settings, min_size=1, max_size=1, name="recon-tracing-test").open(wait=True)
    tracer = tracing.get_tracer(secret_settings, "test")
    try:
        with tracer.start_as_current_span("parent"), database.primary() as conn:
            conn.execute("CREATE TEMP TABLE traced_keys (k text PRIMARY KEY)")
            conn.execute("INSERT INTO traced_keys VALUES (%s)", (MARKER,))
            with pytest.raises(psycopg.errors.UniqueViolation, match=MARKER):
                conn.execute("INSERT INTO traced_keys VALUES (%s)", (MARKER,))
            conn.rollback()
    finally:
        database.close()
    spans = _client_spans(exporter.get_finished_spans(), "postgresql")
    assert [s.name for s in spans] == ["CREATE", "INSERT", "INSERT"], [s.name for s in spans]
    failed = spans[-1]
    assert failed.status.status_code.name == "ERROR"
    assert failed.attributes["error.type"] == "UniqueViolation"
    assert failed.attributes["db.response.status_code"] == "23505"
    assert failed.events == ()
    assert [v for v in _attribute_values(spans) if MARKER in v or DB_PASSWORD in v] == []


def test_a_job_run_by_the_worker_has_database_and_redis_child_spans(secret_settings: Settings, exporter,  # type: ignore[no-untyped-def]
                                                                    as_operator: dict[str, str], workers) -> None:
    """The worker runs in this process (the session's worker processes are stopped meanwhile, so
    it is the one that takes the job)."""
    from app.jobs.worker import Worker
    from app.web import create_app

    with TestClient(create_app(secret_settings)) as client:
        recon = client.post("/api/v1/reconciliations", json={"name": "tracing job"}, headers=as_operator).json()["id"]
        for side, day in (("left", "05"), ("right", "06")):
            r = client.post(f"/api/v1/reconciliations/{recon}/imports", headers=as_operator, data={"side": side},
                            files={"file": (f"{side}.csv", ("date,reference,amount,currency\n"
                                                            f"2026-01-{day},{MARKER},12.34,EUR\n").encode(),
                                            "text/csv")})
            assert r.status_code == 201, r.text
        had_workers = bool(workers.alive())
        workers.stop_all()
        try:
            run = client.post(f"/api/v1/reconciliations/{recon}/runs", headers=as_operator)
            assert run.status_code == 202, run.text
            run_id = run.json()["id"]
            exporter.clear()
            worker = Worker(secret_settings, name="tracing-test")
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    worker.run(once=True)
                    status = client.get(f"/api/v1/runs/{run_id}", headers=as_operator).json()["status"]
                    if status in ("succeeded", "failed"):
                        break
                assert status == "succeeded", status
            finally:
                worker.close()
        finally:
            if had_workers:
                workers.ensure()
    spans = exporter.get_finished_spans()
    jobs = [s for s in spans if s.name == "job reconcile" and s.attributes.get("recon.job_id") == run.json()["job_id"]]
    assert len(jobs) == 1, [(s.name, dict(s.attributes)) for s in spans if s.name.startswith("job")]
    job = jobs[0]
    inside = [s for s in spans if s is not job and _root(s, spans) is job]
    db_spans, redis_spans = _client_spans(inside, "postgresql"), _client_spans(inside, "redis")
    assert db_spans and redis_spans, [s.name for s in inside]
    for span in db_spans + redis_spans:
        assert span.context.trace_id == job.context.trace_id
        _assert_client_span_shape(span, span.attributes.get("db.system", span.attributes.get("db.system.name")))
    assert any(s.name in ("INSERT", "COPY") for s in db_spans), {s.name for s in db_spans}
    assert {s.name for s in redis_spans} >= {"SET"}, {s.name for s in redis_spans}  # live progress
    values = _attribute_values(spans)
    assert [v for v in values for secret in (DB_PASSWORD, REDIS_PASSWORD, MARKER, "recon:") if secret in v] == []
