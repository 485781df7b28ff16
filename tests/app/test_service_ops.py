"""Operational contract of the processes: serve, migrate, token; health, readiness, metrics, headers."""

from __future__ import annotations

import subprocess
import sys

import httpx
import psycopg
import pytest

from tests.app.conftest import ROOT


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m app ...`` as a real process (the contract the supervisor relies on)."""
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``app.__main__.main`` in-process with ``env`` as the environment: same code path, no
    interpreter start-up (seconds each on a loaded 2-core machine)."""
    import os

    from app.__main__ import main
    from app.settings import get_settings

    def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        for key in [k for k in os.environ if k.startswith("RECON_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("RECON_"):
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        finally:
            get_settings.cache_clear()
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return _run


def test_health_answers_with_slot_and_version_headers(server: str) -> None:
    r = httpx.get(f"{server}/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.headers["X-Recon-Slot"] == "green"
    assert r.headers["X-Recon-Version"] == "9.9.9"
    assert r.headers["X-Request-ID"]


def test_ready_when_database_and_redis_reachable(server: str) -> None:
    r = httpx.get(f"{server}/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_every_response_carries_slot_headers_even_errors(server: str) -> None:
    r = httpx.get(f"{server}/api/v1/reconciliations")  # no token
    assert r.status_code == 401
    assert r.headers["X-Recon-Slot"] == "green" and r.headers["X-Recon-Version"] == "9.9.9"


def test_request_id_is_echoed_when_safe_and_replaced_when_not(server: str) -> None:
    assert httpx.get(f"{server}/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    bad = httpx.get(f"{server}/health", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert bad != "x" * 500 and len(bad) == 32


def test_metrics_use_route_templates_not_raw_urls(server: str, dsn: str) -> None:
    from app import auth
    with psycopg.connect(dsn) as conn:  # its own token: the shared ones' per-minute budget may be spent
        _, token = auth.create_token(conn, name="metrics-probe", role="viewer")
        conn.commit()
    missing = httpx.get(f"{server}/api/v1/runs/987654", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 404, (missing.status_code, missing.text[:300])  # a flake once: say why
    assert httpx.get(f"{server}/no/such/path/123").status_code == 404
    text = httpx.get(f"{server}/metrics").text
    assert 'http_requests_total{method="GET",path="/api/v1/runs/{run_id}",status="404"}' in text
    assert 'path="<unmatched>"' in text
    assert "/runs/987654" not in text and "/no/such/path" not in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",path="/health"}' in text
    for name in ("recon_uploads_total", "recon_reconciliation_duration_seconds", "recon_match_rate",
                 "recon_records_processed_total"):
        assert f"# TYPE {name}" in text


def test_access_logs_are_json_with_request_id(server_proc) -> None:  # type: ignore[no-untyped-def]
    import json
    import time

    base, proc = server_proc
    httpx.get(f"{base}/api/v1/reconciliations", headers={"X-Request-ID": "log-probe-1"})
    time.sleep(0.2)
    lines = [ln for ln in proc.output().splitlines() if "log-probe-1" in ln]
    assert lines, f"no access log line with the request id in:\n{proc.output()[-2000:]}"
    entry = json.loads(lines[-1])
    assert entry["request_id"] == "log-probe-1" and entry["level"] == "INFO"
    assert entry["path"] == "/api/v1/reconciliations" and entry["status"] == 401
    assert entry["slot"] == "green" and entry["version"] == "9.9.9"


def test_ready_names_the_failed_dependency_and_health_stays_up(spawn) -> None:  # type: ignore[no-untyped-def]
    from testing.servers import free_port

    port = free_port()
    dead = free_port()
    proc = spawn("serve", "--port", str(port), env={
        "RECON_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{dead}/recon",
        "RECON_DB_CONNECT_TIMEOUT": "1"})
    base = f"http://127.0.0.1:{port}"
    import time

    for _ in range(100):
        try:
            if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        pytest.fail(proc.output())
    r = httpx.get(f"{base}/ready", timeout=10)
    assert r.status_code == 503
    body = r.json()
    assert body["failed"] == ["database"]
    assert body["checks"]["redis"] == "ok"
    assert str(dead) in body["checks"]["database"]
    assert httpx.get(f"{base}/health").status_code == 200
    proc.stop()


def test_migrate_is_idempotent(service_env: dict[str, str]) -> None:
    first = run_cli(service_env, "migrate")
    assert first.returncode == 0, first.stderr
    assert "up to date" in first.stdout


def test_migrate_fails_clearly_without_database(service_env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    from testing.servers import free_port

    env = {**service_env, "RECON_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/recon",
           "RECON_DB_CONNECT_TIMEOUT": "1"}
    res = run_cli(env, "migrate")  # one real process: exit status and stderr as the supervisor sees them
    assert res.returncode == 1
    assert res.stderr.startswith("error: cannot connect to PostgreSQL at postgresql://postgres@127.0.0.1:")
    assert "Traceback" not in res.stderr
    env.pop("RECON_DATABASE_URL")
    res = cli(env, "migrate")
    assert res.returncode == 2 and "RECON_DATABASE_URL is not set" in res.stderr


def test_migrate_refuses_an_edited_migration(dsn: str) -> None:
    from app.db.migrate import MigrationError, migrate

    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")
        conn.commit()
        try:
            with pytest.raises(MigrationError, match=r"0001_initial.sql changed after it was applied"):
                migrate(conn)
        finally:
            conn.rollback()
            from app.db.migrate import discover

            conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = 1", (discover()[0].checksum,))
            conn.commit()


def test_token_create_prints_once_and_stores_only_the_hash(service_env: dict[str, str], db: psycopg.Connection) -> None:
    res = run_cli(service_env, "token", "create", "--role", "operator", "--name", "ci-bot")
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip()
    assert token.startswith("rk_") and len(token) > 40
    row = db.execute("SELECT role, token_sha256 FROM api_tokens WHERE name = 'ci-bot'").fetchone()
    assert row[0] == "operator"
    assert row[1] != token and token not in str(db.execute("SELECT * FROM api_tokens").fetchall())
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'token.create' AND actor = 'cli'").fetchone()[0] >= 1


@pytest.mark.parametrize("args, message", [
    (["token", "create", "--role", "root", "--name", "x"], "invalid choice: 'root'"),
    (["token", "create", "--role", "viewer", "--name", " "], "token name ' ' must be 1-200 characters"),
    (["token", "revoke", "999999"], "no active token with id 999999"),
], ids=["unknown-role", "blank-name", "revoke-missing"])
def test_token_cli_rejects_bad_input(service_env: dict[str, str], cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    res = cli(service_env, *args)
    assert res.returncode != 0
    assert message in res.stderr


def test_invalid_settings_name_the_variable(service_env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    res = cli({**service_env, "RECON_LOG_LEVEL": "LOUD"}, "migrate")
    assert res.returncode == 2
    assert "RECON_LOG_LEVEL='LOUD' is not one of DEBUG" in res.stderr
    res = cli({**service_env, "RECON_REDIS_SENTINELS": "localhost"}, "migrate")
    assert res.returncode == 2 and "'localhost' is not host:port" in res.stderr


def test_secrets_are_redacted() -> None:
    from app.settings import Settings

    s = Settings(database_url="postgresql://recon:hunter2@db:5432/recon", redis_password="s3cret")
    shown = repr(s) + str(s.redacted())
    assert "hunter2" not in shown and "s3cret" not in shown
    assert s.redacted()["database_url"] == "postgresql://recon:***@db:5432/recon"


def test_redis_url_is_an_alternative_to_sentinel(stack) -> None:  # type: ignore[no-untyped-def]
    from app.cache import Cache
    from app.settings import Settings

    cache = Cache(Settings(redis_url=f"redis://127.0.0.1:{stack.redis.port}/0"))
    cache.ping()
    cache.set_json("url-mode", [1, 2], 60)
    assert cache.get_json("url-mode") == [1, 2] and cache.master_address() is None
    both = Cache(Settings(redis_url="redis://127.0.0.1:1/0", redis_sentinels=f"127.0.0.1:{stack.sentinel.port}"))
    both.ping()  # Sentinel wins when both are set
    assert "sentinel" in both.where


def test_orphaned_throwaway_postgres_is_reaped() -> None:
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from testing.servers import PostgresServer, reap_orphans

    base = Path(tempfile.mkdtemp(prefix="recon-reap-test-"))  # under /tmp: postgres must traverse it
    os.chmod(base, 0o755)
    try:
        root = Path(tempfile.mkdtemp(prefix="recon-pg-", dir=base))
        pg = PostgresServer(root=root).start()
        (root / "owner.pid").write_text("999999999")  # an owner that no longer exists
        live = Path(tempfile.mkdtemp(prefix="recon-pg-", dir=base))
        (live / "owner.pid").write_text(str(os.getpid()))
        assert reap_orphans(base) == [root]
        assert not root.exists() and live.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn(), connect_timeout=2)
    finally:
        shutil.rmtree(base, ignore_errors=True)
