"""Over a real sshd on loopback: commands run through the SSH executor, and a detached host job
survives the SSH connection being dropped mid-run (the poller reconnects and finds it done)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from ops.backup.hostjob import HostJob
from ops.executors import ExecutorUnreachable, executor
from tests.fix_sshd import session_pids


@pytest.fixture
def ssh(sshd):
    ex = executor("ssh", options={"host": "127.0.0.1", "port": sshd["port"], "login": sshd["login"],
                                  "key_filename": sshd["key_filename"], "connect_timeout": 5})
    yield ex
    ex.close()


def test_command_runs_over_ssh(ssh, sshd):
    res = ssh.run("echo $((6 * 7)); whoami")
    assert res.stdout.split() == ["42", sshd["login"]]
    assert res.where == f"{sshd['login']}@127.0.0.1:{sshd['port']}"


def test_job_survives_a_dropped_connection(ssh, sshd, tmp_path):
    jobs = str(tmp_path / "jobs")
    job = HostJob.start(ssh, jobs, "sleepy", "sleep 2; echo finished")
    assert job.poll() is None
    for pid in session_pids(sshd["pid"]):  # drop every SSH connection: the job is not a child of it
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    res = job.wait(timeout=30, interval=0.2)
    assert res.exit_code == 0
    assert "finished" in res.stdout


def test_failed_job_reports_its_exit_code_and_output(ssh, tmp_path):
    job = HostJob.start(ssh, str(tmp_path / "jobs"), "bad", "echo boom >&2; exit 3")
    res = job.wait(timeout=30, interval=0.1)
    assert (res.exit_code, res.stdout.strip()) == (3, "boom")


def test_unreachable_host_is_a_clear_error(sshd):
    ex = executor("ssh", options={"host": "127.0.0.1", "port": 1, "login": sshd["login"],
                                  "key_filename": sshd["key_filename"], "connect_timeout": 2})
    with pytest.raises(ExecutorUnreachable, match="cannot reach .*127.0.0.1:1"):
        ex.run("true")
