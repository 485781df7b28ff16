"""The troubleshooting tasks on the running stack: logs, logs.export, restart, doctor (#15)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def fab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ)


def test_logs_tail_filter_and_refuse_bad_input(running_stack):
    res = fab("logs", "postgres-primary", "--lines", "5")
    assert res.returncode == 0 and 0 < len(res.stdout.splitlines()) <= 5
    res = fab("logs", "postgres-primary", "--grep", "checkpoint", "--lines", "0")
    assert res.returncode == 0 and all("checkpoint" in ln for ln in res.stdout.splitlines())
    bad = fab("logs", "postgres-primary", "--since", "yesterday")
    assert bad.returncode == 2 and "--since 'yesterday'" in bad.stderr and "10m" in bad.stderr
    unknown = fab("logs", "no-such-thing")
    assert unknown.returncode == 2 and "no service 'no-such-thing'" in unknown.stderr and "nginx" in unknown.stderr


def test_logs_export_holds_every_log(running_stack, tmp_path):
    dest = tmp_path / "logs.tar.gz"
    assert fab("logs.export", "--to", str(dest)).returncode == 0
    names = {Path(n).name for n in tarfile.open(dest).getnames()}
    assert {"postgres-primary.log", "nginx.log", "supervisord.log"} <= names


def test_restart_of_a_replicated_service_fails_no_request(running_stack):
    spec = running_stack.spec
    ctx = ssl.create_default_context(cafile=running_stack.cafile)
    url = f"https://{spec.host}:{spec.nginx.https_port}/nginx/upstream-health"
    failed, done, stop = [], [0], threading.Event()

    def load():
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
                    if r.status != 200:
                        failed.append(r.status)
            except Exception as exc:  # noqa: BLE001 - counted
                failed.append(repr(exc))
            done[0] += 1
            time.sleep(0.02)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        res = fab("restart", "backend", "--yes")
    finally:
        stop.set()
        t.join(10)
    assert res.returncode == 0, res.stderr[-1500:]
    assert "backend-blue-1 healthy again" in res.stderr and "backend-blue-2 healthy again" in res.stderr
    assert done[0] > 50 and failed == [], failed[:5]


def test_restart_refuses_the_primary(running_stack):
    res = fab("restart", running_stack.release.postgres.primary, "--yes")
    assert res.returncode == 2 and "is the PostgreSQL primary" in res.stderr and "db.failover" in res.stderr


def test_doctor_is_green_then_names_a_stopped_backend(running_stack):
    res = fab("doctor", "--json")
    verdicts = {v["check"]: v for v in json.loads(res.stdout)}
    assert list(verdicts) == ["status", "connectivity", "resources", "database", "redis", "recent errors"]
    assert res.returncode == 0 and verdicts["status"]["verdict"] == "ok", verdicts
    running_stack.supervisor.stop("backend-blue-2")
    try:
        res = fab("doctor", "--json")
        verdicts = {v["check"]: v for v in json.loads(res.stdout)}
        assert res.returncode == 1
        assert verdicts["status"]["verdict"] == "fail" and "backend-blue-2" in verdicts["status"]["detail"]
        assert verdicts["status"]["next_step"]
    finally:
        running_stack.supervisor.start("backend-blue-2")
        running_stack.wait_healthy([p for p in running_stack.processes() if p.name == "backend-blue-2"],
                                   running_stack.secrets())
