"""postgresql.conf and pg_hba.conf: a throwaway cluster started with the rendered files.

initdb makes a data directory; ``postgres -c config_file=<rendered>`` runs it with the
rendered postgresql.conf, which names the rendered pg_hba.conf. As root the server runs as
the ``postgres`` user (PostgreSQL refuses root). The replica's and the container targets'
files are checked with ``postgres -C``, which parses and validates a config file the way the
server does at start, then prints one setting.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

PASSWORD = "throwaway-test-password"
ARCHIVE = "test -n '%f' && test -f %p"  # quotes: the template must escape them


@pytest.fixture(scope="module")
def cluster(tls_pair, free_ports, find_tool, run_cmd, poll, service_user_kw, chown_to_service_user,
            pg_helpers):
    """One running primary from the rendered configs for the module (initdb + start take
    seconds) -> (Rendered, connect(**kw), subprocess kw to run as the service user)."""
    render_local_into, reachable_dir, Processes = pg_helpers
    port = free_ports(2)  # the primary on port, replica 1 on port + 1 (rendered, not started)
    procs = Processes()
    with reachable_dir() as state:
        try:
            from infra.local.tls import ensure_certificates
            ensure_certificates(state / "tls", "localhost", "127.0.0.1")  # the local target's CA and certificate
            tls = {name: str(state / "tls" / f"{name}") for name in ("ca.crt", "server.crt", "server.key")}
            client_tls = {"sslmode": "verify-full", "sslrootcert": tls["ca.crt"],
                          "sslcert": str(state / "tls" / "no-client-certificate")}
            r = render_local_into(state, tls_pair, archive_command=ARCHIVE, tls_cert=tls["server.crt"],
                                  tls_key=tls["server.key"], pg_tls=client_tls, overrides={"postgres": {
                                      "port": port, "replicas": 1, "max_connections": 37, "shared_buffers_mib": 32,
                                      "synchronous_commit": "local", "archive_timeout_s": 45}})
            data = Path(r.layout.data("postgres-primary"))
            (state / "pw").write_text(PASSWORD + "\n")
            chown_to_service_user(state)
            as_pg = {"cwd": state, **service_user_kw}
            run_cmd([find_tool("initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(state / "pw"),
                     "--auth=scram-sha-256", "-E", "UTF8", "--no-sync", "--no-instructions"], **as_pg)
            procs.start("postgres", [find_tool("postgres"), "-D", str(data),
                                     "-c", f"config_file={r.path('postgres/primary/postgresql.conf')}"],
                        state / "log", **as_pg)

            def connect(**kw) -> psycopg.Connection:
                args = {"host": "127.0.0.1", "port": port, "user": "postgres", "password": PASSWORD,
                        "dbname": "postgres", "connect_timeout": 2, "autocommit": True, **kw}
                return psycopg.connect(**args)

            def up() -> bool:
                procs.assert_running()
                with connect() as c:
                    return c.execute("SELECT 1").fetchone() == (1,)

            poll(up, 20, "postgres to accept connections")
            yield r, connect, as_pg
        finally:
            procs.stop_all()


def show(conn: psycopg.Connection, name: str) -> str:
    return conn.execute(f"SHOW {name}").fetchone()[0]


def test_primary_runs_with_the_rendered_settings(cluster):
    r, connect, _ = cluster
    expected = {
        "config_file": str(r.path("postgres/primary/postgresql.conf")),
        "hba_file": str(r.path("postgres/pg_hba.conf")),
        "listen_addresses": "127.0.0.1",
        "port": str(r.spec.postgres.port),
        "unix_socket_directories": r.layout.run(""),
        "wal_level": "replica",
        "max_connections": "37",
        "shared_buffers": "32MB",
        "synchronous_commit": "local",
        "max_wal_senders": "10",
        "hot_standby": "on",
        "password_encryption": "scram-sha-256",
        "archive_mode": "on",
        "archive_command": ARCHIVE,
        "archive_timeout": "45s",
        "shared_preload_libraries": "pg_stat_statements",
        "ssl": "on",
        "ssl_min_protocol_version": "TLSv1.2",
    }
    with connect() as c:
        assert {k: show(c, k) for k in expected} == expected
        c.execute("CREATE EXTENSION pg_stat_statements")
        assert c.execute("SELECT count(*) >= 0 FROM pg_stat_statements").fetchone() == (True,)


def test_pg_hba_requires_the_password(cluster):
    _, connect, _ = cluster
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(password="wrong")


def test_tcp_clients_must_use_tls(cluster):
    """pg_hba.conf has hostssl lines only: a client that will not encrypt finds no entry."""
    _, connect, _ = cluster
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        connect(sslmode="disable")


def test_the_server_certificate_verifies_against_the_stack_ca(cluster):
    r, connect, _ = cluster
    with connect(**r.layout.pg_tls()) as c:  # what every client of the local target uses
        assert c.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]
    assert r.layout.pg_tls() == r.ctx.pg_tls
    with pytest.raises(psycopg.OperationalError, match="certificate|SSL"):  # another CA: refused
        connect(sslmode="verify-full", sslrootcert="system")


def test_pg_hba_admits_the_replication_user(cluster):
    r, connect, _ = cluster
    user = r.spec.postgres.replication_user
    with connect() as c:
        c.execute(f"CREATE ROLE {user} WITH REPLICATION LOGIN PASSWORD 'repl-pw'")
    with connect(user=user, password="repl-pw", replication="true", dbname=None) as c:
        system_id, timeline, *_ = c.execute("IDENTIFY_SYSTEM").fetchone()
        assert int(system_id) > 0 and timeline == 1


def test_replica_config_streams_from_the_primary(cluster, find_tool, run_cmd):
    r, _, as_pg = cluster
    conf = r.path("postgres/replica-1/postgresql.conf")
    primary = r.layout.endpoint("postgres-primary")

    def setting(name: str) -> str:
        out = run_cmd([find_tool("postgres"), "-D", r.layout.data("postgres-primary"),
                       "-c", f"config_file={conf}", "-C", name], **as_pg)
        return out.stdout.strip()

    assert setting("port") == str(r.spec.local_ports()["postgres-replica-1"])
    assert setting("primary_slot_name") == "replica_1"
    conninfo = dict(kv.split("=", 1) for kv in setting("primary_conninfo").split())
    assert conninfo == {"host": primary.host, "port": str(primary.port),
                        "user": r.spec.postgres.replication_user,
                        "application_name": "postgres-replica-1",
                        "passfile": r.layout.secret("pgpass-replication"),
                        **r.ctx.pg_tls}
    assert setting("hot_standby") == "on"
    primary_text = r.text("postgres/primary/postgresql.conf")
    assert "primary_conninfo" not in primary_text and "primary_slot_name" not in primary_text


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_container_configs_parse(stack, cluster, render_stack, find_tool, run_cmd):
    """The container files pass the server's own parser and value checks (``postgres -C``)."""
    r, _, as_pg = cluster
    s = render_stack(stack)
    data = r.layout.data("postgres-primary")
    for rel in ("postgres/primary/postgresql.conf", "postgres/replica-1/postgresql.conf"):
        conf = Path(data).parent / f"{stack}-{rel.replace('/', '-')}"
        conf.write_text(s.text(rel))
        conf.chmod(0o644)

        def setting(name: str) -> str:
            return run_cmd([find_tool("postgres"), "-D", data, "-c", f"config_file={conf}", "-C", name],
                           **as_pg).stdout.strip()

        assert setting("listen_addresses") == "0.0.0.0"
        assert setting("port") == str(s.spec.postgres.port)
        assert setting("max_connections") == str(s.spec.postgres.max_connections)
        assert setting("hba_file") == "/etc/recon/postgres/pg_hba.conf"
    assert "host=postgres-primary port=5432 " in setting("primary_conninfo")
    hba = s.text("postgres/pg_hba.conf")
    assert f"host    replication     {s.spec.postgres.replication_user} " in hba
