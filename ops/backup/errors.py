"""Failures of backup and recovery, each with a message written for the operator.

    BackupError                      any backup or restore failure
    ├── BadInput                     an argument names nothing that exists (id, time, tier)
    ├── PreflightFailed              checked before anything changed: the stack is as it was
    ├── VersionMismatch              pgBackRest versions differ across hosts
    ├── ChecksumMismatch             an artifact differs from its manifest after a transfer
    └── RestoreFailed                a restore step failed; ``state`` says where the stack is
"""

from __future__ import annotations


class BackupError(RuntimeError):
    pass


class BadInput(BackupError):
    pass


class PreflightFailed(BackupError):
    pass


class VersionMismatch(PreflightFailed):
    pass


class ChecksumMismatch(BackupError):
    pass


class RestoreFailed(BackupError):
    def __init__(self, message: str, state: str):
        self.state = state
        super().__init__(f"{message}\nstate of the stack: {state}")
