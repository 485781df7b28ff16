"""Structured JSON logs, one object per line, each carrying the current request id.

The request id lives in a ``ContextVar`` set by the HTTP middleware (and by the worker per
job), so any logger anywhere in the call stack stamps it without being passed it.

Trap: this module is named ``logging`` inside the ``app`` package; it imports the standard
library module absolutely, so ``import app.logging`` never shadows ``logging``.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import json
import logging
import sys
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("recon_request_id", default=None)

_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "color_message", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, logger, msg, request_id, extras."""

    def __init__(self, *, slot: str | None = None, version: str | None = None) -> None:
        super().__init__()
        self._static = {k: v for k, v in (("slot", slot), ("version", version)) if v}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            payload["request_id"] = rid
        payload.update(self._static)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, separators=(",", ":"))


def configure_logging(level: str = "INFO", *, json_logs: bool = True, slot: str | None = None,
                      version: str | None = None, stream: Any = None) -> None:
    """Route the root logger (and uvicorn's) to one stderr handler in JSON or plain text."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter(slot=slot, version=version))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Access lines are emitted by our middleware (with request id and route template).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
