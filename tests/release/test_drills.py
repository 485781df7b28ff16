"""The issue's "Must show", asserted on a real throwaway stack under load through Nginx.

The drills run in file order on one stack; each leaves it in the state the next expects
(blue active, green running as the rollback target or idle). About 3 minutes in all.
"""

from __future__ import annotations

import json

import pytest

from tests.release import scenarios

pytestmark = pytest.mark.slow


def test_deploy_starts_the_idle_slot_without_moving_traffic(drill_stack):
    res = drill_stack.fab("deploy", "--version", "0.2.0")
    assert res.returncode == 0, res.stderr
    st = drill_stack.release_state()
    assert st["active_slot"] == "blue" and st["slots"]["green"] == {"version": "0.2.0", "running": True, "env": {}}
    status = drill_stack.fab("status", "--json")
    rows = {r["service"]: r for r in json.loads(status.stdout)}
    assert rows["backend-green-1"]["healthy"] is True
    assert rows["release"]["release"]["slots"]["green"]["version"] == "0.2.0"
    assert "green 0.2.0 running" in rows["release"]["detail"]
    from testing.loadgen import run_load
    r = run_load(drill_stack.base_url, requests=100, duration_s=20, cafile=drill_stack.cafile, keepalive=True)
    assert r.failed == 0 and r.by_slot() == {"blue": 100}, r.summary()
    record = drill_stack.runs("deploy")[-1]
    assert record["outcome"] == "ok" and record["notes"]["gates"][0]["verdict"] == "pass"
    assert any("app migrate" in s["command"] for s in record["steps"])


def test_switch_and_rollback_under_load_drop_no_request(drill_stack):
    m = scenarios.switch_and_rollback_under_load(drill_stack)
    assert m["switch_rc"] == 0, m["switch_err"]
    assert m["rollback_rc"] == 0, m["rollback_err"]
    assert m["failed"] == 0, m
    assert m["served_by_new_after_switch"] > 0, m  # the switch really moved traffic
    assert m["after_rollback_slots"] == ["blue"], m
    # <= 5 s from the task's start to Nginx serving only the previous slot (run record); the
    # clients saw it too: no answer from the rolled-back slot after the command returned
    assert m["rollback_task_traffic_back_s"] <= 5.0, m
    assert m["rollback_traffic_back_s"] <= m["rollback_command_s"], m
    assert drill_stack.release_state()["active_slot"] == "blue"
    rb = drill_stack.runs("rollback")[-1]
    assert rb["outcome"] == "ok" and rb["notes"]["decision"].startswith("rolled back: green -> blue")


@pytest.mark.parametrize("weight", [20])
def test_canary_share_is_within_5_points_over_2000_requests(drill_stack, weight):
    m = scenarios.canary_share(drill_stack, weight)
    try:
        assert m["canary_rc"] == 0, m["canary_err"]
        assert m["requests"] == 2000 and m["failed"] == 0, m
        assert abs(m["share"] - weight) <= 5, m
    finally:
        assert drill_stack.fab("rollback").returncode == 0  # abort the canary: weight 0
    assert drill_stack.release_state()["canary_weight"] == 0


def test_failing_canary_is_reverted_by_the_gate(drill_stack):
    m = scenarios.failing_canary(drill_stack)
    assert m["canary_rc"] != 0
    assert "reverted automatically" in m["canary_err"]
    assert m["faulty_answers_during"] > 0, m  # the canary really got traffic and failed it
    assert m["state"]["canary_weight"] == 0
    assert m["slots_after_revert"] == ["blue"] and m["failed_after_revert"] == 0, m
    rec = m["record"]
    assert rec["outcome"].startswith("failed:") and rec["notes"]["decision"].startswith("reverted:")
    failed = [g for g in rec["notes"]["gates"] if g["verdict"] == "fail"]
    assert failed and failed[0]["gate"] == "error-rate" and failed[0]["slot"] == m["slot"]
    assert failed[0]["value"] > failed[0]["threshold"] == drill_stack.spec.release.max_error_rate
    assert any(s["title"].startswith("revert") and s["exit_code"] == 0 for s in rec["steps"])


def test_redis_master_killed_service_answers_again_and_no_job_lost(drill_stack):
    m = scenarios.redis_master_killed(drill_stack)
    assert m["new_master"] != f"127.0.0.1:{m['killed_port']}", m
    assert m["ready_failed"] > 0, m  # the kill was felt: /ready needs Redis
    assert m["answers_again_s"] <= m["down_after_s"] + 5, m
    assert m["jobs_acknowledged"] > 0 and m["jobs_found"] == m["jobs_acknowledged"], m
    assert m["jobs_succeeded"] == m["jobs_acknowledged"], m


def test_postgres_failover_writes_resume_within_10s_and_keep_every_row(drill_stack):
    m = scenarios.postgres_failover(drill_stack)
    assert m["failover_rc"] == 0, m["failover_err"]
    assert m["new_primary"] == "postgres-replica-1" and m["fenced"] == ["postgres-primary"]
    assert m["new_primary_in_recovery"] is False
    assert m["acknowledged_before_failover"] > 0
    assert m["acknowledged_rows_on_new_primary"] == m["writes_acknowledged"], m
    assert m["write_gap_s"] <= 10, m
    assert m["record"]["outcome"] == "ok" and "replica_replayed_lsn" in m["record"]["notes"]
    status = {r["service"]: r for r in json.loads(drill_stack.fab("status", "--json").stdout)}
    assert "postgres-primary" not in status  # fenced: not even in supervisord
    assert (drill_stack.state_dir / "data" / "postgres-primary" / "standby.signal").exists()


def test_rebuild_replica_brings_the_old_primary_back_streaming(drill_stack):
    res = drill_stack.fab("db.rebuild-replica", "--yes", timeout=300)
    assert res.returncode == 0, res.stderr
    st = drill_stack.release_state()
    assert st["postgres"] == {"primary": "postgres-replica-1", "fenced": []}
    status = drill_stack.fab("status", "--json")
    rows = {r["service"]: r for r in json.loads(status.stdout)}
    assert rows["postgres-primary"]["healthy"] is True and "streaming" in rows["postgres-primary"]["detail"]
    assert rows["postgres-replica-1"]["detail"].startswith("primary, 1 replica(s) streaming")
