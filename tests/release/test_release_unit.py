"""Release logic without a running stack: state, gates' verdicts, load generator bounds, and the
operator errors of the tasks (each names the bad value and what is allowed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from infra.local import release
from infra.spec import StackSpec
from ops.release import gates
from testing.loadgen import LoadError, run_load

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def fab(*args, state_dir, **env):
    return subprocess.run([FAB, *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "RECON_STATE_DIR": str(state_dir), **env})


def test_without_a_recorded_state_the_spec_is_the_truth(tmp_path):
    spec = StackSpec(state_dir=tmp_path)
    st = release.load(spec)
    assert (st.active_slot, st.canary_weight, st.running_slots()) == ("blue", 0, ["blue"])


def test_recorded_state_overrides_slot_weight_and_versions(tmp_path):
    spec = StackSpec(state_dir=tmp_path)
    st = release.load(spec)
    st.slots["green"].version, st.slots["green"].running = "0.2.0", True
    st.active_slot, st.previous_slot = "green", "blue"
    release.save(spec, st, "switch")
    eff = release.effective_spec(spec)
    assert eff.backend.active_slot == "green" and eff.backend.slots["green"].version == "0.2.0"
    assert spec.backend.active_slot == "blue"  # the declared spec is not modified
    assert json.loads((tmp_path / "release.json").read_text())["updated_by_task"] == "switch"


def test_local_target_renders_nginx_from_the_recorded_state(tmp_path):
    from infra.local.target import LocalTarget
    from infra.render import render_all
    spec = StackSpec(state_dir=tmp_path)
    st = release.load(spec)
    st.slots["green"].version, st.slots["green"].running, st.canary_weight = "0.2.0", True, 25
    release.save(spec, st, "canary")
    t = LocalTarget(spec)
    conf = render_all(t.spec, t.layout)["nginx/nginx.conf"].content
    assert "25% backend_green;" in conf and "* backend_blue;" in conf
    names = [p.name for p in t.processes()]
    assert "backend-green-1" in names and "backend-blue-1" in names
    green = next(p for p in t.processes() if p.name == "backend-green-1")
    assert green.env["RECON_VERSION"] == "0.2.0"


def test_fenced_node_is_never_started_and_the_new_primary_starts_first(tmp_path):
    from infra.local.target import LocalTarget
    spec = StackSpec(state_dir=tmp_path)
    st = release.load(spec)
    st.postgres.primary, st.postgres.fenced = "postgres-replica-1", ["postgres-primary"]
    release.save(spec, st, "db.failover")
    procs = LocalTarget(spec).processes()
    assert "postgres-primary" not in [p.name for p in procs]
    assert procs[0].name == "postgres-replica-1" and procs[0].stage == 0


def test_service_database_url_lists_every_node_and_wants_a_writable_one():
    from infra.layout import LocalLayout
    from infra.local.processes import app_env
    spec = StackSpec()
    env = app_env(spec, LocalLayout(spec))
    tls = "&".join(f"{k}={quote(v, safe='')}" for k, v in LocalLayout(spec).pg_tls().items())
    assert tls.startswith("sslmode=verify-full&sslrootcert=" + quote(str(spec.state_path / "tls" / "ca.crt"), safe=""))
    assert env["RECON_DATABASE_URL"] == ("postgresql://recon@127.0.0.1:15432,127.0.0.1:15433/recon"
                                         f"?target_session_attrs=read-write&{tls}")
    assert env["RECON_DATABASE_REPLICA_URL"].endswith(f"?target_session_attrs=prefer-standby&{tls}")
    assert env["RECON_DATABASE_REPLICA_URL"].startswith("postgresql://recon_reader@")  # read-only role
    assert env["PGPASSFILE"].endswith("/secrets/pgpass")


def test_migrations_run_as_the_owner_with_its_own_password_file():
    from infra.layout import LocalLayout
    from infra.local.processes import migrate_env
    spec = StackSpec()
    env = migrate_env(spec, LocalLayout(spec))
    assert env["RECON_DATABASE_URL"].startswith("postgresql://recon_owner@127.0.0.1:15432,127.0.0.1:15433/")
    assert env["PGPASSFILE"].endswith("/secrets/pgpass-migrate")
    assert "RECON_DATABASE_REPLICA_URL" not in env


def test_password_files_hold_only_their_consumers_roles(tmp_path):
    from pydantic import SecretStr

    from infra.layout import LocalLayout
    from infra.local import bootstrap
    spec = StackSpec()
    layout, secrets = LocalLayout(spec), {}
    for files in bootstrap.pgpass_files(spec).values():
        secrets.update({key: SecretStr(f"pw-{key}") for _, key in files})
    out = {name: bootstrap._pgpass(layout, [(role, secrets[key]) for role, key in roles])
           for name, roles in bootstrap.pgpass_files(spec).items()}
    assert out["pgpass-replication"] == ("127.0.0.1:15432:*:replicator:pw-postgres_replication\n"
                                         "127.0.0.1:15433:*:replicator:pw-postgres_replication\n")
    assert {ln.split(":")[3] for ln in out["pgpass"].splitlines()} == {"recon", "recon_reader"}
    assert {ln.split(":")[3] for ln in out["pgpass-migrate"].splitlines()} == {"recon_owner"}


def test_a_replica_cloned_by_an_older_release_gets_its_own_pgpass_and_verified_tls(tmp_path):
    from infra.local.bootstrap import upgrade_primary_conninfo
    auto = tmp_path / "postgresql.auto.conf"
    auto.write_text("primary_conninfo = 'user=replicator passfile=''/s/secrets/pgpass'' host=127.0.0.1 "
                    "sslmode=prefer sslcompression=0'\nprimary_slot_name = 'replica_1'\n")
    tls = {"sslmode": "verify-full", "sslrootcert": "/s/tls/ca.crt"}
    assert upgrade_primary_conninfo(auto, "/s/secrets/pgpass", "/s/secrets/pgpass-replication", tls)
    text = auto.read_text()
    assert "passfile=''/s/secrets/pgpass-replication''" in text
    assert "sslmode=''verify-full'' sslrootcert=''/s/tls/ca.crt'' sslcompression=0" in text
    assert not upgrade_primary_conninfo(auto, "/s/secrets/pgpass", "/s/secrets/pgpass-replication", tls)  # once
    assert not upgrade_primary_conninfo(tmp_path / "missing.conf", "a", "b", tls)


class FakeProm:
    def __init__(self, total, errors, p95):
        self.values = {"total": total, "errors": errors, "p95": p95}

    def scalar(self, expr):
        if expr.startswith("histogram_quantile"):
            return self.values["p95"]
        return self.values["errors"] if 'status=~"5.."' in expr else self.values["total"]


@pytest.mark.parametrize("total,errors,p95,expected", [
    (1000, 0, 0.05, "pass"),
    (1000, 11, 0.05, "fail"),          # 1.1% > 1%
    (1000, 10, 0.05, "pass"),          # exactly the threshold passes
    (1000, 0, 0.6, "fail"),            # p95 600 ms > 500 ms
    (None, None, None, "inconclusive"),  # no traffic: nothing to judge
], ids=["healthy", "errors-over", "errors-at-threshold", "slow", "no-traffic"])
def test_metrics_gate_verdicts(total, errors, p95, expected):
    spec = StackSpec()
    results = gates.metrics(spec, FakeProm(total, errors, p95), "green", "0.2.0")
    assert gates.verdict(results) == expected
    assert all(r.slot == "green" and r.version == "0.2.0" for r in results)


def test_prometheus_down_fails_the_gate_rather_than_passing_it():
    spec = StackSpec()
    results = gates.metrics(spec, gates.Prometheus("http://127.0.0.1:9", timeout=0.5), "green", "0.2.0")
    assert gates.verdict(results) == "fail" and "cannot judge" in results[0].detail


@pytest.mark.parametrize("kwargs,message", [
    ({"requests": 0, "duration_s": 5}, "requests=0; allowed 1..100000"),
    ({"requests": 10, "duration_s": 0}, "duration_s=0; allowed (0, 600]"),
    ({"requests": 10, "duration_s": 5, "concurrency": 65}, "concurrency=65; allowed 1..64"),
], ids=["no-requests", "no-duration", "too-concurrent"])
def test_load_generator_is_bounded(kwargs, message):
    with pytest.raises(LoadError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        run_load("http://127.0.0.1:9", **kwargs)


def test_load_generator_targets_loopback_only():
    with pytest.raises(LoadError, match="only targets loopback"):
        run_load("http://192.0.2.1:80", requests=1, duration_s=1)


def test_load_generator_counts_refused_connections_as_failures():
    r = run_load("http://127.0.0.1:9", requests=5, duration_s=5, concurrency=2)
    assert (r.requests, r.failed, r.stopped_by) == (5, 5, "request count")
    assert list(r.failures()) == ["ConnectError"]


@pytest.mark.parametrize("args,message", [
    (["canary", "--weight", "150"], "--weight 150: allowed 0..100"),
    (["canary", "--weight", "ten"], "--weight 'ten': an integer percent 0..100"),
    (["deploy", "--version", "1.0 beta"], "--version '1.0 beta': allowed 1..64 of A-Z a-z 0-9 _ . + -"),
    (["deploy", "--version", "1", "--env", "RECON_DATABASE_URL=x"], "secrets and connection URLs"),
    (["deploy", "--version", "1", "--env", "FOO=1"], "expected RECON_NAME=value"),
], ids=["weight-over", "weight-not-int", "version-space", "env-secret", "env-not-recon"])
def test_task_arguments_are_checked_before_anything_runs(tmp_path, args, message):
    res = fab(*args, state_dir=tmp_path / "state")
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert not (tmp_path / "state" / "release.json").exists()


def test_release_task_on_a_stopped_stack_says_how_to_start_it(tmp_path):
    res = fab("switch", state_dir=tmp_path / "state")
    assert res.returncode == 1 and "is not running" in res.stderr and "fab up" in res.stderr


def test_dry_run_prints_the_plan_records_it_and_changes_nothing(tmp_path):
    state = tmp_path / "state"
    res = fab("deploy", "--version", "0.2.0", "--dry-run", state_dir=state)
    assert res.returncode == 0, res.stderr
    assert "plan 1: migrate the database for 0.2.0" in res.stderr
    assert "plan 3: gate: health of slot green (0.2.0)" in res.stderr
    assert not (state / "release.json").exists()
    rec = json.loads((state / "runlog.jsonl").read_text().splitlines()[-1])
    assert rec["task"] == "deploy" and rec["outcome"] == "planned" and rec["dry_run"] is True
    assert all(s["exit_code"] is None for s in rec["steps"])


def test_failover_and_rebuild_need_yes(tmp_path):
    res = fab("db.failover", "--dry-run", state_dir=tmp_path / "state")
    assert res.returncode == 0, res.stderr
    assert "[destructive]" in res.stderr and "pg_ctl promote" in res.stderr
    res = fab("db.rebuild-replica", "--dry-run", state_dir=tmp_path / "state")
    assert res.returncode == 2 and "no fenced node to rebuild" in res.stderr


def test_release_renders_the_same_nginx_and_prometheus_configs_as_fab_up(tmp_path):
    """The release path renders two templates only (speed); they must match render_all's."""
    from infra.local.target import LocalTarget
    from ops.release.local import RELOADED
    spec = StackSpec(state_dir=tmp_path)
    st = release.load(spec)
    st.slots["green"].version, st.slots["green"].running, st.canary_weight = "0.2.0", True, 10
    release.save(spec, st, "canary")
    t = LocalTarget(spec)
    full = t.render()
    some = t.render(only=RELOADED)
    assert set(some) == set(RELOADED) and all(some[k].content == full[k].content for k in some)


def test_non_local_stacks_are_told_where_the_switch_lives():
    res = subprocess.run([FAB, "switch", "--stack", "production"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "pulumi up -s production" in res.stderr and "active_slot" in res.stderr
    res = subprocess.run([FAB, "db.failover", "--stack", "staging"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2 and "local target's PostgreSQL" in res.stderr
