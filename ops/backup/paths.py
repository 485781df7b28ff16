"""Where backups live on the database host, for a layout (local or container target).

    <backup root>/                    layout.data("backup")
      pgbackrest/repo1                pgBackRest repository: daily and weekly tiers
      pgbackrest/repo2                pgBackRest repository: monthly archive tier
      pgbackrest/{log,lock,spool}
      sets/<id>/                      one backup set: manifest.json, logical dump, redis, files
      jobs/                           detached host jobs (output and exit code)
    <secrets>/pgbackrest/             0600 files: cipher.conf (repo cipher passes), pgpass

Trap: the backup root sits on the same disk as the data on the local target; the offsite
copy (ops/backup/offsite.py) is what survives the loss of the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from infra.layout import Layout


@dataclass(frozen=True)
class BackupPaths:
    root: str
    repo1: str
    repo2: str
    log: str
    lock: str
    spool: str
    sets: str
    jobs: str
    include: str
    """config-include-path: every *.conf in it is read by pgBackRest (the cipher passes)."""
    pgpass: str
    socket: str
    conf: str

    @classmethod
    def of(cls, layout: Layout) -> "BackupPaths":
        root = PurePosixPath(layout.data("backup"))
        pgb = root / "pgbackrest"
        include = PurePosixPath(layout.secret("pgbackrest"))
        return cls(root=str(root), repo1=str(pgb / "repo1"), repo2=str(pgb / "repo2"),
                   log=str(pgb / "log"), lock=str(pgb / "lock"), spool=str(pgb / "spool"),
                   sets=str(root / "sets"), jobs=str(root / "jobs"), include=str(include),
                   pgpass=str(include / "pgpass"), socket=layout.run(""),
                   conf=layout.conf("pgbackrest/pgbackrest.conf"))

    def repo(self, n: int) -> str:
        return self.repo1 if n == 1 else self.repo2

    def set_dir(self, set_id: str) -> str:
        return str(PurePosixPath(self.sets) / set_id)
