"""``fab backup``: one backup set, from pgBackRest to a verified manifest.

    tier     pgBackRest        repository   schedule key
    daily    diff              repo1        backup.schedule_diff  (default)
    weekly   full              repo1        backup.schedule_full  (--full)
    incr     incr              repo1        backup.schedule_incr  (--incr)
    archive  full              repo2        backup.schedule_archive (--archive; own retention)

Steps, each in the run log: versions checked across hosts, pgBackRest backup (detached on the
host, so a dropped SSH connection does not kill it), ``pg_dump -Fc``, Redis RDB/AOF, files,
manifest (sizes, sha256, LSN/WAL range, LASTSAVE, versions), verify, offsite copy.

Nothing half-done: if a step after pgBackRest fails, the set directory is removed (the
pgBackRest backup itself stays valid in the repository and usable by ``fab restore``) and the
error says so.
"""

from __future__ import annotations

import datetime as dt
import shlex
import time

from ops.backup import files, logical, manifest, redis
from ops.backup.site import TIER_TO_BACKUP, Site
from ops.errors import BackupError, BadInput
from ops.runlog import Run


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_set_id(tier: str) -> str:
    return now_utc().strftime("%Y%m%dT%H%M%SZ") + f"-{tier}"


def run_backup(site: Site, tier: str, run: Run, offsite: bool = True) -> dict | None:
    if tier not in TIER_TO_BACKUP:
        raise BadInput(f"unknown tier {tier!r}; one of {sorted(TIER_TO_BACKUP)}")
    type_, repo = TIER_TO_BACKUP[tier]
    spec, paths, ex = site.spec, site.paths, site.ex
    pgb = site.pgbackrest()
    set_id = new_set_id(tier)
    set_dir = paths.set_dir(set_id)
    q = shlex.quote
    started = now_utc()
    t0 = time.monotonic()

    version = run.step("check pgBackRest versions match on every database host", "pgbackrest version (each host)",
                       site.check_versions)
    run.step("check the repository opens with the configured key", "pgbackrest info", lambda: pgb.info())
    if run.dry_run:
        run.step(f"pgBackRest {type_} backup into repo{repo} (detached on the host)",
                 pgb.argv(f"--repo={repo}", f"--type={type_}", "backup"))
        if spec.backup.logical_export:
            run.step("logical export", f"pg_dump --format=custom ... -f {set_dir}/logical.dump")
        run.step("redis RDB (BGSAVE, LASTSAVE) and AOF directory", f"redis-cli BGSAVE; cp ... {set_dir}/redis")
        run.step("configs and logs with a sha256 list", f"tar -czf {set_dir}/files.tar.gz conf log")
        run.step("manifest", f"{set_dir}/manifest.json")
        if spec.backup.verify_after_backup:
            run.step("verify", pgb.argv(f"--repo={repo}", "verify"))
        if spec.backup.s3 and offsite:
            run.step("offsite copy", f"python -m ops.backup.offsite push (s3 {spec.backup.s3.bucket})")
        return None

    def pg_backup():
        before = {b.label for b in pgb.backups()}
        job = pgb.start_backup(type_, repo)
        res = job.wait(timeout=6 * 3600)
        if res.exit_code != 0:
            raise BackupError(f"pgbackrest backup failed (exit {res.exit_code}); output in {job.out}:\n"
                              + res.stdout.strip()[-1500:])
        new = [b for b in pgb.backups() if b.label not in before and b.repo == repo]
        if not new:
            raise BackupError("pgbackrest backup reported success but no new backup is in the repository")
        return new[-1], res

    info, _ = run.step(f"pgBackRest {type_} backup into repo{repo} (detached on the host)",
                       pgb.argv(f"--repo={repo}", f"--type={type_}", "backup"), pg_backup)
    components: dict = {"postgres": {
        "label": info.label, "type": info.type, "repo": info.repo, "prior": info.prior,
        "timestamp_start": info.start, "timestamp_stop": info.stop, "lsn_start": info.lsn_start,
        "lsn_stop": info.lsn_stop, "wal_start": info.wal_start, "wal_stop": info.wal_stop,
        "size": info.size, "repo_size": info.repo_size}}
    try:
        run.step("create the set directory", f"mkdir -p {set_dir}", lambda: ex.run(f"mkdir -p {q(set_dir)}"))
        if spec.backup.logical_export:
            port = site.layout.bind(site.pg_primary).port
            components["logical"] = {"file": run.step(
                "logical export (pg_dump -Fc)", f"pg_dump --format=custom -d {spec.postgres.database} "
                f"-f {set_dir}/logical.dump", lambda: logical.export(ex, paths, port, spec.postgres.database, set_dir)),
                "database": spec.postgres.database}
        user, password = _redis_login(site)
        clis = [redis.RedisCli(s.executor, s.host, s.port, password, user) for s in site.inventory.of_kind("redis")]
        components["redis"] = run.step("redis RDB (BGSAVE until LASTSAVE changes) and AOF directory",
                                       f"redis-cli BGSAVE; LASTSAVE; cp dump.rdb appendonlydir {set_dir}/redis",
                                       lambda: redis.backup(redis.find_master(clis), f"{set_dir}/redis"))
        root, include = site.files_source()
        components["files"] = run.step("configs and logs into an archive with a sha256 list",
                                       f"tar -czf {set_dir}/files.tar.gz -C {root} {' '.join(include)}",
                                       lambda: files.archive(ex, root, set_dir, include))

        def write_manifest():
            doc = {"format": manifest.FORMAT, "id": set_id, "stack": spec.name, "tier": tier,
                   "started_at": started.isoformat(), "finished_at": now_utc().isoformat(),
                   "duration_s": round(time.monotonic() - t0, 3), "components": components,
                   "artifacts": manifest.artifacts(ex, set_dir), "versions": site.tool_versions(),
                   "verified": None}
            manifest.write(ex, set_dir, doc)
            return doc
        doc = run.step("write the manifest (sizes, sha256, LSN/WAL range, LASTSAVE, versions)",
                       f"{set_dir}/manifest.json", write_manifest)
    except BaseException as exc:
        ex.run(f"rm -rf {q(set_dir)}", check=False)
        raise BackupError(f"backup set {set_id} abandoned and its directory removed; the pgBackRest "
                          f"backup {info.label} is complete and stays usable by `fab restore`. Cause: {exc}") from exc

    if spec.backup.verify_after_backup:
        doc = run.step(f"verify repo{repo} and the set against its manifest",
                       pgb.argv(f"--repo={repo}", "verify") + f"; sha256sum {set_dir}/*",
                       lambda: verify_set(site, doc))
        if not doc["verified"]["ok"]:
            raise BackupError(f"backup {set_id} failed verification: {doc['verified']['detail']}")
    if spec.backup.s3 and offsite:
        from ops.backup import offsite as off
        run.step("offsite copy to S3, checked after transfer",
                 f"python -m ops.backup.offsite push s3://{spec.backup.s3.bucket}/{spec.backup.s3.prefix}",
                 lambda: off.push_via_host(site))
    run.step("remove sets whose pgBackRest backup retention expired", f"rm -rf {paths.sets}/<expired>",
             lambda: prune(site))
    run.step("publish the backup's time and size for Prometheus (BackupTooOld alert)",
             f"{site.layout.data('node-exporter')}/recon_backup.prom", lambda: publish_metrics(site, doc))
    run.notes.update({"backup_id": set_id, "pgbackrest_label": info.label, "pgbackrest": version})
    return doc


def verify_set(site: Site, doc: dict) -> dict:
    """pgBackRest verify of the set's repository, the set's files against the manifest, and a
    ``pg_restore --list`` of the logical dump. Records the outcome in the manifest."""
    repo = doc["components"]["postgres"]["repo"]
    set_dir = site.paths.set_dir(doc["id"])
    problems = []
    res = site.pgbackrest().verify(repo)
    if not res.ok:
        problems.append(f"pgbackrest verify repo{repo} exit {res.exit_code}: "
                        + (res.stderr or res.stdout).strip()[-500:])
    problems += manifest.check(site.ex, set_dir, doc)
    if "logical" in doc["components"] and not problems:
        try:
            logical.check(site.ex, f"{set_dir}/logical.dump")
        except Exception as exc:
            problems.append(f"pg_restore --list of logical.dump failed: {str(exc)[-300:]}")
    doc["verified"] = {"at": now_utc().isoformat(), "ok": not problems,
                       "detail": "; ".join(problems) or f"pgbackrest verify repo{repo} ok; "
                       f"{len(doc['artifacts'])} file(s) match the manifest"}
    manifest.write(site.ex, set_dir, doc)
    return doc


def publish_metrics(site: Site, doc: dict) -> None:
    """node_exporter's textfile collector reads ``*.prom`` from its directory; written atomically."""
    pg = doc["components"]["postgres"]
    size = sum(a["size"] for a in doc["artifacts"].values()) + pg["repo_size"]
    labels = f'stack="{site.spec.name}",tier="{doc["tier"]}"'
    text = ("# HELP recon_backup_last_success_timestamp_seconds End of the last verified backup.\n"
            "# TYPE recon_backup_last_success_timestamp_seconds gauge\n"
            f"recon_backup_last_success_timestamp_seconds{{{labels}}} {pg['timestamp_stop']}\n"
            "# HELP recon_backup_last_size_bytes Bytes stored by the last backup set.\n"
            "# TYPE recon_backup_last_size_bytes gauge\n"
            f"recon_backup_last_size_bytes{{{labels}}} {size}\n")
    d = site.layout.data("node-exporter")
    q = shlex.quote
    site.ex.run(f"printf %s {q(text)} > {q(d + '/.recon_backup.prom.tmp')} && "
                f"mv {q(d + '/.recon_backup.prom.tmp')} {q(d + '/recon_backup_' + doc['tier'] + '.prom')}")


def prune(site: Site) -> list[str]:
    """Sets whose pgBackRest backup was expired by retention are removed (and incomplete ones
    older than a day). Returns the removed ids."""
    labels = {b.label for b in site.pgbackrest().backups()}
    removed = []
    for m in manifest.list_sets(site.ex, site.paths):
        stale = m.get("incomplete") and m["id"] < (now_utc() - dt.timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ")
        if stale or (not m.get("incomplete") and m["components"]["postgres"]["label"] not in labels):
            site.ex.run(f"rm -rf {shlex.quote(site.paths.set_dir(m['id']))}")
            removed.append(m["id"])
    return removed


def _redis_login(site: Site) -> tuple[str | None, str | None]:
    """The ops ACL user the local target creates (BGSAVE, LASTSAVE, CONFIG), else the spec's password."""
    stored = site.secrets()
    if "redis_ops" in stored:
        return "ops", stored["redis_ops"].get_secret_value()
    spec = site.spec
    return None, spec.redis.password.get_secret_value() if spec.redis.password else None
