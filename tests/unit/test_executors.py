"""Executors build the right command for each target and report failures for the operator.

Docker and kubectl cannot run here; a recording stand-in for their CLIs checks the argv we
hand them (what an operator's real CLI would receive) and that secrets never ride on argv.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from ops.executors import CommandFailed, ExecutorUnreachable, executor


def test_local_run_returns_output_and_timing():
    res = executor("local").run(["echo", "hello world"])
    assert res.ok and res.stdout == "hello world\n" and res.duration_s >= 0


def test_local_failure_names_command_exit_code_and_output_tail():
    with pytest.raises(CommandFailed) as err:
        executor("local").run("echo something broke >&2; exit 3")
    msg = str(err.value)
    assert "exited 3" in msg and "something broke" in msg and "on localhost" in msg


def test_local_env_reaches_the_command_without_being_on_argv():
    import hashlib
    res = executor("local").run('printf %s "$RECON_X" | sha256sum', env={"RECON_X": "s3cr3t"})
    assert res.stdout.split()[0] == hashlib.sha256(b"s3cr3t").hexdigest()
    assert "s3cr3t" not in res.command


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
def test_local_runs_as_the_service_user():
    from infra.local.privileges import service_identity
    who = service_identity()
    assert executor("local", user=who.user).run("id -un").stdout.strip() == who.user


def test_unknown_executor_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown executor 'winrm'; one of \['docker', 'docker-volumes', 'kubectl', 'local', 'ssh'\]"):
        executor("winrm")


@pytest.fixture
def recording_cli(tmp_path):
    """A stand-in CLI that records argv and stdin, prints a pod list for `get pods`."""
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "cli"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
data = sys.stdin.read() if not sys.stdin.isatty() else ""
with open({str(log)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": data}}) + "\\n")
if "get" in sys.argv and "pods" in sys.argv:
    print("backend-blue-7d9-b backend-blue-7d9-a", end="")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, lambda: [json.loads(line) for line in log.read_text().splitlines()]


def test_kubectl_resolves_a_deployment_pod_by_selector(recording_cli):
    cli, calls = recording_cli
    ex = executor("kubectl", options={"kubectl": str(cli), "namespace": "recon",
                                      "selector": "app=backend,slot=blue", "container": "backend"})
    ex.run("python -m app migrate")
    get, exe = calls()
    assert get["argv"][:6] == ["get", "pods", "-n", "recon", "-l", "app=backend,slot=blue"]
    assert exe["argv"] == ["exec", "-n", "recon", "backend-blue-7d9-a", "-c", "backend", "--",
                           "sh", "-c", "python -m app migrate"]


def test_kubectl_passes_env_on_stdin_never_on_argv(recording_cli):
    cli, calls = recording_cli
    ex = executor("kubectl", options={"kubectl": str(cli), "namespace": "recon", "pod": "postgres-primary-0"})
    ex.run("pgbackrest backup", env={"PGBACKREST_REPO1_CIPHER_PASS": "t0ps3cret"})
    (call,) = calls()
    assert "t0ps3cret" not in " ".join(call["argv"])
    assert "t0ps3cret" in call["stdin"]


def test_docker_passes_env_by_name_only(recording_cli):
    cli, calls = recording_cli
    ex = executor("docker", options={"docker": str(cli), "container": "recon-staging-postgres-primary"})
    ex.run("pg_dump -Fc recon", env={"PGPASSWORD": "t0ps3cret"}, user="postgres")
    (call,) = calls()
    assert call["argv"] == ["exec", "-e", "PGPASSWORD", "-u", "postgres", "recon-staging-postgres-primary",
                            "sh", "-c", "pg_dump -Fc recon"]


def test_missing_cli_is_reported_as_unreachable(tmp_path):
    ex = executor("docker", options={"docker": str(tmp_path / "no-docker"), "container": "x"})
    with pytest.raises(ExecutorUnreachable, match="is not installed"):
        ex.run("true")


def test_ssh_to_a_closed_port_is_unreachable_not_a_command_failure():
    ex = executor("ssh", options={"host": "127.0.0.1", "port": 1, "login": "root", "connect_timeout": 2})
    with pytest.raises(ExecutorUnreachable, match="cannot reach root@127.0.0.1:1 over SSH"):
        ex.run("true")
