"""``fab secrets.rotate NAME``: a new password for one consumer, while the stack serves (local target).

What can be rotated, and how no request fails:

    postgres_app      the service's runtime role   ALTER ROLE and the pgpass rewrite commit together:
    postgres_reader   the read-only role           libpq reads the pgpass file at every new connection,
    postgres_owner    the owner (migrations)       pooled connections stay authenticated
    redis_app         the service's Redis user     both passwords accepted (ACL file, ACL LOAD on every
                                                   node), the service's processes restarted one at a
                                                   time with the new one, then the old one removed

The other secrets (replication, the exporters', Sentinel's, Alertmanager's, the superuser's)
are not rotated by this task yet; ``UsageError`` says so. A password set in the stack's spec or
environment (``postgres.password``) is the operator's to change there.

Traps: ``ACL LOAD`` disconnects every client of that Redis node (replicas, Sentinels, the
exporter and the service reconnect on their own; the service's requests retry). PostgreSQL
keeps one password per role, so for a role the switch is one commit: the new
pgpass files are written inside the transaction that changes the password and are in place
before it commits. A connection that reads the file in the microseconds between file and commit
would fail; none did under load (tests/security/test_rotation.py).
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass
from typing import Any, Callable

import psycopg
from psycopg import sql
from pydantic import SecretStr

from ops.errors import UsageError

PG_ROLES: dict[str, Callable] = {
    "postgres_app": lambda pg: pg.user,
    "postgres_reader": lambda pg: pg.reader_user,
    "postgres_owner": lambda pg: pg.owner_user,
}
ROTATABLE = {
    "postgres_app": "the service's PostgreSQL runtime role",
    "postgres_reader": "the service's read-only PostgreSQL role",
    "postgres_owner": "the PostgreSQL owner role migrations run as",
    "redis_app": "the service's Redis user",
}
PASSFILE_OF = {"postgres_app": "pgpass", "postgres_reader": "pgpass", "postgres_owner": "pgpass-migrate"}


@dataclass
class Rotation:
    target: Any
    """The LocalTarget of the stack."""
    name: str
    new: str
    old: str


def plan(target, name: str) -> Rotation:
    """Check ``name`` can be rotated here; the rotation with a freshly generated password."""
    if name not in ROTATABLE:
        raise UsageError(f"secret {name!r} cannot be rotated by this task; rotatable: "
                         + ", ".join(f"{k} ({v})" for k, v in ROTATABLE.items()))
    if name == "postgres_app" and target.spec.postgres.password is not None:
        raise UsageError("postgres.password is set in the stack's config or environment "
                         "(RECON_POSTGRES__PASSWORD): change it there and run `fab up`")
    old = target.secrets()[name].get_secret_value()
    return Rotation(target, name, _secrets.token_urlsafe(24), old)


# -- PostgreSQL roles ------------------------------------------------------------------------------

def rotate_postgres(r: Rotation) -> None:
    """ALTER ROLE, secrets.json and the pgpass files, in the transaction that changes the password."""
    from infra.local import bootstrap
    from infra.local.privileges import service_identity
    from infra.local.secrets import store
    t = r.target
    role = PG_ROLES[r.name](t.spec.postgres)
    current = t.secrets()
    updated = {**current, r.name: SecretStr(r.new)}
    with bootstrap.superuser_conn(t.spec, t.layout, current, proc=t.release.postgres.primary) as conn:
        with conn.transaction():
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(r.new)))
            store(t.root / "secrets", r.name, r.new)
            bootstrap.write_credentials(t.spec, t.layout, updated, service_identity())


def verify_postgres(r: Rotation) -> str:
    """A new connection through the consumer's pgpass file works; the old password is refused."""
    t = r.target
    pg, role = t.spec.postgres, PG_ROLES[r.name](t.spec.postgres)
    ep = t.layout.endpoint(t.release.postgres.primary)
    kw = dict(host=ep.host, port=ep.port, dbname=pg.database, user=role, connect_timeout=3, **t.layout.pg_tls())
    with psycopg.connect(passfile=t.layout.secret(PASSFILE_OF[r.name]), **kw) as conn:
        conn.execute("SELECT 1")
    try:
        psycopg.connect(password=r.old, **kw).close()
    except psycopg.OperationalError:
        return f"{role}: the new password works through {PASSFILE_OF[r.name]}, the old one is refused"
    raise RuntimeError(f"{role}: the old password is still accepted")


# -- the service's Redis user ---------------------------------------------------------------------

def redis_nodes(t) -> list[tuple[str, int]]:
    return [(ep.host, ep.port) for ep in map(t.layout.endpoint, ["redis-primary", *t.layout.redis_replicas()])]


def load_acl(r: Rotation, passwords: list[str]) -> None:
    """Write the ACL file with the app user's ``passwords`` and ``ACL LOAD`` it on every Redis node."""
    import redis

    from infra import redisacl
    from infra.local.privileges import service_identity
    from infra.local.secrets import write_secret_file
    t = r.target
    current = t.secrets()
    pw = {name: current[f"redis_{name}"].get_secret_value() for name in redisacl.USERS}
    path = t.root / "secrets" / "redis-users.acl"
    write_secret_file(path, redisacl.acl_file({**pw, "app": passwords}))
    service_identity().chown(path)
    for host, port in redis_nodes(t):
        client = redis.Redis(host=host, port=port, socket_timeout=3, **t.redis_auth("ops"))
        try:
            client.execute_command("ACL", "LOAD")
        except redis.exceptions.NoPermissionError:
            raise UsageError(f"redis {host}:{port} was started before the ops user could reload the ACL "
                             "file (ACL LOAD): restart the Redis nodes once (fab restart redis-replica-N; the "
                             "master after a Sentinel failover), then rotate") from None
        finally:
            client.close()


def switch_redis_app(r: Rotation) -> None:
    """The new password in secrets.json and the service's password file (the restarts read it)."""
    from infra.local import bootstrap
    from infra.local.privileges import service_identity
    from infra.local.secrets import store
    t = r.target
    store(t.root / "secrets", r.name, r.new)
    bootstrap.write_credentials(t.spec, t.layout, t.secrets(), service_identity())


def service_processes(t) -> list[str]:
    """The processes that log in as the app user: every backend and worker that runs."""
    running = {name for name, info in t.supervisor.info().items() if info.get("statename") == "RUNNING"}
    return [p.name for p in t.processes() if p.kind in ("backend", "worker") and p.name in running]


def verify_redis_app(r: Rotation) -> str:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    t = r.target
    once: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "retry_on_error": []}  # a refusal is the answer
    for host, port in redis_nodes(t):
        new = redis.Redis(host=host, port=port, socket_timeout=3, username="app", password=r.new, **once)
        try:
            new.ping()
        finally:
            new.close()
        old = redis.Redis(host=host, port=port, socket_timeout=3, username="app", password=r.old, **once)
        try:
            old.ping()
        except redis.AuthenticationError:
            continue
        finally:
            old.close()
        raise RuntimeError(f"redis {host}:{port}: the old password of user app is still accepted")
    return f"app: the new password works on {len(redis_nodes(t))} Redis node(s), the old one is refused"
