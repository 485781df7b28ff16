"""Pure ASGI middleware: request id, slot/version headers, HTTP metrics, access log; and the
guard that refuses, before any endpoint runs, requests no endpoint can handle.

Pure ASGI (not ``BaseHTTPMiddleware``) so streaming responses (exports) pass through
untouched and the route template is read from ``scope["route"]`` after routing.

Trap: PostgreSQL text cannot hold NUL (U+0000) and UTF-8 cannot encode a lone surrogate
(U+D800..U+DFFF, which JSON can spell as ``"\\ud800"``). Either one in a name, a note or a query
parameter used to reach the database and come back as a 500. :class:`RequestGuardMiddleware`
refuses both in query parameters and JSON bodies with a 422 naming the field; uploads check
their form fields with :func:`text_problems` themselves.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
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


# -- the request guard -------------------------------------------------------------------------

UPLOAD_OVERHEAD_BYTES = 64 * 1024
"""Multipart framing (boundaries, part headers, small fields) allowed on top of the file limit."""

_MAX_LISTED = 20
_THREAD_OVER_BYTES = 64 * 1024  # parse JSON bodies larger than this off the event loop


def _text_problem(text: str) -> str | None:
    """Why `text` cannot be stored as text, or None."""
    if "\x00" in text:
        return "contains a NUL character (U+0000), which text fields cannot hold"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"contains a lone surrogate (U+{ord(text[exc.start]):04X}) at position {exc.start + 1}, which is "
                "not valid Unicode text; send UTF-8")
    return None


def text_problems(value: Any, loc: str) -> list[dict[str, str]]:
    """Every string (and dict key) in a parsed JSON value that text columns cannot hold.

    Iterative (a deeply nested body cannot exhaust the stack); ``loc`` names the value
    (``body``, ``options``); problems name each bad string by its dotted path.
    """
    problems: list[dict[str, str]] = []
    stack: list[tuple[str, Any]] = [(loc, value)]
    while stack and len(problems) < _MAX_LISTED:
        where, item = stack.pop()
        if isinstance(item, str):
            reason = _text_problem(item)
            if reason:
                problems.append({"field": where, "reason": reason})
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                reason = _text_problem(key)
                if reason:
                    problems.append({"field": where, "reason": f"a key {reason}"})
                else:
                    stack.append((f"{where}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}", child) for i, child in reversed(list(enumerate(item))))
    return problems


def _query_problems(query_string: bytes) -> list[dict[str, str]]:
    """NUL or bytes that are not UTF-8 (a lone surrogate spelt %ED%A0%80) in query parameters.

    Starlette would decode the latter into U+FFFD silently; refusing them says what was wrong.
    """
    problems = []
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition(b"=")
        key = unquote_to_bytes(raw_key.replace(b"+", b" "))
        value = unquote_to_bytes(raw_value.replace(b"+", b" "))
        name = key.decode("utf-8", "replace").replace("\x00", "\\x00")
        for part in (key, value):
            if b"\x00" in part:
                problems.append({"field": f"query.{name}", "reason": "contains a NUL character (U+0000), "
                                 "which text parameters cannot hold"})
                break
            try:
                part.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append({"field": f"query.{name}", "reason": f"byte 0x{part[exc.start]:02x} at position "
                                 f"{exc.start + 1} is not UTF-8 (a lone surrogate or another encoding); "
                                 "percent-encode UTF-8 text"})
                break
    return problems[:_MAX_LISTED]


def _json_problems(body: bytes) -> list[dict[str, str]]:
    try:
        value = json.loads(body)
    except json.JSONDecodeError:
        return []  # FastAPI reports it (422, json_invalid, with the position)
    except UnicodeDecodeError as exc:
        return [{"field": "body", "reason": f"byte 0x{body[exc.start]:02x} at position {exc.start + 1} is not "
                 "UTF-8; send JSON as UTF-8"}]
    except RecursionError:
        return [{"field": "body", "reason": "JSON nested too deeply"}]
    return text_problems(value, "body")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return not media or media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuardMiddleware:
    """Refuse before routing what no endpoint can handle (issue #12).

    * **413** for a body over its limit: ``max_upload_bytes`` (+ framing) for multipart uploads,
      ``max_json_bytes`` for anything else; on ``Content-Length`` before reading, and on the
      bytes when the body is chunked. A JSON body is never parsed before its size is known.
    * **422** for NUL or a lone surrogate in a query parameter or a JSON body under ``prefix``,
      naming each field (``query.q``, ``body.rules.rules.0.name``).

    A multipart body is streamed to the endpoint (counted, not buffered); a multipart
    ``Content-Length`` over the limit is left to the upload endpoint, which counts it in
    ``recon_uploads_total{outcome="too_large"}``.
    """

    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_upload_bytes: int, prefix: str = "/api/") -> None:
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_upload_bytes = max_upload_bytes + UPLOAD_OVERHEAD_BYTES
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name: value for name, value in scope.get("headers", ()) if name in (b"content-type",
                                                                                         b"content-length")}
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        declared = headers.get(b"content-length", b"").decode("latin-1")
        checked = scope.get("path", "").startswith(self.prefix)
        if checked:
            problems = _query_problems(scope.get("query_string", b""))
            if problems:
                await _invalid(problems)(scope, receive, send)
                return
        if content_type.lower().startswith("multipart/"):
            await self.app(scope, _counting(receive, self.max_upload_bytes, "RECON_MAX_UPLOAD_BYTES"), send)
            return
        limit = self.max_json_bytes
        if declared.isdigit() and int(declared) > limit:
            await _too_large(int(declared), limit)(scope, receive, send)
            return
        body, extra = await _read_body(receive, limit)
        if body is None:
            await _too_large(None, limit)(scope, receive, send)
            return
        if checked and body and _is_json(content_type):
            problems = await run_in_threadpool(_json_problems, body) if len(body) > _THREAD_OVER_BYTES \
                else _json_problems(body)
            if problems:
                await _invalid(problems)(scope, receive, send)
                return
        await self.app(scope, _replay(body, extra, receive), send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """The whole body (None when over `limit`) and any non-body message received meanwhile."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]  # the client went away; the endpoint sees it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, []
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), []


def _replay(body: bytes, extra: list[Message], receive: Receive) -> Receive:
    pending: Iterator[Message] = iter([{"type": "http.request", "body": body, "more_body": False}, *extra])

    async def replay() -> Message:
        message = next(pending, None)
        return message if message is not None else await receive()

    return replay


def _counting(receive: Receive, limit: int, setting: str) -> Receive:
    seen = 0

    async def counting() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"request body exceeds the limit of {limit} bytes ({setting} plus "
                                    f"{UPLOAD_OVERHEAD_BYTES} bytes of multipart framing)")
        return message

    return counting


def _too_large(size: int | None, limit: int) -> JSONResponse:
    what = f"request body of {size} bytes" if size is not None else "request body"
    return JSONResponse({"detail": f"{what} exceeds the limit of {limit} bytes (RECON_MAX_JSON_BYTES); "
                         "files go to the multipart upload endpoint"}, status_code=413)


def _invalid(problems: list[dict[str, str]]) -> JSONResponse:
    return JSONResponse({"detail": "invalid request", "problems": problems}, status_code=422)
