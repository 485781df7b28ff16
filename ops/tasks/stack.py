"""``fab up``, ``fab down``, ``fab status``: bring the stack up, take it down, tell the truth.

Only the local target runs from here; the docker and kubernetes targets are deployed with
``pulumi up -s staging|production`` (docs/pulumi.md).
"""

from __future__ import annotations

import sys

from invoke import task

from ops.console import fail, progress, table
from ops.tasks.shared import STACK_HELP, local_target, reported, spec_of


@task(help={"stack": STACK_HELP, "dry-run": "print what would start, change nothing"})
def up(c, stack=None, dry_run=False):
    """Start the whole stack on this machine and wait until every service is healthy."""
    spec = spec_of(stack)
    target = local_target(spec, "up")
    with reported():
        result = target.up(dry_run=dry_run)
        if not dry_run:
            from ops import invariants
            found = invariants.require(target, "up")
            progress("invariants hold: " + "; ".join(f.evidence for f in found))
    if dry_run:
        return
    if result.changed:
        parts = [f"{k}: {', '.join(v)}" for k, v in (
            ("bootstrapped", result.bootstrapped), ("started", result.started),
            ("restarted", result.restarted), ("reloaded", result.reloaded),
            ("configs changed", result.configs_changed)) if v]
        progress(f"stack {spec.name!r} is up and healthy after {result.seconds:.1f}s")
        for p in parts:
            print(f"  {p}")
    else:
        progress(f"stack {spec.name!r}: no change, every service already running and healthy "
                 f"({result.seconds:.1f}s)")
    print("\nEndpoints:")
    for name, url in target.endpoints().items():
        print(f"  {name:24} {url}")


@task(help={"stack": STACK_HELP, "json": "machine-readable output"})
def status(c, stack=None, json=False):
    """Every service of the stack: supervisor state, pid, port and a real health check.

    Exits 0 when every available service is running and healthy, 1 otherwise.
    """
    from infra.local.target import status_json
    spec = spec_of(stack)
    if spec.target == "local":
        rows = local_target(spec, "status").status()
    else:
        from ops import containers
        with reported():
            rows = containers.status(spec)
    if json:
        print(status_json(rows))
    else:
        print(table([{"service": r.service, "state": r.state, "pid": r.pid, "port": r.port,
                      "health": {True: "healthy", False: "UNHEALTHY", None: "n/a"}[r.healthy],
                      "detail": r.detail} for r in rows],
                    ["service", "state", "pid", "port", "health", "detail"]))
    bad = [r.service for r in rows if r.healthy is False]
    if bad:
        if not json:
            print(f"\n{len(bad)} service(s) not healthy: {', '.join(bad)}", file=sys.stderr)
        raise SystemExit(1)


@task(help={"stack": STACK_HELP, "purge": "also delete all data (needs --yes)",
            "yes": "confirm --purge", "dry-run": "print what would stop or be deleted"})
def down(c, stack=None, purge=False, yes=False, dry_run=False):
    """Stop every service; data stays in place unless --purge --yes."""
    spec = spec_of(stack)
    target = local_target(spec, "down")
    if dry_run:
        running = [n for n, i in target.supervisor.info().items() if i["statename"] == "RUNNING"]
        print(f"would stop: {', '.join(running) or 'nothing (not running)'}")
        if purge:
            print(f"would delete: {target.root}")
        return
    if purge and not yes:
        raise fail(f"--purge deletes every database, cache and log under {target.root}; "
                   "add --yes to confirm", code=2)
    stopped = target.down(purge=purge)
    progress(f"stopped {len(stopped)} service(s)" + ("; data removed" if purge else "; data kept"))
