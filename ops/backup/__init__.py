"""Backups and recovery of a stack: PostgreSQL through pgBackRest, a logical export, Redis,
files; a manifest per backup set, an offsite copy, schedules, and the disaster-recovery restore.

One concept per module:

    paths        where the repositories, sets and secrets live on the database host
    hostjob      a command detached on the host (survives a dropped SSH connection)
    pgbackrest   the pgBackRest CLI: stanza, backup, info, verify, restore, archive window
    logical      pg_dump -Fc export
    redis        RDB through BGSAVE/LASTSAVE, the multi-part AOF directory, restore
    files        rendered configs and logs into an archive with a sha256 manifest
    manifest     the JSON manifest of a backup set: what, when, sizes, checksums, LSNs, versions
    offsite      copy of the repositories and sets to S3 (boto3), checked after transfer
    schedule     cron entries rendered from the spec's policy, installed on the host
    backup       `fab backup`: one backup set, start to verified manifest
    recovery     `fab restore`: preflight, stop, restore, start, validate

Errors: every failure an operator can meet is a :class:`BackupError` (see errors.py).
"""
