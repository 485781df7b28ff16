"""The ``fab`` task tree. ``fab --list`` prints it; ``fab --help TASK`` explains a task."""

from invoke import Collection

from ops.tasks import app, backup, db, images, release, secrets, stack, token, troubleshoot

ns = Collection()
for t in (stack.up, stack.down, stack.status, app.demo):
    ns.add_task(t)
for t in (release.deploy, release.switch, release.canary, release.promote, release.rollback):
    ns.add_task(t)
ns.add_collection(Collection("db", db.failover, db.rebuild_replica))
ns.add_collection(backup.backup_ns)
ns.add_collection(images.images_ns)
ns.add_collection(token.token_ns)
ns.add_collection(secrets.secrets_ns)
ns.add_collection(troubleshoot.logs_ns)
for t in (troubleshoot.restart, troubleshoot.doctor):
    ns.add_task(t)
for t in (backup.backups, backup.restore):
    ns.add_task(t)
