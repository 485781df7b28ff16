"""``fab backup``, ``fab backups``, ``fab backup.verify``, ``fab backup.offsite``,
``fab backup.schedule``, ``fab restore``: backups, point-in-time recovery and disaster recovery.

    fab backup [--full | --incr | --archive]   one backup set (default tier: daily)
    fab backups [--json]                        every set: age, size, tier, verified
    fab backup.verify [--backup ID]             pgbackrest verify + the set against its manifest
    fab backup.offsite                          copy repositories and sets to S3, checked after transfer
    fab backup.schedule [--yes]                 install the cron schedule on the database host
    fab restore [--target-time T | --backup ID] disaster recovery, in dependency order

Every mutating task prints its plan with ``--dry-run``; restore needs ``--yes``. Each run
appends a record to the stack's run log (docs/backups.md).
"""

from __future__ import annotations

import json as jsonlib
import os
import time

from invoke import Collection, task

from ops.console import fail, progress, table
from ops.tasks.shared import STACK_HELP, guarded, spec_of


def _site(stack):
    from ops.backup.site import Site
    return Site.of(spec_of(stack))


def _run(site, name, args, dry_run=False, yes=False):
    from ops.runlog import Run
    return Run(site.inventory.run_log, name, args, dry_run=dry_run, yes=yes)


@task(name="run", default=True,
      help={"stack": STACK_HELP, "full": "weekly tier: a full backup", "incr": "an incremental backup",
            "archive": "monthly archive tier: a full backup into the archive repository (own retention)",
            "dry-run": "print the plan, change nothing", "no-offsite": "skip the S3 copy even if configured"})
def backup_run(c, stack=None, full=False, incr=False, archive=False, dry_run=False, no_offsite=False):
    """Back up the stack: pgBackRest (default tier daily: differential), pg_dump -Fc, Redis, files."""
    from ops.backup.backup import run_backup
    chosen = [n for n, on in (("--full", full), ("--incr", incr), ("--archive", archive)) if on]
    if len(chosen) > 1:
        raise fail(f"choose one tier; got {' '.join(chosen)}; allowed: one of --full, --incr, --archive "
                   "or none (daily)", code=2)
    tier = "weekly" if full else "incr" if incr else "archive" if archive else "daily"

    def go():
        site = _site(stack)
        with _run(site, "backup", {"stack": site.spec.name, "tier": tier}, dry_run=dry_run) as run:
            doc = run_backup(site, tier, run, offsite=not no_offsite)
        if doc:
            pg = doc["components"]["postgres"]
            size = sum(a["size"] for a in doc["artifacts"].values()) + pg["repo_size"]
            progress(f"backup {doc['id']} done: pgBackRest {pg['label']} ({pg['type']}, repo{pg['repo']}), "
                     f"WAL {pg['wal_start']}..{pg['wal_stop']}, {_size(size)} stored, "
                     f"verified: {doc['verified']['ok'] if doc['verified'] else 'not run'}")
            print(doc["id"])
    guarded(go)


@task(help={"stack": STACK_HELP, "json": "machine-readable output"})
def backups(c, stack=None, json=False):
    """List backup sets: id, tier, age, size, pgBackRest label, verified."""
    from ops.backup import manifest

    def go():
        site = _site(stack)
        sets = manifest.list_sets(site.ex, site.paths)
        labels = {b.label for b in site.pgbackrest().backups()}
        now = time.time()
        rows = []
        for m in sets:
            if m.get("incomplete"):
                rows.append({"id": m["id"], "tier": m["id"].rsplit("-", 1)[-1], "status": "incomplete"})
                continue
            pg = m["components"]["postgres"]
            rows.append({
                "id": m["id"], "tier": m["tier"], "age_s": int(now - pg["timestamp_stop"]),
                "age": _age(now - pg["timestamp_stop"]),
                "size_bytes": sum(a["size"] for a in m["artifacts"].values()) + pg["repo_size"],
                "db_size_bytes": pg["size"], "pgbackrest": pg["label"], "type": pg["type"], "repo": pg["repo"],
                "verified": None if not m.get("verified") else m["verified"]["ok"],
                "status": "ok" if pg["label"] in labels else "expired"})
        if json:
            print(jsonlib.dumps(rows, indent=1))
            return
        if not rows:
            print("no backup sets yet: run `fab backup`")
            return
        print(table([{**r, "size": _size(r.get("size_bytes", 0)),
                      "verified": {True: "yes", False: "FAILED", None: "no"}[r.get("verified")]}
                     for r in rows], ["id", "tier", "age", "size", "pgbackrest", "repo", "verified", "status"]))
    guarded(go)


@task(help={"stack": STACK_HELP, "backup": "one set's id (default: every set)", "json": "machine-readable"})
def verify(c, stack=None, backup=None, json=False):
    """pgbackrest verify of the repositories, every set against its manifest, pg_restore --list."""
    from ops.backup import manifest
    from ops.backup.backup import verify_set

    def go():
        site = _site(stack)
        sets = [m for m in manifest.list_sets(site.ex, site.paths) if not m.get("incomplete")]
        if backup:
            sets = [manifest.find(sets, backup)]
        if not sets:
            raise fail("no backup sets to verify: run `fab backup`", code=1)
        results = []
        with _run(site, "backup.verify", {"stack": site.spec.name, "backup": backup}) as run:
            for m in sets:
                doc = run.step(f"verify {m['id']}", f"pgbackrest verify; sha256sum {site.paths.set_dir(m['id'])}/*",
                               lambda m=m: verify_set(site, m))
                results.append({"id": doc["id"], **doc["verified"]})
        if json:
            print(jsonlib.dumps(results, indent=1))
        else:
            print(table([{"id": r["id"], "ok": "yes" if r["ok"] else "FAILED", "detail": r["detail"][:100]}
                         for r in results], ["id", "ok", "detail"]))
        bad = [r["id"] for r in results if not r["ok"]]
        if bad:
            raise fail(f"{len(bad)} backup set(s) failed verification: {', '.join(bad)}")
    guarded(go)


@task(help={"stack": STACK_HELP, "dry-run": "print the plan"})
def offsite(c, stack=None, dry_run=False):
    """Copy the repositories and backup sets to S3 (backup.s3), each object checked after transfer."""
    from ops.backup import offsite as off

    def go():
        site = _site(stack)
        if not site.spec.backup.s3:
            raise fail("backup.s3 is not set for this stack; allowed: an endpoint and bucket "
                       "(docs/backups.md, offsite copy)", code=2)
        with _run(site, "backup.offsite", {"stack": site.spec.name}, dry_run=dry_run) as run:
            out = run.step("offsite copy to S3, checked after transfer",
                           f"python -m ops.backup.offsite push s3://{site.spec.backup.s3.bucket}/"
                           f"{site.spec.backup.s3.prefix}", lambda: off.push_via_host(site))
        if out:
            progress(f"offsite: {out['uploaded']} object(s) uploaded, {out['unchanged']} unchanged, "
                     f"{out['checked']} checked")
    guarded(go)


@task(help={"stack": STACK_HELP, "dry-run": "print the cron file, install nothing",
            "yes": "install it (writes /etc/cron.d on the database host)"})
def schedule(c, stack=None, dry_run=False, yes=False):
    """Install the backup schedule (cron, rendered from backup.schedule_*) on the database host."""
    from ops.backup import schedule as sched

    def go():
        site = _site(stack)
        text = sched.render(site.spec, environ=dict(os.environ))
        with _run(site, "backup.schedule", {"stack": site.spec.name}, dry_run=dry_run, yes=yes) as run:
            if dry_run:
                print(text)
            path = run.step("install the cron file on the database host", f"install -m 0644 - {sched.path(site.spec)}",
                            lambda: sched.install(site, text), destructive=True)
        if path:
            progress(f"schedule installed at {path}")
    guarded(go)


@task(help={"stack": STACK_HELP,
            "target-time": "recover to this time (ISO 8601, e.g. 2025-01-31T12:00:00+00:00); default: latest",
            "backup": "restore from this backup set (fab backups); alone: that backup's own state",
            "dry-run": "print the plan, change nothing", "yes": "confirm the destructive steps"})
def restore(c, stack=None, target_time=None, backup=None, dry_run=False, yes=False):
    """Disaster recovery: stop the app, restore PostgreSQL (latest or PITR), Redis, files; start; validate."""
    from ops.backup.recovery import run_restore

    def go():
        site = _site(stack)
        args = {"stack": site.spec.name, "target_time": target_time, "backup": backup}
        with _run(site, "restore", args, dry_run=dry_run, yes=yes) as run:
            report = run_restore(site, run, target_time=target_time, backup_id=backup)
        if report:
            progress(f"restore done in {report['seconds']:.1f}s: database accepting writes after "
                     f"{report['db_rto_s']:.1f}s; {report['summary']}")
            print(jsonlib.dumps(report, indent=1, default=str))
    guarded(go)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


backup_ns = Collection("backup")
for _t in (backup_run, verify, offsite, schedule):
    backup_ns.add_task(_t)
