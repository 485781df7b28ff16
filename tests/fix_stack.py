"""Fixtures for tests that check the running local stack from outside (testinfra, HTTP, SQL).

The stack is brought up by `make test` (`fab up`) before pytest runs. Tests marked ``stack``
fail (not skip) when it is down: a check that silently skips is a check that cannot fail.
Set RECON_TEST_ALLOW_NO_STACK=1 to skip them instead when working on unit tests alone.
"""

from __future__ import annotations

import os

import pytest

from infra.layout import LocalLayout
from infra.spec import load_spec


@pytest.fixture(scope="session")
def stack_spec():
    return load_spec(os.environ.get("RECON_TEST_STACK", "local"))


@pytest.fixture(scope="session")
def local_target(stack_spec):
    from infra.local.target import LocalTarget
    return LocalTarget(stack_spec)


@pytest.fixture(scope="session")
def layout(stack_spec) -> LocalLayout:
    return LocalLayout(stack_spec)


@pytest.fixture(scope="session")
def running_stack(local_target):
    """The local stack, required to be up."""
    if not local_target.supervisor.running():
        msg = "the local stack is not running: start it with `fab up` (make test does)"
        if os.environ.get("RECON_TEST_ALLOW_NO_STACK") == "1":
            pytest.skip(msg)
        pytest.fail(msg)
    return local_target


@pytest.fixture(scope="session")
def secrets(running_stack):
    return running_stack.secrets()


@pytest.fixture(scope="session")
def host(running_stack):
    import testinfra
    return testinfra.get_host("local://")
