"""``fab demo``: show the running stack working end to end, through Nginx over TLS."""

from __future__ import annotations

import os
import subprocess
import sys

from invoke import task

from ops.console import fail, progress
from ops.tasks.stack import STACK_HELP, _local, _spec


def app_command(target, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m app ARGS`` with the stack's service environment (no secret on argv)."""
    from infra.local.processes import app_env
    env = {**os.environ, **app_env(target.spec, target.layout, target.spec.backend.active_slot)}
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, text=True,
                          capture_output=capture)


def demo_token(target) -> str:
    """An operator token for the demo, created once per stack and kept in the secrets dir."""
    from infra.local.secrets import write_secret_file
    path = target.root / "secrets" / "demo-token"
    if path.exists():
        return path.read_text().strip()
    res = app_command(target, "token", "create", "--role", "operator", "--name", "demo", capture=True)
    if res.returncode != 0:
        raise fail("could not create the demo token: " + res.stderr.strip()[-500:])
    token = res.stdout.strip().splitlines()[-1]
    write_secret_file(path, token)
    return token


@task(help={"stack": STACK_HELP})
def demo(c, stack=None):
    """Upload the sample bank statement and ledger, reconcile them, print the result summary."""
    spec = _spec(stack)
    target = _local(spec)
    if not target.supervisor.running():
        raise fail(f"stack {spec.name!r} is not running; start it with `fab up`")
    token = demo_token(target)
    base = (f"https://{spec.host}:{spec.nginx.https_port}" if spec.nginx.tls
            else f"http://{spec.host}:{spec.nginx.http_port}")
    progress(f"demo through nginx at {base}")
    os.environ["RECON_TOKEN"] = token
    res = app_command(target, "demo", "--base-url", base, "--cacert", target.cafile)
    if res.returncode != 0:
        raise fail(f"demo failed (exit {res.returncode})", code=res.returncode)
