"""Pure ASGI middleware: request id, slot/version headers, HTTP metrics, access log.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses (exports) pass through
untouched and the route template is read from ``scope["route"]`` after routing.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logging import request_id_var
from app.metrics import HTTP_DURATION, HTTP_IN_FLIGHT, HTTP_REQUESTS, UNMATCHED_PATH

log = logging.getLogger("app.access")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ObservabilityMiddleware:
    """Stamp every response with ``X-Recon-Slot``, ``X-Recon-Version``, ``X-Request-ID``; count it."""

    def __init__(self, app: ASGIApp, *, slot: str, version: str) -> None:
        self.app = app
        self._static_headers = [(b"x-recon-slot", slot.encode()), (b"x-recon-version", version.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500}
        headers_extra = self._static_headers + [(b"x-request-id", request_id.encode())]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + headers_extra
            await send(message)

        start = time.perf_counter()
        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED_PATH
            method = scope.get("method", "GET")
            status = status_holder["status"]
            HTTP_REQUESTS.labels(method, path, str(status)).inc()
            HTTP_DURATION.labels(method, path).observe(elapsed)
            if path not in ("/health", "/metrics"):
                log.info("request", extra={"method": method, "path": path, "url": scope.get("path"),
                                           "status": status, "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)
