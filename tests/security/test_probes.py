"""Security probes against the running local stack (issue #13): each finding, tried from
outside the way an attacker on the host network would, must fail. docs/security.md lists every
control and the test that proves it.
"""

from __future__ import annotations

import os
import stat

import httpx
import pytest

pytestmark = pytest.mark.stack


def test_prometheus_lifecycle_api_is_off(running_stack, layout):
    """POST /-/reload and /-/quit would let anyone on the host reload or stop Prometheus."""
    base = f"http://{layout.endpoint('prometheus')}"
    for path in ("/-/reload", "/-/quit"):
        r = httpx.post(base + path, timeout=5)
        assert r.status_code == 403, (path, r.status_code, r.text[:200])
    assert httpx.get(base + "/-/ready", timeout=5).status_code == 200  # still up


def test_no_state_file_is_readable_by_others(running_stack):
    """Data and secrets: nothing under the state directory is readable by other users, the
    Redis append-only files included (configs and logs under conf/ and log/ are not secret)."""
    root = running_stack.root
    loose = []
    for sub in ("secrets", "data", "tls"):
        for dirpath, dirnames, filenames in os.walk(root / sub):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    continue
                if mode & (stat.S_IROTH | stat.S_IWOTH):
                    loose.append(f"{path} {stat.filemode(mode)}")
    assert loose == []


def _api(running_stack, token: str) -> int:
    spec = running_stack.spec
    return httpx.get(f"https://{spec.host}:{spec.nginx.https_port}/api/v1/whoami", timeout=5,
                     headers={"Authorization": f"Bearer {token}"}, verify=running_stack.cafile).status_code


def test_a_forged_redis_entry_grants_nothing(running_stack, layout):
    """Before: SET recon:token:<sha256 of any string> '{...,"role":"admin"}' made that string an
    admin token. The bearer check never reads Redis now."""
    import hashlib
    import json

    import redis
    forged = "rk_forged-" + os.urandom(8).hex()
    r = redis.Redis(host=running_stack.spec.host, port=layout.endpoint("redis-primary").port,
                    **running_stack.redis_auth("app"))
    key = f"recon:token:{hashlib.sha256(forged.encode()).hexdigest()}"
    r.set(key, json.dumps({"token_id": 1, "name": "x", "role": "admin"}), ex=60)
    try:
        assert _api(running_stack, forged) == 401
    finally:
        r.delete(key)


def test_a_revocation_made_in_the_database_holds_on_the_next_request(running_stack, secrets):
    import subprocess
    import sys

    from infra.local.bootstrap import superuser_conn
    env = {**os.environ, **running_stack.app_env()}
    res = subprocess.run([sys.executable, "-m", "app", "token", "create", "--role", "viewer", "--name", "probe"],
                         env=env, capture_output=True, text=True, timeout=60)
    token = res.stdout.strip().splitlines()[-1]
    assert _api(running_stack, token) == 200
    with superuser_conn(running_stack.spec, running_stack.layout, secrets,
                        dbname=running_stack.spec.postgres.database) as conn:
        conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE token_sha256 = encode(sha256(%s::bytea), 'hex')",
                     (token,))
    assert _api(running_stack, token) == 401


def test_redis_and_sentinel_refuse_anonymous_clients(running_stack, layout):
    """Before: no password anywhere; anyone on the host could read, write or reconfigure Redis
    and point the Sentinels (and so the service) at another Redis."""
    import redis
    for proc in ("redis-primary", *layout.redis_replicas(), *layout.sentinels()):
        ep = layout.endpoint(proc)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=ep.host, port=ep.port, socket_timeout=2).ping()


@pytest.mark.parametrize("command", [("SET", "other:probe", "1"), ("CONFIG", "GET", "dir"), ("FLUSHALL",),
                                     ("KEYS", "*"), ("SLAVEOF", "NO", "ONE"), ("ACL", "LIST")],
                         ids=["other-keys", "config", "flushall", "keys", "slaveof", "acl"])
def test_the_services_redis_user_has_only_what_it_needs(running_stack, layout, command):
    import redis
    ep = layout.endpoint("redis-primary")
    r = redis.Redis(host=ep.host, port=ep.port, socket_timeout=2, **running_stack.redis_auth("app"))
    assert r.set("recon:probe", "1", ex=10)  # its own keys: yes
    with pytest.raises(redis.exceptions.NoPermissionError):
        r.execute_command(*command)


def test_alertmanager_answers_only_with_basic_auth(running_stack, layout, secrets):
    """Before: POST /api/v2/silences silenced any alert for anyone who reached the port."""
    base = f"http://{layout.endpoint('alertmanager')}"
    silence = {"matchers": [{"name": "alertname", "value": "Probe", "isRegex": False}], "startsAt": "2030-01-01T00:00:00Z",
               "endsAt": "2030-01-01T01:00:00Z", "createdBy": "probe", "comment": "must be refused"}
    assert httpx.post(f"{base}/api/v2/silences", json=silence, timeout=5).status_code == 401
    assert httpx.get(f"{base}/api/v2/alerts", timeout=5).status_code == 401
    auth = ("recon", secrets["alertmanager_web"].get_secret_value())
    assert httpx.get(f"{base}/api/v2/status", auth=auth, timeout=5).status_code == 200


# -- PostgreSQL: least privilege ----------------------------------------------------------------
def _pg(running_stack, role: str, secrets, secret: str, node: str = "postgres-primary"):
    import psycopg
    spec, ep = running_stack.spec, running_stack.layout.endpoint(node)
    return psycopg.connect(host=ep.host, port=ep.port, dbname=spec.postgres.database, user=role,
                           password=secrets[secret].get_secret_value(), connect_timeout=3)


def test_the_audit_log_is_insert_only_for_the_service(running_stack, secrets):
    """Before: the service's role owned audit_log and could UPDATE, DELETE or TRUNCATE it."""
    import psycopg
    with _pg(running_stack, running_stack.spec.postgres.user, secrets, "postgres_app") as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("INSERT INTO audit_log (actor, action, entity) VALUES ('probe', 'probe', 'probe')")
            assert conn.execute("SELECT count(*) FROM audit_log WHERE actor = 'probe'").fetchone()[0] == 1
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log",
                          "ALTER TABLE audit_log DISABLE TRIGGER ALL", "DROP TABLE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction(force_rollback=True):
                conn.execute(statement)


def test_the_service_role_cannot_change_the_schema(running_stack, secrets):
    """Migrations run as the owner role; the service's own role has DML only."""
    import psycopg
    with _pg(running_stack, running_stack.spec.postgres.user, secrets, "postgres_app") as conn:
        for statement in ("CREATE TABLE probe (id int)", "ALTER TABLE records ADD COLUMN probe int",
                          "DROP TABLE records", "CREATE FUNCTION probe() RETURNS int LANGUAGE sql AS 'SELECT 1'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction(force_rollback=True):
                conn.execute(statement)
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("ANALYZE records")  # a non-owner's ANALYZE does not fail: it skips, with a warning
        assert any("skipping" in n for n in notices), notices
        conn.execute("SELECT refresh_bulk_statistics()")  # the one owner-only task it needs, nothing more
        conn.rollback()


def test_the_reader_role_only_reads(running_stack, secrets):
    import psycopg
    with _pg(running_stack, running_stack.spec.postgres.reader_user, secrets, "postgres_reader") as conn:
        conn.execute("SELECT count(*) FROM records").fetchone()
        for statement in ("INSERT INTO audit_log (id, actor, action, entity) VALUES (-1, 'p', 'p', 'p')",
                          "UPDATE jobs SET stage = stage", "DELETE FROM api_tokens"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction(force_rollback=True):
                conn.execute(statement)


def test_no_table_belongs_to_the_services_role(running_stack, secrets):
    from infra.local.bootstrap import superuser_conn
    pg = running_stack.spec.postgres
    with superuser_conn(running_stack.spec, running_stack.layout, secrets, dbname=pg.database) as conn:
        owned = conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) IN (%s, %s)",
                             (pg.user, pg.reader_user)).fetchall()
        migrated_by = conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'schema_migrations'"
                                   ).fetchone()[0]
    assert owned == []
    assert migrated_by == pg.owner_user


def test_each_password_file_holds_only_its_consumers_roles(running_stack, secrets):
    """Before: one pgpass held every role's password, the superuser's included, and the service read it."""
    pg = running_stack.spec.postgres
    sdir = running_stack.root / "secrets"
    expected = {"pgpass": {pg.user, pg.reader_user}, "pgpass-migrate": {pg.owner_user},
                "pgpass-replication": {pg.replication_user}}
    for name, roles in expected.items():
        lines = [ln for ln in (sdir / name).read_text().splitlines() if ln.strip()]
        assert {ln.split(":")[3] for ln in lines} == roles, name
    superuser = secrets["postgres_superuser"].get_secret_value()
    holders = [str(p.relative_to(sdir)) for p in sdir.rglob("*") if p.is_file() and p.name != "secrets.json"
               and superuser in p.read_text(errors="replace")]
    assert holders == ["pgbackrest/pgpass"]  # pgBackRest's socket login, read by backups only


# -- PostgreSQL: TLS on every connection ----------------------------------------------------------
def test_postgres_refuses_clients_that_will_not_encrypt(running_stack, secrets):
    """Before: ssl=off, replication included. Every node accepts TCP clients over TLS only."""
    import psycopg
    pg = running_stack.spec.postgres
    for node in running_stack.layout.postgres_nodes():
        ep = running_stack.layout.endpoint(node)
        with pytest.raises(psycopg.OperationalError, match="no encryption"):
            psycopg.connect(host=ep.host, port=ep.port, dbname=pg.database, user=pg.user, sslmode="disable",
                            password=secrets["postgres_app"].get_secret_value(), connect_timeout=3)


def test_every_connection_to_postgres_is_encrypted_and_verified(running_stack, secrets):
    """The service, the workers, the exporter and the replicas' WAL streams: no TCP session in
    clear; the service's URLs ask for the server's certificate to be verified (verify-full)."""
    from infra.local.bootstrap import superuser_conn
    env = running_stack.app_env()
    for key in ("RECON_DATABASE_URL", "RECON_DATABASE_REPLICA_URL"):
        assert "sslmode=verify-full" in env[key] and "sslrootcert=" in env[key], key
    for node in running_stack.layout.postgres_nodes():
        with superuser_conn(running_stack.spec, running_stack.layout, secrets, proc=node) as conn:
            rows = conn.execute("SELECT a.usename, a.backend_type, s.ssl FROM pg_stat_activity a "
                                "JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL").fetchall()
            assert rows, node  # this probe's own session at least
            assert [r for r in rows if not r[2]] == [], node
            if node == "postgres-primary" and running_stack.layout.postgres_replicas():
                assert any(r[1] == "walsender" for r in rows)


def test_the_exporters_sentinel_user_only_reads(running_stack, layout, secrets):
    """The metrics exporter logs in to each Sentinel as ``exporter``: CKQUORUM and the masters'
    state, never a command that changes who is master."""
    import redis
    ep = layout.endpoint(layout.sentinels()[0])
    s = redis.Redis(host=ep.host, port=ep.port, socket_timeout=2, username="exporter",
                    password=secrets["redis_exporter"].get_secret_value(), decode_responses=True)
    name = running_stack.spec.redis.sentinel.master_name
    assert s.execute_command("SENTINEL", "CKQUORUM", name).startswith("OK")
    for command in (("SENTINEL", "FAILOVER", name), ("SENTINEL", "SET", name, "quorum", "1"),
                    ("SENTINEL", "REMOVE", name), ("SENTINEL", "RESET", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            s.execute_command(*command)


def test_the_exporter_connects_to_the_application_database_and_reads_no_table(running_stack, secrets):
    """Before: the exporter role had no CONNECT there, so every --auto-discover-databases scrape
    was refused ('permission denied for database'); it reads statistics, never the data."""
    import psycopg
    with _pg(running_stack, "exporter", secrets, "postgres_exporter") as conn:
        assert conn.execute("SELECT count(*) FROM pg_stat_user_tables").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM records")
