"""PostgreSQL roles and what each may do, the same on every target.

    postgres            superuser: bootstrap and ops tasks only (never in a service's config)
    <owner_user>        owns the database and every table; migrations run as it
    <user>              the service's runtime role: SELECT/INSERT/UPDATE/DELETE, sequences;
                        audit_log INSERT-only (migration 0008); no DDL, no ANALYZE (0008's
                        refresh_bulk_statistics() does that one owner-only task for it)
    <reader_user>       SELECT only: the service's replica reads and the logical backup
    <replication_user>  streaming replication
    exporter            pg_monitor, and CONNECT to the application database (the exporter
                        discovers every database for its per-database statistics)

The owner's tables reach the other roles through default privileges, so tables a later
migration creates need no deployment step. The local target runs :func:`privileges_sql` as
the superuser on every ``fab up`` (infra/local/bootstrap.py); the containers' primary runs it
once, when it initialises its data volume (infra/components/database.py).
"""

from __future__ import annotations

from infra.spec import PostgresSpec


def privileges_sql(pg: PostgresSpec) -> str:
    """Statements (run in the application database, as the superuser; idempotent) granting
    the runtime and reader roles what they need and the public nothing."""
    db, owner, app, reader = (_ident(n) for n in (pg.database, pg.owner_user, pg.user, pg.reader_user))
    default = f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT"
    return "\n".join([
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC;",
        f"GRANT CONNECT ON DATABASE {db} TO {app}, {reader}, exporter;",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        f"GRANT USAGE ON SCHEMA public TO {app}, {reader};",
        f"{default} SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};",
        f"{default} USAGE, SELECT ON SEQUENCES TO {app};",
        f"{default} SELECT ON TABLES TO {reader};",
        f"{default} SELECT ON SEQUENCES TO {reader};",
    ])


def _ident(name: str) -> str:
    """A quoted identifier. Role and database names are ``[a-z_][a-z0-9_]*`` (the spec's pattern),
    so quoting cannot be escaped from; the assertion keeps it so."""
    assert name.replace("_", "").isalnum() and name.islower(), name
    return f'"{name}"'
