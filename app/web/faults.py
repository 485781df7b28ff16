"""Fault injection for release drills: answer a share of API requests with HTTP 500.

Enabled only by ``RECON_FAULT_RATE`` (0..1, default 0: off, the middleware is not even
installed). The release tests deploy a canary with it to prove that the Prometheus gate
reverts a version that fails (docs/releases.md). ``/health``, ``/ready`` and ``/metrics`` are
never faulted: the point is a version that looks alive and still fails its users, which only
the error-rate gate catches.

Installed *inside* the observability middleware, so the 500s are counted in
``http_requests_total`` like real ones.
"""

from __future__ import annotations

import random

from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = ("/health", "/ready", "/metrics")


class FaultInjectionMiddleware:
    def __init__(self, app: ASGIApp, *, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate {rate!r} is outside 0..1")
        self.app = app
        self.rate = rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT or random.random() >= self.rate:
            await self.app(scope, receive, send)
            return
        body = b'{"detail":"injected fault (RECON_FAULT_RATE)"}'
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
