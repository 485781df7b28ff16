"""``fab secrets.rotate NAME``: a new password for one consumer while the stack serves (local target).

    fab secrets.rotate postgres_app --yes        the service's PostgreSQL role
    fab secrets.rotate redis_app --yes           the service's Redis user (rolling restart)
    fab secrets.rotate NAME --dry-run            the steps, nothing changed

How each rotation keeps every request answered: ops/secrets.py. Each step is recorded in the
stack's run log (never a password); the stack's invariants are checked at the end.
"""

from __future__ import annotations

import functools

from invoke import Collection, task

from ops.console import progress
from ops.tasks.shared import STACK_HELP, local_target, reported, spec_of


@task(help={"name": "the secret: postgres_app, postgres_reader, postgres_owner or redis_app",
            "stack": STACK_HELP, "yes": "confirm (the old password stops working)",
            "dry-run": "print the steps, change nothing"})
def rotate(c, name, stack=None, yes=False, dry_run=False):
    """Rotate one password with no failed request: the new one in place, the old one refused."""
    from ops import invariants, troubleshoot
    from ops import secrets as rot
    from ops.runlog import Run
    spec = spec_of(stack)
    target = local_target(spec, "secrets.rotate")
    with reported():
        r = rot.plan(target, name)
        with Run(spec.ops.run_log or target.root / "runlog.jsonl", "secrets.rotate", {"name": name},
                 dry_run=dry_run, yes=yes) as run:
            if name in rot.PG_ROLES:
                run.step(f"change {rot.ROTATABLE[name]}'s password and its pgpass files in one commit",
                         "ALTER ROLE ... PASSWORD ...; write secrets/pgpass*", lambda: rot.rotate_postgres(r),
                         destructive=True)
                done = run.step("check: a new connection works, the old password is refused",
                                "psql through the pgpass file; psql with the old password",
                                lambda: rot.verify_postgres(r))
            else:
                run.step("accept both passwords on every Redis node", "ACL file with both hashes; ACL LOAD",
                         lambda: rot.load_acl(r, [r.old, r.new]), destructive=True)
                run.step("store the new password for the service", "secrets.json; secrets/redis-app-password",
                         lambda: rot.switch_redis_app(r), destructive=True)
                for proc in (rot.service_processes(target) if not dry_run else ["backend-*", "worker-*"]):
                    seconds = run.step(f"restart {proc} with the new password, wait until healthy",
                                       f"supervisorctl restart {proc}",
                                       functools.partial(troubleshoot.restart_one, target, proc), destructive=True)
                    if seconds is not None:
                        progress(f"  {proc} healthy again after {seconds:.1f}s")
                run.step("refuse the old password on every Redis node", "ACL file with the new hash; ACL LOAD",
                         lambda: rot.load_acl(r, [r.new]), destructive=True)
                done = run.step("check: the new password works, the old one is refused",
                                "AUTH app <new>; AUTH app <old>", lambda: rot.verify_redis_app(r))
            if not dry_run:
                progress(done)
                invariants.step(run, target, "secrets.rotate")


secrets_ns = Collection("secrets", rotate)
