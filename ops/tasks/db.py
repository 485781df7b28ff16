"""``fab db.failover`` and ``fab db.rebuild-replica``: PostgreSQL primary failover on the local target.

    fab db.failover --yes           fence the primary, promote the replica, confirm the service follows
    fab db.rebuild-replica --yes    the fenced node (or --node N) comes back as a streaming replica

How the service follows without a restart: every process gets one libpq multi-host URL
listing all nodes with ``target_session_attrs=read-write`` (infra/local/processes.py), so a
new connection lands on whichever node accepts writes. The pools drop connections that broke
when the old primary stopped and open new ones (docs/releases.md).

Fencing: the old primary is stopped by the supervisor, a ``standby.signal`` is left in its
data directory (if anything starts it, it comes up read-only and is never chosen for writes),
and it is recorded as fenced in release.json, so neither ``fab up`` nor supervisord starts it.

No acknowledged write is lost when the old primary is reachable: it is stopped first (a clean
shutdown sends all its WAL to the streaming replica), and the replica is promoted only once it
has replayed the old primary's shutdown checkpoint. If the primary is already gone, the
replica is promoted with what it received, and the run record says so.

Backups follow the new primary: pgbackrest.conf is re-rendered for it, archiving is shown to
work from it, and a full backup is taken (``--no-backup`` skips that). The steps live in
ops/release/failover.py; every task ends by checking the stack's invariants (ops/invariants.py).
"""

from __future__ import annotations

import time

from invoke import task

from ops.console import progress
from ops.tasks.shared import STACK_HELP, release_session


@task(help={"to": "replica to promote (default: the first streaming replica)", "stack": STACK_HELP,
            "dry-run": "print the plan, change nothing", "yes": "confirm: the primary is stopped and fenced",
            "no-backup": "skip the full backup from the new primary (backups then start at the next schedule)"})
def failover(c, to=None, stack=None, dry_run=False, yes=False, no_backup=False):
    """Promote a replica to primary, fence the old primary; the service and the backups follow.

    Destructive (the old primary is fenced until `fab db.rebuild-replica`): needs --yes.
    """
    from ops.release.failover import run_failover
    t0 = time.monotonic()
    with release_session(stack, "db.failover", {"to": to, "no_backup": no_backup}, dry_run, yes) as (_, driver, run):
        f = run_failover(driver, run, to, backup=not no_backup)
    if not dry_run:
        progress(f"{f.new} is the primary after {time.monotonic() - t0:.1f}s; {f.old} is fenced. "
                 f"Next: fab db.rebuild-replica --yes")


@task(help={"node": "node to rebuild (default: the fenced former primary)", "stack": STACK_HELP,
            "dry-run": "print the plan, change nothing", "yes": "confirm: the node's data directory is wiped"})
def rebuild_replica(c, node=None, stack=None, dry_run=False, yes=False):
    """Wipe NODE and clone it from the current primary (pg_basebackup) as a streaming replica.

    pgBackRest restore is the alternative once the backup repository is configured; this
    streams straight from the primary. Destructive: needs --yes.
    """
    from ops.release.failover import run_rebuild
    t0 = time.monotonic()
    with release_session(stack, "db.rebuild-replica", {"node": node}, dry_run, yes) as (_, driver, run):
        r = run_rebuild(driver, run, node)
    if not dry_run:
        progress(f"{r.node} is a streaming replica of {r.primary} ({time.monotonic() - t0:.1f}s)")
