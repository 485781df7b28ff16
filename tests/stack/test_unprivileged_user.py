"""The stack on a laptop: `fab up` by an ordinary user runs every service as that user.

Needs root only to create the ordinary user; the stack itself then runs without privileges,
on its own ports (offset 5000) and state dir, so the main stack is untouched.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fix_stack import isolated_stack_env

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")
USER = "recon-laptop"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="creating the ordinary user needs root")]


def as_user(env: dict, *args: str) -> subprocess.CompletedProcess:
    home = pwd.getpwnam(USER).pw_dir
    argv = ["runuser", "-u", USER, "--", "env", f"HOME={home}", *(f"{k}={v}" for k, v in env.items()),
            FAB, *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture
def laptop_user(tmp_path_factory):
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", USER], check=True)
    base = Path("/tmp") / f"{USER}-{os.getpid()}"
    base.mkdir(exist_ok=True)
    os.chown(base, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    env = isolated_stack_env(base / "state", 5000)
    yield env
    as_user(env, "down", "--purge", "--yes")
    subprocess.run(["rm", "-rf", str(base)])


def test_ordinary_user_runs_the_whole_stack_without_privileges(laptop_user):
    env = laptop_user
    up = as_user(env, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    assert "services run as" not in up.stderr, "no privilege drop is needed for an ordinary user"
    status = as_user(env, "status", "--json")
    assert status.returncode == 0, status.stdout[-3000:] + status.stderr[-2000:]
    rows = json.loads(status.stdout)
    uid = pwd.getpwnam(USER).pw_uid
    running = [r for r in rows if r["state"] == "RUNNING"]
    assert len(running) >= 16
    for r in running:
        assert os.stat(f"/proc/{r['pid']}").st_uid == uid, f"{r['service']} does not run as {USER}"
    down = as_user(env, "down")
    assert down.returncode == 0
    assert Path(env["RECON_STATE_DIR"], "data", "postgres-primary", "PG_VERSION").exists(), \
        "fab down keeps the data"
