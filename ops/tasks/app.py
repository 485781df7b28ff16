"""``fab demo``: show the running stack working end to end, through Nginx over TLS."""

from __future__ import annotations

import subprocess

from invoke import task

from ops.console import fail, progress
from ops.tasks.shared import STACK_HELP, local_target, spec_of


def app_command(target, *args: str, capture: bool = False,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m app ARGS`` with the stack's service environment (secrets in ``extra_env``)."""
    from infra.local.processes import run_app
    return run_app(target.spec, target.layout, *args, extra_env=extra_env, capture=capture, timeout=600)


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
    spec = spec_of(stack)
    target = local_target(spec, "demo")
    if not target.supervisor.running():
        raise fail(f"stack {spec.name!r} is not running; start it with `fab up`")
    token = demo_token(target)
    base = (f"https://{spec.host}:{spec.nginx.https_port}" if spec.nginx.tls
            else f"http://{spec.host}:{spec.nginx.http_port}")
    progress(f"demo through nginx at {base}")
    res = app_command(target, "demo", "--base-url", base, "--cacert", target.cafile,
                      extra_env={"RECON_TOKEN": token})
    if res.returncode != 0:
        raise fail(f"demo failed (exit {res.returncode})", code=res.returncode)
