"""pgBackRest's configuration side: where backups live, and the command lines PostgreSQL runs.

Rendered configs (``archive_command`` in postgresql.conf, pgbackrest.conf) and the target's
secret files come from here; running backups and restores is ops/backup/'s business.

    <backup root>/                    layout.data("backup")
      pgbackrest/repo1                pgBackRest repository: daily and weekly tiers
      pgbackrest/repo2                pgBackRest repository: monthly archive tier
      pgbackrest/{log,lock,spool}
      sets/<id>/                      one backup set: manifest.json, logical dump, redis, files
      jobs/                           detached host jobs (output and exit code)
    <secrets>/pgbackrest/             0600 files: cipher.conf (repo cipher passes), pgpass

Every call is ``pgbackrest --config=<rendered conf> --config-include-path=<secrets>/pgbackrest
--stanza=<stanza> <command>``. The cipher passes come from ``cipher.conf`` in the include path,
never from argv or the rendered config.

Trap: the backup root sits on the same disk as the data on the local target; the offsite
copy (ops/backup/offsite.py) is what survives the loss of the machine. And pgBackRest reaches
PostgreSQL only through its unix socket: libpq looks the password up in ``<include>/pgpass``
under the socket directory's path, not under "localhost".
"""

from __future__ import annotations

import shlex
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


def base_argv(paths: BackupPaths, stanza: str) -> list[str]:
    return ["pgbackrest", f"--config={paths.conf}", f"--config-include-path={paths.include}",
            f"--stanza={stanza}"]


def archive_command(spec, layout: Layout) -> str:
    """PostgreSQL's archive_command: push each WAL segment to every repository."""
    return shlex.join(base_argv(BackupPaths.of(layout), spec.backup.stanza) + ["archive-push"]) + " %p"


def restore_command(spec, layout: Layout) -> str:
    return shlex.join(base_argv(BackupPaths.of(layout), spec.backup.stanza) + ["archive-get"]) + ' %f "%p"'


def cipher_conf(spec, key: str) -> str:
    """``cipher.conf`` in the include path: the repositories' cipher pass (empty: no cipher)."""
    if spec.backup.cipher_type == "none":
        return ""
    return f"[global]\nrepo1-cipher-pass={key}\nrepo2-cipher-pass={key}\n"


def pgpass(layout: Layout, password: str) -> str:
    """pgBackRest's socket login as the superuser: a line per node (the primary role moves at
    failover, and pgBackRest follows it)."""
    paths = BackupPaths.of(layout)
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return "".join(f"{paths.socket}:{layout.bind(node).port}:*:postgres:{escaped}\n"
                   for node in layout.postgres_nodes())


def secret_files(spec, layout: Layout, secrets: dict) -> dict[str, str]:
    """The 0600 files pgBackRest reads: the cipher passes and a pgpass for its socket login."""
    paths = BackupPaths.of(layout)
    key = secrets["backup_cipher"].get_secret_value() if spec.backup.cipher_type != "none" else ""
    return {f"{paths.include}/cipher.conf": cipher_conf(spec, key),
            paths.pgpass: pgpass(layout, secrets["postgres_superuser"].get_secret_value())}
