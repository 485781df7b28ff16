"""What every task shares: the ``--stack`` option, loading the spec, the local target, and the
one place where failures become the operator's error line and exit code.

    with reported():            any OpsError -> "error: ..." and its exit code (2: usage, 1: failure);
        ...                     lower layers' errors are translated first (ops.errors.translate)
    with release_session(...) as (spec, driver, run):
        ...                     spec, the release driver, the stack's lock and a run record
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from infra.spec import StackSpec, load_spec
from ops.console import fail
from ops.errors import OpsError, StepFailed, UsageError, translate
from ops.runlog import Run

STACK_HELP = "stack name: local (default), or a Pulumi.<stack>.yaml in the repository root"


@contextmanager
def reported() -> Iterator[None]:
    """Turn every failure of a task into ``error: <message>`` and the error's exit code."""
    try:
        with translate():
            yield
    except StepFailed as exc:
        raise fail(f"{exc.step.title}: {exc.cause}", code=exc.exit_code) from None
    except OpsError as exc:
        raise fail(str(exc), code=exc.exit_code) from None


def guarded(fn: Callable[[], Any]) -> Any:
    with reported():
        return fn()


def spec_of(stack: str | None) -> StackSpec:
    """The stack's validated spec; a bad spec is a usage error (exit 2) naming every problem."""
    with reported():
        return load_spec(stack)


def local_target(spec: StackSpec, verb: str = "up"):
    """The local target of ``spec``; other targets are deployed with Pulumi, not from here."""
    from infra.local.target import LocalTarget
    from ops.console import progress
    if spec.target != "local":
        raise fail(f"stack {spec.name!r} has target {spec.target!r}; `fab {verb}` runs the local target only. "
                   f"Deploy it with `pulumi up -s {spec.name}` (docs/pulumi.md).", code=2)
    return LocalTarget(spec, progress=progress)


@contextmanager
def release_session(stack: str | None, task_name: str, args: dict, dry_run: bool,
                    yes: bool = False) -> Iterator[tuple]:
    """Spec, release driver, the stack's lock and a run record for one release or failover task."""
    from ops.release.state import locked
    spec = spec_of(stack)
    if spec.target != "local" and task_name.startswith("db."):
        raise fail(f"stack {spec.name!r} has target {spec.target!r}: `fab {task_name}` drives the local "
                   "target's PostgreSQL processes only; see runbooks/postgres-failover.md", code=2)
    if spec.target == "kubernetes":
        raise fail(f"stack {spec.name!r} has target 'kubernetes': its active slot and canary weight are "
                   f"stack config. Run `pulumi config set --path recon:backend.active_slot green -s {spec.name}` "
                   f"(or canary_weight) and `pulumi up -s {spec.name}` (docs/releases.md)", code=2)
    with reported():
        driver: Any
        if spec.target == "docker":
            from ops.release.docker import DockerRelease
            driver = DockerRelease(spec)
        else:
            from ops.release.local import LocalRelease
            driver = LocalRelease(spec)
        with locked(spec):
            if not dry_run:
                driver.require_running()
            with Run(driver.inventory.run_log, task_name, args, dry_run=dry_run, yes=yes) as run:
                run.notes["gates"] = []
                yield spec, driver, run
                driver.invariants(run, task_name)


__all__ = ["STACK_HELP", "UsageError", "guarded", "local_target", "release_session", "reported", "spec_of"]
