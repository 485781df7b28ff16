"""One-time work that turns empty directories into a stack: run on every ``fab up``, each step
skipped when its result is already there (idempotent).

- directories under the state dir, owned by the service user
- the PostgreSQL primary (initdb), its roles, database and replication slots
- each replica, cloned with pg_basebackup from the primary and streaming from its slot
- pgBackRest's directories, its 0600 secret files, and its stanza
- Redis and Sentinel working copies of their configs (both rewrite their own config files
  on failover, so the rendered file is copied in, and copied again only when it changes)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from pydantic import SecretStr

from infra import pgroles, redisacl, services, webauth
from infra.layout import LocalLayout
from infra.local.errors import BootstrapError
from infra.local.privileges import RunAs
from infra.local.secrets import write_secret_file
from infra.pgbackrest import BackupPaths, base_argv, secret_files
from infra.services import PG_PRIMARY, binary, replica_slot
from infra.spec import PostgresSpec, StackSpec


def run(argv: list[str], who: RunAs, what: str, env: dict | None = None, timeout: float = 300) -> None:
    res = subprocess.run(who.wrap(argv), capture_output=True, text=True, env=env, timeout=timeout)
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-10:])
        raise BootstrapError(f"{what} failed (exit {res.returncode}): {argv[0]}\n{tail}")


def check_reachable(root: Path, who: RunAs) -> None:
    """The service user must be able to walk down to the state directory."""
    if who.user is None:
        return
    import stat
    for parent in [p for p in reversed(root.parents)] + [root]:
        if not parent.exists():
            break
        st = parent.stat()
        if st.st_uid != who.uid and not st.st_mode & stat.S_IXOTH:
            raise BootstrapError(
                f"state directory {root} is not reachable by the service user {who.user!r}: "
                f"{parent} is mode {stat.filemode(st.st_mode)}; choose a state dir under a path "
                f"others can traverse (e.g. <repo>/.state/<name>) or chmod o+x {parent}")


def prepare_dirs(layout: LocalLayout, who: RunAs) -> None:
    root = layout.root
    check_reachable(root, who)
    for sub in ("conf", "data", "run", "log", "secrets", "tls"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "secrets").chmod(0o700)
    (root / "tls").chmod(0o700)
    for sub in ("data", "run", "log", "secrets", "tls"):
        who.chown(root / sub)
    (root / "data").chmod(0o700)  # databases, caches, backups: the service user's alone
    for sub in ("data", "secrets", "tls"):
        close_to_others(root / sub)
    for svc, member in services.members(layout.spec, "local"):
        if not svc.data or svc.kind == "postgres":  # PostgreSQL's own are made by initdb / pg_basebackup
            continue
        d = Path(layout.data(member.name))
        d.mkdir(exist_ok=True)
        d.chmod(0o700)
        who.chown(d)
    for name in ("tls",):
        who.chown(root / name, recursive=True)


def close_to_others(top: Path) -> None:
    """Clear the 'other' permission bits below ``top`` (state written before the services ran with
    umask 077, or by a tool run with a looser one); symlinks are left alone."""
    import os
    import stat
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and mode & 0o007:
                    os.chmod(path, stat.S_IMODE(mode) & ~0o007)
            except FileNotFoundError:
                continue  # a service removed it meanwhile


def redis_secret_files(spec: StackSpec, layout: LocalLayout, secrets: dict) -> dict[str, str]:
    """The Redis users (hashed), the replication credentials, and each consumer's password file."""
    def pw(consumer: str) -> str:
        return secrets[f"redis_{consumer}"].get_secret_value()
    nodes = [services.REDIS_PRIMARY, *layout.redis_replicas(), *layout.sentinels()]
    exporter = {f"redis://{layout.endpoint(n)}": pw("exporter") for n in nodes}
    import json
    return {
        "redis-users.acl": redisacl.acl_file({name: pw(name) for name in redisacl.USERS}),
        "redis-replication.conf": redisacl.replication_include(pw("replication")),
        "redis-app-password": pw("app"),
        "redis-ops-password": pw("ops"),
        "redis-exporter.json": json.dumps(exporter),
        "sentinel-password": secrets["sentinel_auth"].get_secret_value(),
        "alertmanager-web.yml": webauth.web_config(secrets["alertmanager_web"].get_secret_value()),
        "alertmanager-password": secrets["alertmanager_web"].get_secret_value(),
    }


def sentinel_secret_lines(spec: StackSpec, secrets: dict) -> str:
    """What a Sentinel's working config adds to the rendered one: its own password (asked of
    clients and of the other Sentinels) and the user it logs in to Redis as."""
    name = spec.redis.sentinel.master_name
    sentinel_pw = secrets["sentinel_auth"].get_secret_value()
    return (f"requirepass {sentinel_pw}\nsentinel sentinel-pass {sentinel_pw}\n"
            f"sentinel auth-user {name} sentinel\nsentinel auth-pass {name} {secrets['redis_sentinel'].get_secret_value()}\n"
            + redisacl.sentinel_exporter_user(secrets["redis_exporter"].get_secret_value()))


def write_credentials(spec: StackSpec, layout: LocalLayout, secrets: dict, who: RunAs) -> None:
    """One pgpass per consumer, each with only its own roles' lines (the service: its runtime and
    reader roles; migrations: the owner; replicas: replication), the exporter's password file,
    and the Redis users and password files (0600, owned by the service user). The superuser's
    password is in none of them (``fab`` reads it from secrets.json; pgBackRest has its own)."""
    files = {name: _pgpass(layout, [(role, secrets[key]) for role, key in roles])
             for name, roles in pgpass_files(spec).items()}
    files["exporter-password"] = secrets["postgres_exporter"].get_secret_value()
    files.update(redis_secret_files(spec, layout, secrets))
    sdir = layout.root / "secrets"
    for name, content in files.items():
        write_secret_file(sdir / name, content)
        who.chown(sdir / name)
    (sdir / "secrets.json").exists() and who.chown(sdir / "secrets.json")


def pgpass_files(spec: StackSpec) -> dict[str, list[tuple[str, str]]]:
    """pgpass file name under secrets/ -> the (role, secret name) pairs it holds."""
    pg = spec.postgres
    return {"pgpass": [(pg.user, "postgres_app"), (pg.reader_user, "postgres_reader")],
            "pgpass-migrate": [(pg.owner_user, "postgres_owner")],
            "pgpass-replication": [(pg.replication_user, "postgres_replication")]}


def _pgpass(layout: LocalLayout, roles: list[tuple[str, SecretStr]]) -> str:
    return "".join(f"{ep.host}:{ep.port}:*:{role}:{password.get_secret_value()}\n"
                   for ep in map(layout.endpoint, layout.postgres_nodes()) for role, password in roles)


def init_primary(layout: LocalLayout, secrets: dict, who: RunAs) -> bool:
    data = Path(layout.data(PG_PRIMARY))
    if (data / "PG_VERSION").exists():
        return False
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    who.chown(data)
    with tempfile.NamedTemporaryFile("w", dir=layout.root / "secrets", delete=False) as f:
        f.write(secrets["postgres_superuser"].get_secret_value())
    pwfile = Path(f.name)
    who.chown(pwfile)
    try:
        run([binary("initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--data-checksums"],
            who, "initdb of the primary", timeout=120)
    except BootstrapError:
        shutil.rmtree(data, ignore_errors=True)  # nothing half-done: the next `fab up` starts clean
        raise
    finally:
        pwfile.unlink(missing_ok=True)
    return True


def superuser_conn(spec: StackSpec, layout: LocalLayout, secrets: dict, proc: str = PG_PRIMARY,
                   dbname: str = "postgres") -> psycopg.Connection:
    ep = layout.endpoint(proc)
    return psycopg.connect(host=ep.host, port=ep.port, user="postgres", dbname=dbname,
                           password=secrets["postgres_superuser"].get_secret_value(),
                           connect_timeout=3, autocommit=True, **layout.pg_tls())


def configure_primary(spec: StackSpec, layout: LocalLayout, secrets: dict) -> None:
    """Roles, database, privileges (infra/pgroles.py), extension and replication slots; safe to
    run again. A stack made before the owner role existed (the service's role owned
    everything) is handed over to it in place, once."""
    pg = spec.postgres
    roles = [(pg.owner_user, secrets["postgres_owner"], "LOGIN"),
             (pg.user, secrets["postgres_app"], "LOGIN"),
             (pg.reader_user, secrets["postgres_reader"], "LOGIN"),
             (pg.replication_user, secrets["postgres_replication"], "LOGIN REPLICATION"),
             ("exporter", secrets["postgres_exporter"], "LOGIN")]
    with superuser_conn(spec, layout, secrets) as conn:
        for name, password, attrs in roles:
            row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
            if row and scram_matches(row[0], password.get_secret_value()):
                continue  # unchanged: leave the verifier (and the catalog) alone
            verb = "ALTER" if row else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} WITH " + attrs + " PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password.get_secret_value())))
        conn.execute("GRANT pg_monitor TO exporter")
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                             (pg.database,)).fetchone()
        if not owner:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(pg.database), sql.Identifier(pg.owner_user)))
        for replica in layout.postgres_replicas():
            slot = replica_slot(replica)
            conn.execute("SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
                         "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (slot, slot))
    with superuser_conn(spec, layout, secrets, dbname=pg.database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with conn.transaction():
            if owner and owner[0] != pg.owner_user:
                _hand_over(conn, pg, previous=owner[0])
            conn.execute(pgroles.privileges_sql(pg))


def _hand_over(conn: psycopg.Connection, pg: PostgresSpec, previous: str) -> None:
    """Give a database that ``previous`` owned to the owner role, and the service the DML it
    had on the existing tables (audit_log: INSERT only, as migration 0008 leaves it)."""
    ident = {"db": sql.Identifier(pg.database), "owner": sql.Identifier(pg.owner_user),
             "prev": sql.Identifier(previous), "app": sql.Identifier(pg.user), "reader": sql.Identifier(pg.reader_user)}
    conn.execute(sql.SQL("ALTER DATABASE {db} OWNER TO {owner}").format(**ident))
    conn.execute(sql.SQL("REASSIGN OWNED BY {prev} TO {owner}").format(**ident))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app}; "
                         "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}; "
                         "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}; "
                         "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {reader}").format(**ident))
    if conn.execute("SELECT to_regclass('public.audit_log')").fetchone()[0]:
        conn.execute(sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {app}").format(**ident))


def scram_matches(verifier: str | None, password: str) -> bool:
    """Does a stored ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` verifier match ``password``?
    (RFC 5802/7677; lets ``fab up`` leave an unchanged role password untouched.)"""
    import base64
    import hmac
    try:
        method, rest = verifier.split("$", 1)
        iter_salt, keys = rest.split("$", 1)
        iterations, salt = iter_salt.split(":", 1)
        stored_key = keys.split(":", 1)[0]
    except (AttributeError, ValueError):
        return False
    if method != "SCRAM-SHA-256":
        return False
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))


def clone_replica(spec: StackSpec, layout: LocalLayout, proc: str, who: RunAs, secrets: dict,
                  primary: str = PG_PRIMARY) -> bool:
    """Clone ``proc`` from the node holding the primary role, streaming from its own slot there.

    ``-R`` writes standby.signal and a primary_conninfo naming that node into the clone's
    postgresql.auto.conf (which outranks the rendered config), so a replica cloned after a
    failover follows the promoted node. Recovery targets a point-in-time restore may have left
    on the primary are stripped from the clone: a replica must never stop replaying and promote."""
    data = Path(layout.data(proc))
    if (data / "PG_VERSION").exists():
        return False
    if data.exists():
        shutil.rmtree(data)
    slot = replica_slot(proc)
    with superuser_conn(spec, layout, secrets, proc=primary) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
                     "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)", (slot, slot))
    env = {"PGPASSFILE": layout.secret("pgpass-replication"), "PATH": "/usr/bin:/bin"}
    try:
        run(basebackup_argv(spec, layout, proc, primary, str(data)), who, f"pg_basebackup for {proc}", env=env)
    except BootstrapError:
        shutil.rmtree(data, ignore_errors=True)
        raise
    strip_recovery_targets(data / "postgresql.auto.conf")
    return True


def basebackup_argv(spec: StackSpec, layout: LocalLayout, proc: str, primary: str, data: str) -> list[str]:
    """pg_basebackup of ``primary`` into ``data`` for replica ``proc``: its own slot, ``-R`` (standby.signal
    and a primary_conninfo in postgresql.auto.conf naming ``primary``, with ``proc`` as application_name)."""
    source = layout.endpoint(primary)
    tls = " ".join(f"{k}='{v}'" for k, v in layout.pg_tls().items())  # -R copies these into primary_conninfo
    conninfo = (f"host={source.host} port={source.port} user={spec.postgres.replication_user} "
                f"application_name={proc} {tls}")
    return [binary("pg_basebackup"), "-d", conninfo, "-D", data, "-X", "stream", "-S", replica_slot(proc),
            "-R", "--checkpoint=fast", "--no-password"]


RECOVERY_TARGET = ("recovery_target", "restore_command")


def strip_recovery_targets(auto_conf: Path) -> bool:
    """Remove recovery_target* and restore_command lines; True when something was removed."""
    if not auto_conf.exists():
        return False
    lines = auto_conf.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if not ln.lstrip().startswith(RECOVERY_TARGET)]
    if kept != lines:
        auto_conf.write_text("".join(kept))
        return True
    return False


def upgrade_primary_conninfo(auto_conf: Path, old_passfile: str, new_passfile: str, tls: dict[str, str]) -> bool:
    """Bring the ``primary_conninfo`` that ``pg_basebackup -R`` wrote for a node cloned by an
    older release up to date: the replication role's own password file instead of the shared
    one, and TLS verified against the stack's CA instead of libpq's ``sslmode=prefer``. True
    when the file changed (a reload applies it)."""
    if not auto_conf.exists():
        return False
    text = auto_conf.read_text()
    fixed = text.replace(f"passfile=''{old_passfile}''", f"passfile=''{new_passfile}''")
    if tls:
        fixed = fixed.replace("sslmode=prefer", " ".join(f"{k}=''{v}''" for k, v in tls.items()))
    if fixed == text:
        return False
    auto_conf.write_text(fixed)
    return True


def sync_working_config(rendered: Path, working: Path, who: RunAs, extra: str = "") -> bool:
    """Copy a rendered Redis/Sentinel config into the process's data dir when the rendered file
    (or ``extra``, secret lines a Sentinel adds) changed since the last copy (Sentinel and Redis
    rewrite their working copy at failover)."""
    digest = hashlib.sha256(rendered.read_bytes() + extra.encode()).hexdigest()
    marker = working.with_name(working.name + ".source-sha256")
    if working.exists() and marker.exists() and marker.read_text() == digest:
        return False
    working.write_bytes(rendered.read_bytes() + extra.encode())
    working.chmod(0o600)
    marker.write_text(digest)
    who.chown(working)
    who.chown(marker)
    return True


def prepare_backup(spec: StackSpec, layout: LocalLayout, secrets: dict, who: RunAs) -> None:
    """pgBackRest's directories owned by the service user, its secret files 0600 (every ``fab up``)."""
    paths = BackupPaths.of(layout)
    for d in (paths.root, paths.repo1, paths.repo2, paths.log, paths.lock, paths.spool, paths.sets,
              paths.jobs, str(Path(paths.repo1).parent)):
        Path(d).mkdir(parents=True, exist_ok=True)
        who.chown(Path(d))
    inc = Path(paths.include)
    inc.mkdir(parents=True, exist_ok=True)
    inc.chmod(0o700)
    who.chown(inc)
    for path, content in secret_files(spec, layout, secrets).items():
        write_secret_file(Path(path), content)
        who.chown(Path(path))


def stanza_create(spec: StackSpec, layout: LocalLayout, who: RunAs) -> str:
    """Create (or check) the stanza; idempotent. Run by ``fab up`` once the primary is healthy."""
    paths = BackupPaths.of(layout)
    argv = who.wrap(base_argv(paths, spec.backup.stanza) + ["stanza-create"])
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                         env={"PGPASSFILE": paths.pgpass, "PATH": "/usr/bin:/bin"})
    if res.returncode != 0:
        raise BootstrapError(f"pgbackrest stanza-create for stanza {spec.backup.stanza!r} failed "
                             f"(exit {res.returncode}):\n{(res.stderr or res.stdout).strip()[-1500:]}")
    return (res.stdout or res.stderr).strip()
