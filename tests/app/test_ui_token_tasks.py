"""``fab token.create|list|revoke`` (ops/tasks/token.py): how people get the token they sign in with.

The docker target's path is exercised for real: its inventory's backend executor runs
``python -m app token ...`` here, against the throwaway PostgreSQL, as ``docker exec`` would run
it in the backend container. The local target's "not running" refusal is checked as is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from invoke import Context
from invoke.exceptions import Exit

from ops.executors import Executor, Result
from ops.tasks import token as token_tasks
from tests.app.fix_ui import UI

pytest_plugins = ["tests.app.fix_ui"]
ROOT = Path(__file__).resolve().parents[2]


class HereExecutor(Executor):
    """Runs the command on this machine with the service's environment (a container's stand-in)."""

    def run(self, cmd, *, env=None, timeout=600, check=True, user=None):  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        p = subprocess.run(["sh", "-c", cmd.replace("python ", f"{sys.executable} ", 1)], capture_output=True,
                           text=True, timeout=timeout, cwd=ROOT, env=self.options["env"])
        return Result(cmd, p.returncode, p.stdout, p.stderr, time.monotonic() - t0, "here")


class FakeInventory:
    def __init__(self, env: dict[str, str], run_log: Path) -> None:
        self.env, self.run_log = env, run_log

    def of_kind(self, kind: str) -> list:  # type: ignore[type-arg]
        from ops.inventory import Service

        return [Service("backend-blue-1", "backend", "backend", 8000, HereExecutor(options={"env": self.env}))] \
            if kind == "backend" else []


@pytest.fixture()
def staging(monkeypatch: pytest.MonkeyPatch, service_env: dict[str, str], tmp_path: Path) -> Path:
    """The staging stack (docker target) with an inventory whose backend runs commands here."""
    run_log = tmp_path / "runlog.jsonl"
    monkeypatch.setattr("ops.inventory.load_inventory", lambda spec: FakeInventory(service_env, run_log))
    return run_log


def _records(run_log: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in run_log.read_text().splitlines()]


def test_create_prints_the_token_once_and_logs_without_it(staging: Path, capsys: pytest.CaptureFixture[str],
                                                           db: psycopg.Connection) -> None:
    token_tasks.create(Context(), role="operator", name="alice (ui)", stack="staging")
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("rk_") and out.count("\n") == 1, "stdout holds the token and nothing else"
    assert token not in err and "shown only this once" in err
    assert db.execute("SELECT role FROM api_tokens WHERE name = 'alice (ui)' AND revoked_at IS NULL").fetchone() \
        == ("operator",)
    record = _records(staging)[-1]
    assert record["task"] == "token.create" and record["outcome"] == "ok"
    assert record["args"] == {"stack": "staging", "role": "operator", "name": "alice (ui)"}
    assert record["steps"][0]["command"] == "python -m app token create --role operator --name 'alice (ui)'"
    assert token not in staging.read_text()


def test_list_shows_tokens_never_values(staging: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_tasks.create(Context(), role="viewer", name="listed", stack="staging")
    value = capsys.readouterr().out.strip()
    token_tasks.list_(Context(), stack="staging")
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["ID", "ROLE", "STATE", "PREFIX", "NAME", "CREATED"]
    assert "listed" in out and value not in out and value[:8] in out


def test_revoke_needs_yes_and_ends_the_ui_sessions(staging: Path, capsys: pytest.CaptureFixture[str],
                                                   ui_app: FastAPI, db: psycopg.Connection) -> None:
    token_tasks.create(Context(), role="operator", name="to revoke", stack="staging")
    value = capsys.readouterr().out.strip()
    token_id = db.execute("SELECT id FROM api_tokens WHERE name = 'to revoke'").fetchone()[0]
    ui = UI(ui_app, value)
    assert ui.get("/ui/reconciliations").status_code == 200
    with pytest.raises(Exit) as refused:
        token_tasks.revoke(Context(), id=str(token_id), stack="staging")
    assert refused.value.code == 2 and "--yes" in str(refused.value.message)
    assert db.execute("SELECT revoked_at FROM api_tokens WHERE id = %s", (token_id,)).fetchone() == (None,)
    token_tasks.revoke(Context(), id=str(token_id), stack="staging", yes=True)
    assert db.execute("SELECT revoked_at IS NOT NULL FROM api_tokens WHERE id = %s", (token_id,)).fetchone() == (True,)
    r = ui.get("/ui/reconciliations")
    assert r.status_code == 303 and "reason=revoked" in r.headers["location"]
    assert [r["outcome"] for r in _records(staging) if r["task"] == "token.revoke"] == \
        ["refused", "ok"]


def test_dry_run_prints_the_plan_and_creates_nothing(staging: Path, capsys: pytest.CaptureFixture[str],
                                                    db: psycopg.Connection) -> None:
    token_tasks.create(Context(), role="admin", name="dry", stack="staging", dry_run=True)
    out, err = capsys.readouterr()
    assert out == "" and "python -m app token create --role admin --name dry" in err
    assert db.execute("SELECT count(*) FROM api_tokens WHERE name = 'dry'").fetchone() == (0,)
    assert _records(staging)[-1]["outcome"] == "planned"


@pytest.mark.parametrize(("call", "code", "message"), [
    (lambda: token_tasks.create(Context(), role="root", name="x", stack="staging"), 2,
     "--role: got 'root'; one of viewer, operator, admin"),
    (lambda: token_tasks.create(Context(), role="viewer", name=" ", stack="staging"), 2, "--name: got ' '"),
    (lambda: token_tasks.revoke(Context(), id="seven", stack="staging", yes=True), 2, "token id: got 'seven'"),
    (lambda: token_tasks.revoke(Context(), id="999999", stack="staging", yes=True), 1,
     "`python -m app token` exited 1: no active token with id 999999"),
], ids=["role", "name", "id", "no-such-token"])
def test_errors_name_the_value(staging: Path, call, code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Exit) as failed:
        call()
    assert failed.value.code == code and message in str(failed.value.message)


def test_the_local_target_must_be_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(Exit) as failed:
        token_tasks.list_(Context())
    assert "is not running; start it with `fab up`" in str(failed.value.message)


def test_the_tasks_are_in_the_fab_collection_once_registered() -> None:
    assert sorted(token_tasks.token_ns.task_names) == ["create", "first-admin", "list", "revoke"]


def test_the_first_admin_token_is_kept_once_in_a_0600_file(staging: Path, tmp_path: Path,
                                                            db: psycopg.Connection) -> None:
    from infra.spec import load_spec

    class Target:
        root = tmp_path / "state"
        spec = load_spec("staging")

    path = token_tasks.first_admin_token(Target())
    value = path.read_text().strip()
    assert path == tmp_path / "state" / "secrets" / "admin-token" and value.startswith("rk_")
    assert path.stat().st_mode & 0o777 == 0o600
    assert token_tasks.first_admin_token(Target()) == path and path.read_text().strip() == value, "created once"
    assert db.execute("SELECT role FROM api_tokens WHERE name = 'first admin (make up)'").fetchall() == [("admin",)]
    assert token_tasks.ui_address(Target.spec).endswith("/ui/")
