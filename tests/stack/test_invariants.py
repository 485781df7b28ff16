"""What must always hold on the running stack, and the status that tells the truth about it.

Against the stack `make test` started: each test breaks one thing the way it breaks in life,
sees `fab status` (or `fab up`) refuse to call it green, and puts it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def fab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ)


def rows(res: subprocess.CompletedProcess) -> dict[str, dict]:
    return {r["service"]: r for r in json.loads(res.stdout)}


def _sql(target, sql: str) -> list:
    from infra.local.bootstrap import superuser_conn
    with superuser_conn(target.spec, target.layout, target.secrets(), proc=target.release.postgres.primary) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def test_up_returns_only_when_status_is_green(running_stack):
    """fab up and fab status share one definition of healthy: right after up, status exits 0,
    also for processes within supervisord's startsecs (nginx, prometheus, alertmanager)."""
    for name in ("nginx", "prometheus", "alertmanager"):
        running_stack.supervisor.stop(name)
    up = fab("up")
    assert up.returncode == 0, up.stderr[-2000:]
    status = fab("status", "--json")
    assert status.returncode == 0, [r for r in rows(status).values() if r["healthy"] is False]
    assert "invariants hold" in up.stderr


def test_status_says_archiving_fails_and_exits_1(running_stack):
    """WAL archiving broken (archive_command failing) is never green; fixed, green again."""
    t = running_stack
    try:
        _sql(t, "ALTER SYSTEM SET archive_command = 'false'")
        _sql(t, "SELECT pg_reload_conf()")
        time.sleep(0.5)
        _sql(t, "SELECT pg_logical_emit_message(false, 'test', 'x')")
        _sql(t, "SELECT pg_switch_wal()")
        deadline = time.monotonic() + 30
        while not _sql(t, "SELECT last_failed_time > COALESCE(last_archived_time, '-infinity') FROM pg_stat_archiver")[0][0]:
            assert time.monotonic() < deadline, "archiving never failed"
            time.sleep(0.2)
        status = fab("status", "--json")
        assert status.returncode == 1
        row = rows(status)["wal-archiving"]
        assert row["healthy"] is False and row["state"] == "FAILING" and "failed" in row["detail"]
        up = fab("up")
        assert up.returncode != 0 and "WAL archiving from the primary" in up.stderr
    finally:
        _sql(t, "ALTER SYSTEM RESET archive_command")
        _sql(t, "SELECT pg_reload_conf()")
    deadline = time.monotonic() + 90  # the archiver retries the failed segment (after up to 60 s)
    while (status := fab("status", "--json")).returncode != 0:
        assert time.monotonic() < deadline, rows(status)["wal-archiving"]
        time.sleep(2)
    assert rows(status)["wal-archiving"]["state"] == "OK"
