"""Errors of the local target, each written for the operator.

    LocalTargetError
    ├── TargetError       a service did not come up healthy, a program is missing, ...
    ├── SupervisorError   supervisord did not start or refused a command
    ├── BootstrapError    initdb, pg_basebackup or another one-time step failed
    ├── PrivilegeError    the service user could not be created or used
    └── ReleaseStateError release.json cannot be read
"""


class LocalTargetError(RuntimeError):
    pass


class TargetError(LocalTargetError):
    pass


class SupervisorError(LocalTargetError):
    pass


class BootstrapError(LocalTargetError):
    pass


class PrivilegeError(LocalTargetError):
    pass


class ReleaseStateError(LocalTargetError):
    pass
