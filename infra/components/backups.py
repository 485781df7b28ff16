"""Backups: the schedule, the repository volume, and the logical export.

What runs where:

* ``pg_dump -Fc`` logical export of the database, from the replica when there is one, into
  the backup volume on ``backup.schedule_diff``, keeping ``backup.retention.diff`` dumps.
  Kubernetes runs it as a CronJob. Docker has no scheduler: the schedule is exported in the
  inventory and ops/ (``fab backup``, from the host's cron) runs the same command through
  ``docker exec``.
* pgBackRest (full/diff/incr/archive on the spec's schedules, WAL archiving) is driven by
  ops/ on the database hosts; the container targets render ``archive_mode = off`` until the
  backup work gives ``RenderContext.archive_command`` a repository to archive to. The
  inventory carries the whole schedule so ops/ reads it from one place.
"""

from __future__ import annotations

from infra.components.base import Concern
from infra import images
from infra.components.model import Workload
from infra.components.sizing import BACKUP_REPO_FACTOR, resources_for

LOGICAL = """set -eu
mkdir -p /backup/logical
out="/backup/logical/$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump --format=custom --no-password --dbname="$RECON_DATABASE_URL" --file="$out.partial"
mv "$out.partial" "$out"
ls -1t /backup/logical/*.dump | tail -n +$((RECON_KEEP + 1)) | xargs -r rm -f --
echo "logical export $out done"
"""


class Backups(Concern):
    TYPE = "recon:components:Backups"

    def describe(self) -> list[Workload]:
        b = self.spec.backup
        if not b.enabled:
            return []
        return [Workload(
            name="backup-logical", component="backups", role="backup", image=self.platform.image("postgres", parent=self),
            members=["backup-logical"], kind="cronjob", schedule=b.schedule_diff, tier=("data",),
            user=images.UID, script=LOGICAL, env={"RECON_KEEP": str(b.retention.diff)},
            secret_env={"RECON_DATABASE_URL": "database_replica_url"},
            storage_gib=self.spec.postgres.storage_gib * BACKUP_REPO_FACTOR, data_path="/backup",
            resources=resources_for(self.spec, "backup"), http_client=None)]

    def schedule(self) -> dict:
        b = self.spec.backup
        return {"enabled": b.enabled, "stanza": b.stanza, "full": b.schedule_full, "diff": b.schedule_diff,
                "incr": b.schedule_incr, "archive": b.schedule_archive, "logical": b.schedule_diff,
                "retention": b.retention.model_dump(), "runs_in_target": self.platform.supports_schedules}

    def outputs(self):
        return {**super().outputs(), "schedule": self.schedule()}
