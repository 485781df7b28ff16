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


SCRATCH = __import__("pathlib").Path(__file__).resolve().parent.parent / ".state"
"""Where throwaway stacks keep their state: traversable by the service user."""

def isolated_stack_env(state_dir, offset: int) -> dict[str, str]:
    """Environment for a second, throwaway local stack: its own state dir, every port shifted
    by ``offset`` (e.g. 1000 or 2000) so it never touches the main stack `make test` started.
    Use it with ``fab up``/``fab down --purge --yes`` in tests that destroy things.

    The port keys come from the service catalogue, the values from the spec's declared
    defaults (whatever RECON_* the caller's shell exports).

    Trap: run as root, the services run as the ``recon`` user, which cannot enter pytest's
    0700 tmp dirs: put ``state_dir`` under :data:`SCRATCH` (``<repo>/.state/``) instead."""
    from infra import services
    from infra.spec import StackSpec
    defaults = StackSpec.model_construct(**{name: field.default for name, field in StackSpec.model_fields.items()})
    local = {p.key for s in services.CATALOGUE if s.runs_on("local") for p in s.ports}
    env = {"RECON_" + key.upper().replace(".", "__"): str(services.value(defaults, key) + offset)
           for key in services.port_keys() if key in local}
    env["RECON_STATE_DIR"] = str(state_dir)
    return env
