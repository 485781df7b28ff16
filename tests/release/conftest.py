"""Fixtures for the release drills: one throwaway local stack (ports shifted by 2000) per session.

The main stack that `make test` started on the default ports is never touched.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.release.scenarios import ThrowawayStack

OFFSET = 2000


@pytest.fixture(scope="session")
def drill_stack():
    """A second stack, up for the drills, purged afterwards (even when a drill fails).

    Trap: pytest's tmp_path lives under a 0700 directory that the service user (``recon``, when
    run as root) cannot traverse, so the state goes in its own 0755 directory under /tmp.
    """
    root = Path(tempfile.mkdtemp(prefix="recon-release-drill-"))
    root.chmod(0o755)
    stack = ThrowawayStack(root / "state", OFFSET)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)
