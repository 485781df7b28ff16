"""The release state of a stack, and a lock so two release tasks never interleave.

The state model lives with the local target (infra/local/release.py), which reads it to
render configs and choose processes; this module adds what only the tasks need.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from infra.local.release import (
    PostgresRoles,
    ReleaseState,
    SlotState,
    effective_spec,
    load,
    path_of,
    save,
    summary,
)
from infra.spec import StackSpec
from ops.errors import ReleaseLocked

__all__ = ["PostgresRoles", "ReleaseState", "SlotState", "effective_spec", "load", "save", "summary",
           "path_of", "ReleaseLocked", "locked"]


@contextmanager
def locked(spec: StackSpec) -> Iterator[None]:
    """Hold ``<state>/release.lock`` for the duration of a task (non-blocking: refuse, never queue).

    Trap: the lock is advisory and per machine; it serialises tasks run from this host only.
    """
    lock = spec.state_path / "release.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Path(lock).read_text().strip() or "unknown"
            raise ReleaseLocked(f"another release task holds {lock} (pid {holder}); wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
