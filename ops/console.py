"""Operator-facing output: progress lines, tables, and errors that end a task.

Progress goes to stderr (so ``--json`` on stdout stays machine-readable), each line stamped
with the seconds since the task started.
"""

from __future__ import annotations

import sys
import time

from invoke.exceptions import Exit

_T0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def fail(msg: str, code: int = 1) -> Exit:
    """An Exit that prints ``msg`` and ends the task with ``code``; raise it."""
    return Exit(f"error: {msg}", code=code)


def table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "") if r.get(c) is not None else "-").ljust(widths[c])
                               for c in columns).rstrip())
    return "\n".join(lines)
