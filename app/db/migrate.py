"""Versioned SQL migrations: ``app/migrations/NNNN_name.sql`` applied in order, once each.

Contract:

* Each file runs in its own transaction together with its row in ``schema_migrations``;
  a failing file leaves the database as it was before that file.
* A transaction-level advisory lock serialises concurrent migrators (several replicas
  deploying at once): the second waits, then finds nothing to do.
* An already applied file whose checksum changed is an error (:class:`MigrationError`),
  never silently skipped: edit history by adding a new file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x7265636F6E  # "recon"


class MigrationError(RuntimeError):
    """A migration could not be applied, or history disagrees with the files."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    """All migration files shipped in ``app.migrations``, sorted by version."""
    found: list[Migration] = []
    for entry in resources.files("app.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _NAME.match(entry.name)
        if not m:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


def applied(conn: psycopg.Connection) -> dict[int, str]:
    """``{version: checksum}`` of applied migrations (empty on a fresh database)."""
    row = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if row is None or row[0] is None:
        return {}
    return {v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")}


def migrate(conn: psycopg.Connection) -> list[Migration]:
    """Apply pending migrations on ``conn`` (autocommit off); return the ones applied now."""
    done: list[Migration] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
            "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    for mig in discover():
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            have = applied(conn)
            if mig.version in have:
                if have[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name}.sql changed after it was applied "
                        f"(checksum {have[mig.version][:12]} in the database, {mig.checksum[:12]} on disk); "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            try:
                conn.execute(mig.sql)
            except psycopg.Error as exc:
                raise MigrationError(f"migration {mig.version:04d}_{mig.name}.sql failed: {exc}") from exc
            conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                         (mig.version, mig.name, mig.checksum))
            done.append(mig)
    conn.commit()
    return done


def unknown_versions(conn: psycopg.Connection) -> list[int]:
    """Applied versions this release has no file for: a newer release migrated the database.

    Not an error (a blue-green rollback runs the older release against the newer schema,
    which is why migrations must stay backward compatible), but worth a warning.
    """
    known = {m.version for m in discover()}
    return sorted(set(applied(conn)) - known)
