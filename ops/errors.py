"""Every failure of an operations task, one tree, each message written for the operator.

    OpsError                         any failure a task reports (exit 1 unless said otherwise)
    ├── UsageError                   an argument is wrong: names the flag, the value, what is allowed (exit 2)
    │   ├── NeedsConfirmation        a destructive step without --yes (exit 2)
    │   └── BadInput                 an argument names nothing that exists: backup id, time, tier
    ├── InventoryError               the stack's inventory does not name what a task needs
    ├── ExecutorError                running a command where a service lives
    │   ├── CommandFailed            the command ran and exited non-zero (command, code, output tail)
    │   └── ExecutorUnreachable      the host, container or pod could not be reached at all
    ├── StepFailed                   a step of a run failed; the run record has the step and its cause
    ├── TargetFailed                 the target (supervisord, bootstrap, a service) refused or broke
    ├── InvariantViolated            after a task, something that must always hold does not
    ├── BackupError                  backup and recovery
    │   ├── PreflightFailed          checked before anything changed: the stack is as it was
    │   │   └── VersionMismatch      pgBackRest versions differ across hosts
    │   ├── ChecksumMismatch         an artifact differs from its manifest after a transfer
    │   ├── HostJobLost              a detached job on a host vanished without an exit code
    │   └── RestoreFailed            a restore step failed; ``state`` says where the stack is
    └── ReleaseError                 releases and failover
        ├── ReleaseLocked            another release task holds the stack's lock
        ├── GateFailed               a gate failed; what it guarded was reverted
        └── PrometheusError          the metrics a gate needs could not be read

:func:`translate` is the one place where errors of the layers below (the spec, the local
target, psycopg, redis, paramiko, subprocess timeouts) become these, at the edge of a task,
with ``from exc`` kept for the traceback under ``--debug``.
"""

from __future__ import annotations

import socket
import subprocess
from contextlib import contextmanager
from typing import Any, Iterator


class OpsError(RuntimeError):
    exit_code = 1


class UsageError(OpsError):
    exit_code = 2


class NeedsConfirmation(UsageError):
    pass


class BadInput(UsageError):
    pass


class InventoryError(OpsError):
    pass


class ExecutorError(OpsError):
    pass


class CommandFailed(ExecutorError):
    def __init__(self, result: Any):
        self.result = result
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-12:])
        super().__init__(f"on {result.where}: `{result.command}` exited {result.exit_code} "
                         f"after {result.duration_s:.1f}s\n{tail}")


class ExecutorUnreachable(ExecutorError):
    pass


class StepFailed(OpsError):
    def __init__(self, step: Any, cause: BaseException):
        self.step = step
        self.cause = cause
        super().__init__(f"step {step.index} ({step.title}) failed: {cause}")
        if isinstance(cause, OpsError):
            self.exit_code = cause.exit_code


class TargetFailed(OpsError):
    pass


class InvariantViolated(OpsError):
    """``invariant`` names what must hold; ``evidence`` is what was seen instead."""

    def __init__(self, invariant: str, evidence: str):
        self.invariant = invariant
        self.evidence = evidence
        super().__init__(f"invariant violated: {invariant}: {evidence}")


class BackupError(OpsError):
    pass


class PreflightFailed(BackupError):
    pass


class VersionMismatch(PreflightFailed):
    pass


class ChecksumMismatch(BackupError):
    pass


class HostJobLost(BackupError):
    pass


class RestoreFailed(BackupError):
    def __init__(self, message: str, state: str):
        self.state = state
        super().__init__(f"{message}\nstate of the stack: {state}")


class ReleaseError(OpsError):
    pass


class ReleaseLocked(ReleaseError):
    pass


class GateFailed(ReleaseError):
    pass


class PrometheusError(ReleaseError):
    pass


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]


@contextmanager
def translate(what: str = "") -> Iterator[None]:
    """Turn a lower layer's exception into an :class:`OpsError` (``what`` says what was being done)."""
    prefix = f"{what}: " if what else ""
    try:
        yield
    except OpsError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - mapped by type below, re-raised otherwise
        mapped = _map(exc, prefix)
        if mapped is None:
            raise
        raise mapped from exc


def _map(exc: BaseException, prefix: str) -> OpsError | None:
    from infra.local.errors import LocalTargetError
    from infra.spec import SpecError
    if isinstance(exc, SpecError):
        return UsageError(prefix + str(exc))
    if isinstance(exc, LocalTargetError):
        return TargetFailed(prefix + str(exc))
    if isinstance(exc, (subprocess.TimeoutExpired, TimeoutError)):
        return OpsError(f"{prefix}timed out: {_first_line(exc)}")
    mod = type(exc).__module__.split(".")[0]
    if mod == "psycopg" or mod == "psycopg_pool":
        return OpsError(f"{prefix}PostgreSQL: {_first_line(exc)}")
    if mod == "redis":
        return OpsError(f"{prefix}Redis: {_first_line(exc)}")
    if mod == "paramiko" or isinstance(exc, (ConnectionError, socket.gaierror, EOFError)):
        return ExecutorUnreachable(f"{prefix}unreachable: {_first_line(exc)}")
    return None
