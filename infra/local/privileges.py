"""Who the services run as.

Run by an ordinary user, every process runs as that user. Run as root (CI, a server),
the stack never runs a service as root: each process runs as the service user
(``recon`` by default), created on first use, and everything under the state directory
that a service writes is owned by it. PostgreSQL refuses to run as root anyway.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.local.errors import PrivilegeError

SERVICE_USER = "recon"




@dataclass(frozen=True)
class RunAs:
    user: str | None
    """None: run as the invoking user (not root)."""
    uid: int
    gid: int

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run as the service user (unchanged when already that user)."""
        if self.user is None:
            return argv
        runuser = shutil.which("runuser", path="/usr/sbin:/sbin:/usr/bin:/bin") or "runuser"
        return [runuser, "-u", self.user, "--", *argv]

    def chown(self, path: Path, recursive: bool = False) -> None:
        if self.user is None:
            return
        os.chown(path, self.uid, self.gid)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


def service_identity(create: bool = True) -> RunAs:
    """The identity services run as; creates the service user when running as root."""
    if os.geteuid() != 0:
        return RunAs(None, os.getuid(), os.getgid())
    try:
        pw = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        if not create:
            raise PrivilegeError(f"service user {SERVICE_USER!r} does not exist") from None
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        res = subprocess.run([useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent",
                              "--shell", "/usr/sbin/nologin", SERVICE_USER],
                             capture_output=True, text=True)
        if res.returncode != 0 and "already exists" not in res.stderr:
            raise PrivilegeError(f"cannot create service user {SERVICE_USER!r}: {res.stderr.strip()}")
        pw = pwd.getpwnam(SERVICE_USER)
    return RunAs(SERVICE_USER, pw.pw_uid, pw.pw_gid)
