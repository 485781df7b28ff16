"""The operator's commands, run as the operator runs them: `fab up`, `fab status`, `fab down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def fab(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_invalid_spec_names_every_problem_and_starts_nothing(tmp_path):
    state = tmp_path / "state"
    res = fab("up", env={"RECON_STATE_DIR": str(state), "RECON_REDIS__SENTINEL__QUORUM": "1",
                         "RECON_NGINX__HTTP_PORT": "15432", "RECON_BACKEND__CANARY_WEIGHT": "10"})
    assert res.returncode == 2, res.stderr
    err = res.stderr
    assert "3 problem(s)" in err
    assert "redis.sentinel.quorum: got 1; a majority of the 3 Sentinels: 2..3" in err
    assert "nginx.http_port (nginx-http): got 15432" in err
    assert "backend.canary_weight: got 10" in err
    assert not state.exists(), "an invalid spec must start nothing and create nothing"


def test_out_of_range_value_names_key_value_and_limit(tmp_path):
    res = fab("up", env={"RECON_STATE_DIR": str(tmp_path / "s"), "RECON_POSTGRES__REPLICAS": "9"})
    assert res.returncode == 2
    assert "postgres.replicas: got '9'; Input should be less than or equal to 5" in res.stderr


def test_unknown_stack_lists_the_known_ones():
    res = fab("status", "--stack", "nosuch")
    assert res.returncode == 2
    assert "--stack: got 'nosuch'; one of ['local', 'production', 'staging']" in res.stderr


def test_remote_stack_is_refused_by_the_local_target():
    res = fab("up", "--stack", "staging")
    assert res.returncode == 2
    assert "pulumi up -s staging" in res.stderr


@pytest.mark.stack
def test_second_up_is_a_no_op(running_stack, secrets):
    from infra.local.bootstrap import superuser_conn

    def verifiers():
        with superuser_conn(running_stack.spec, running_stack.layout, secrets) as conn:
            return conn.execute("SELECT rolname, rolpassword FROM pg_authid ORDER BY 1").fetchall()

    before = verifiers()
    res = fab("up")
    assert res.returncode == 0, res.stderr
    assert "no change, every service already running and healthy" in res.stderr
    assert "starting " not in res.stderr and "restarting " not in res.stderr
    assert verifiers() == before, "an unchanged password must not be re-set (new SCRAM salt)"


@pytest.mark.stack
def test_status_json_is_machine_readable_and_true(running_stack):
    res = fab("status", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["service"]: r for r in json.loads(res.stdout)}
    primary = rows["postgres-primary"]
    assert primary["state"] == "RUNNING" and primary["healthy"] is True
    assert primary["port"] == running_stack.spec.postgres.port
    assert Path(f"/proc/{primary['pid']}").exists()
    assert rows["grafana"]["state"] == "NOT_AVAILABLE" and rows["grafana"]["healthy"] is None


@pytest.mark.stack
def test_status_tells_the_truth_when_a_service_is_stopped(running_stack):
    sup = running_stack.supervisor
    sup.stop("node-exporter")
    try:
        res = fab("status", "--json")
        assert res.returncode == 1
        row = next(r for r in json.loads(res.stdout) if r["service"] == "node-exporter")
        assert row["state"] == "STOPPED" and row["healthy"] is False
    finally:
        up = fab("up")
        assert up.returncode == 0, up.stderr
    assert "starting node-exporter" in up.stderr


@pytest.mark.stack
def test_purge_needs_yes_and_touches_nothing_without_it(running_stack):
    res = fab("down", "--purge")
    assert res.returncode == 2
    assert "add --yes" in res.stderr
    assert running_stack.supervisor.running()
    assert (running_stack.root / "data" / "postgres-primary" / "PG_VERSION").exists()


@pytest.mark.stack
def test_dry_runs_change_nothing(running_stack):
    before = running_stack.supervisor.info()
    res = fab("down", "--dry-run")
    assert res.returncode == 0 and "would stop:" in res.stdout
    res = fab("up", "--dry-run")
    assert res.returncode == 0 and "would run postgres-primary" in res.stderr
    after = running_stack.supervisor.info()
    assert {k: v["pid"] for k, v in before.items()} == {k: v["pid"] for k, v in after.items()}
