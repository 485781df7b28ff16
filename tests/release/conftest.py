"""Fixtures for the release drills: one throwaway local stack (ports shifted by 2000) per session.

The main stack that `make test` started on the default ports is never touched.
"""

from __future__ import annotations

import pytest

from tests.release.scenarios import ThrowawayStack

OFFSET = 2000


@pytest.fixture(scope="session")
def drill_stack(tmp_path_factory):
    """A second stack, up for the drills, purged afterwards (even when a drill fails)."""
    stack = ThrowawayStack(tmp_path_factory.mktemp("release-drill") / "state", OFFSET)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
