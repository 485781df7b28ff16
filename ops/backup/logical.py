"""The logical export: ``pg_dump -Fc`` of the application database (the seed's custom format),
portable across PostgreSQL versions and readable by ``pg_restore --list`` for a quick check.

Runs on the database host against the primary's unix socket, as the superuser (its password
from the pgpass file pgBackRest also uses); written to ``<set>/logical.dump`` through a
``.partial`` name, so a half-written dump never looks complete.
"""

from __future__ import annotations

import shlex

from infra.pgbackrest import BackupPaths
from infra.services import PG_BIN
from ops.executors import Executor


def export(ex: Executor, paths: BackupPaths, port: int, database: str, set_dir: str) -> str:
    out = f"{set_dir}/logical.dump"
    q = shlex.quote
    ex.run(f"{PG_BIN}/pg_dump --format=custom --compress=1 --no-password -h {q(paths.socket)} -p {port} "
           f"-U postgres -d {q(database)} -f {q(out + '.partial')} && mv {q(out + '.partial')} {q(out)}",
           env={"PGPASSFILE": paths.pgpass}, timeout=3600)
    return "logical.dump"


def check(ex: Executor, path: str) -> int:
    """Number of entries ``pg_restore --list`` reads from the dump (it fails on a damaged one)."""
    res = ex.run(f"{PG_BIN}/pg_restore --list {shlex.quote(path)}", timeout=600)
    return sum(1 for ln in res.stdout.splitlines() if ln and not ln.startswith(";"))
