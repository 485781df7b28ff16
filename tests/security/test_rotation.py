"""``fab secrets.rotate`` on the running local stack, under load: every request answered, the
new passwords in place, the old ones refused (issue #13). The stack keeps serving afterwards
with its new passwords (the tests after this one run against it)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import psycopg
import pytest
import redis

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def fab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_rotation_refuses_what_it_cannot_rotate_and_plans_without_changing(running_stack):
    res = fab("secrets.rotate", "postgres_superuser", "--yes")
    assert res.returncode == 2 and "cannot be rotated by this task; rotatable: postgres_app" in res.stderr
    before = (running_stack.root / "secrets" / "secrets.json").read_text()
    res = fab("secrets.rotate", "redis_app", "--dry-run")
    assert res.returncode == 0 and "ACL LOAD" in res.stderr, res.stderr
    assert (running_stack.root / "secrets" / "secrets.json").read_text() == before
    res = fab("secrets.rotate", "postgres_app")
    assert res.returncode != 0 and "--yes" in res.stderr
    assert (running_stack.root / "secrets" / "secrets.json").read_text() == before


def test_rotating_the_services_passwords_under_load_fails_no_request(running_stack, secrets):
    from testing.loadgen import run_load
    spec, layout = running_stack.spec, running_stack.layout
    env = {**os.environ, **running_stack.app_env()}
    made = subprocess.run([sys.executable, "-m", "app", "token", "create", "--role", "viewer", "--name", "rotation"],
                          env=env, capture_output=True, text=True, timeout=60)
    token = made.stdout.strip().splitlines()[-1]
    old = {name: secrets[name].get_secret_value() for name in ("postgres_app", "postgres_reader", "redis_app")}
    stop, box = threading.Event(), {}

    def load() -> None:
        box["result"] = run_load(f"https://{spec.host}:{spec.nginx.https_port}", requests=20_000, duration_s=300,
                                 concurrency=4, rate_per_s=25, paths=("/api/v1/reconciliations", "/ready"),
                                 headers={"Authorization": f"Bearer {token}"}, cafile=running_stack.cafile, stop=stop)

    loader = threading.Thread(target=load)
    loader.start()
    try:
        for name in old:
            res = fab("secrets.rotate", name, "--yes")
            assert res.returncode == 0, res.stderr[-2000:]
            out = res.stdout + res.stderr
            assert "the old one is refused" in out and "check the stack's invariants" in out, out[-2000:]
    finally:
        stop.set()
        loader.join(60)
    result = box["result"]
    print("rotation under load:", {k: v for k, v in result.summary().items() if k != "by_slot"})
    statuses = Counter(s.status for s in result.samples)
    assert result.requests > 200 and result.failed == 0 and set(statuses) == {200}, (statuses, result.summary())

    new = running_stack.secrets()
    assert all(new[n].get_secret_value() != old[n] for n in old)
    ep, pg = layout.endpoint("postgres-primary"), spec.postgres
    for role, name in ((pg.user, "postgres_app"), (pg.reader_user, "postgres_reader")):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host=ep.host, port=ep.port, dbname=pg.database, user=role, password=old[name],
                            connect_timeout=3, **layout.pg_tls())
    r = layout.endpoint("redis-primary")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=r.host, port=r.port, username="app", password=old["redis_app"], socket_timeout=3).ping()
    # a process started now (the service's own CLI) logs in with the new passwords
    listed = subprocess.run([sys.executable, "-m", "app", "token", "list"], env={**os.environ, **running_stack.app_env()},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "rotation" in listed.stdout, listed.stderr
