"""``fab logs``, ``fab logs.export``, ``fab restart``, ``fab doctor``: troubleshooting (local target).

    fab logs SERVICE [--since 10m] [--grep RE] [--lines N] [--follow [--seconds S]]
    fab logs.export [--to FILE]                 every log in one tar.gz
    fab restart SERVICE [--yes] [--dry-run]     one process, or a service's replicas one at a time
    fab doctor [--json]                         status, connectivity, resources, database, Redis,
                                                recent errors: a verdict and the next step each
"""

from __future__ import annotations

import json as jsonlib
import time
from pathlib import Path

from invoke import Collection, task

from ops.console import progress, table
from ops.tasks.shared import STACK_HELP, local_target, reported, spec_of


@task(name="show", default=True,
      help={"service": "a process (fab status lists them) or supervisord", "stack": STACK_HELP,
            "since": "only lines newer than this: 30s, 10m, 2h, 1d", "grep": "only lines matching this regular expression",
            "lines": "at most this many (the newest; 0: all)", "follow": "then print new lines as they come",
            "seconds": "with --follow: stop after this long"})
def logs_show(c, service, stack=None, since=None, grep=None, lines=200, follow=False, seconds=None):
    """A service's log: the newest lines, filtered by time and pattern; --follow keeps printing."""
    from ops import troubleshoot
    target = local_target(spec_of(stack), "logs")
    with reported():
        for line in troubleshoot.logs(target, service, since=since, grep=grep, lines=int(lines)):
            print(line)
        if follow:
            for line in troubleshoot.follow(target, service, grep=grep, seconds=float(seconds) if seconds else None):
                print(line, flush=True)


@task(name="export", help={"stack": STACK_HELP, "to": "the tar.gz to write (default <state>/logs-<time>.tar.gz)"})
def logs_export(c, stack=None, to=None):
    """Every log of the stack in one tar.gz, for a ticket or a colleague (no secrets are logged)."""
    from ops import troubleshoot
    target = local_target(spec_of(stack), "logs.export")
    dest = Path(to) if to else target.root / f"logs-{time.strftime('%Y%m%dT%H%M%S')}.tar.gz"
    with reported():
        troubleshoot.export_logs(target, dest)
    progress(f"logs written to {dest} ({dest.stat().st_size // 1024} KiB)")


@task(help={"service": "a process, or a service whose replicas restart one at a time (backend, worker, sentinel, ...)",
            "stack": STACK_HELP, "yes": "confirm", "dry-run": "print the order, restart nothing"})
def restart(c, service, stack=None, yes=False, dry_run=False):
    """Restart a process, or each replica of a service in turn, waiting until healthy before the next.

    A replicated service keeps serving (Nginx retries on the replicas still up); a primary is
    refused (that is a failover). Ends with the stack's invariants.
    """
    from ops import invariants, troubleshoot
    from ops.runlog import Run
    spec = spec_of(stack)
    target = local_target(spec, "restart")
    with reported():
        order = troubleshoot.restart_plan(target, service)
        with Run(spec.ops.run_log or target.root / "runlog.jsonl", "restart", {"service": service},
                 dry_run=dry_run, yes=yes) as run:
            for name in order:
                seconds = run.step(f"restart {name} and wait until healthy", f"supervisorctl restart {name}",
                                   lambda n=name: troubleshoot.restart_one(target, n), destructive=True)
                if seconds is not None:
                    progress(f"  {name} healthy again after {seconds:.1f}s")
            if not dry_run:
                invariants.step(run, target, "restart")


@task(help={"stack": STACK_HELP, "json": "machine-readable output"})
def doctor(c, stack=None, json=False):
    """The specification's troubleshooting checks, in order, each with a verdict and the next step.

    Exits 1 when a check fails, 0 otherwise (warnings included).
    """
    from ops import troubleshoot
    target = local_target(spec_of(stack), "doctor")
    with reported():
        verdicts = troubleshoot.doctor(target)
    if json:
        print(jsonlib.dumps(troubleshoot.as_json(verdicts), indent=1))
    else:
        print(table([{"check": v.check, "verdict": v.verdict.upper(), "detail": v.detail, "next": v.next_step}
                     for v in verdicts], ["check", "verdict", "detail", "next"]))
    if any(v.verdict == "fail" for v in verdicts):
        raise SystemExit(1)


logs_ns = Collection("logs", logs_show, logs_export)
