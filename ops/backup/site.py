"""Where a stack's backups happen: its inventory, the database host's executor, the paths,
pgBackRest there, and the secrets the tools need. Built once per task from the spec.

    local    every process on this machine (or over SSH): the layout's paths, supervisord
    docker   pgBackRest in the PostgreSQL containers (``docker exec``), its repository and the
             backup sets on the volume they share with Redis and node-exporter (infra/
             components/database.py); the secrets from the Pulumi program's inventory output

Trap: secrets are read from the stack's store without writing it (``LocalTarget.secrets()``
would persist an operator's ``RECON_BACKUP__CIPHER_PASS`` over the stored key, so a mistyped key
would become the stack's key). An operator-supplied cipher pass only reaches pgBackRest
through its environment, for this run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from infra.layout import ContainerLayout, Layout, LocalLayout
from infra.pgbackrest import BackupPaths
from infra.services import PG_BIN, PG_PRIMARY
from infra.spec import StackSpec
from ops.backup.pgbackrest import PgBackRest
from ops.errors import PreflightFailed, VersionMismatch
from ops.executors import Executor, ExecutorUnreachable
from ops.inventory import Inventory, Service, load_inventory

TIER_TO_BACKUP = {"daily": ("diff", 1), "weekly": ("full", 1), "incr": ("incr", 1), "archive": ("full", 2)}


@dataclass
class Site:
    spec: StackSpec
    inventory: Inventory
    layout: Layout
    paths: BackupPaths

    @classmethod
    def of(cls, spec: StackSpec) -> "Site":
        if spec.target == "kubernetes":
            raise PreflightFailed(f"stack {spec.name!r} has target 'kubernetes': pgBackRest runs in the database "
                                  "containers where they share a volume for its repository (local and docker "
                                  "targets); a cluster's pods need object storage for it, which is not built yet. "
                                  "The logical export runs there as a CronJob (docs/backups.md: container targets)")
        if not spec.backup.enabled:
            raise PreflightFailed(f"backup.enabled is false for stack {spec.name!r}; allowed: true "
                                  "(set it and run `fab up` to start WAL archiving)")
        layout: Layout = LocalLayout(spec) if spec.target == "local" else ContainerLayout(spec, spec.target)
        return cls(spec, load_inventory(spec), layout, BackupPaths.of(layout))

    @property
    def pg_primary(self) -> str:
        """The PostgreSQL node that holds the primary role now (release.json; a former replica
        after ``fab db.failover``): backups, archiving and restores act on it. The docker
        target records no failover: its primary is the one the program declares."""
        if self.spec.target != "local":
            return PG_PRIMARY
        from infra.local.release import load
        return load(self.spec).postgres.primary

    @property
    def primary(self) -> Service:
        return self.inventory.get(self.pg_primary)

    @property
    def ex(self) -> Executor:
        """Where pgBackRest and the backup sets are reached: the primary's host; on docker the
        primary's container, or, while it is stopped (lost, or stopped by a restore), a
        throwaway one with its volumes: the repository, its configs and secrets are all there."""
        return self.executor_of(self.pg_primary)

    def executor_of(self, name: str) -> Executor:
        if self.spec.target == "local" or self.control.state(name)[0] == "RUNNING":
            return self.inventory.get(name).executor
        return self.control.data_ex(name)

    @property
    def state_dir(self) -> str:
        if not isinstance(self.layout, LocalLayout):
            raise PreflightFailed(f"stack {self.spec.name!r} (target {self.spec.target!r}) has no local state "
                                  "directory: this step drives the local target only")
        return str(self.layout.root)

    def files_source(self) -> tuple[str, tuple[str, ...]]:
        """What the set's file archive holds, on the database host: the rendered configs and
        logs (local); in a database container, its configs (logs go to the engine's log driver,
        secrets are never archived: they live under /etc/recon/secrets, left out)."""
        if isinstance(self.layout, LocalLayout):
            return str(self.layout.root), ("conf", "log")
        return self.layout.conf(""), ("postgres", "pgbackrest")

    def pgbackrest(self) -> PgBackRest:
        cipher = self.spec.backup.cipher_pass
        return PgBackRest(self.ex, self.paths, self.spec.backup.stanza,
                          cipher.get_secret_value() if cipher else None)

    def secrets(self) -> dict[str, SecretStr]:
        if self.spec.target != "local":
            # the program's inventory output (pulumi stack output --show-secrets), 0600 beside the state
            doc = json.loads((self.spec.state_path / "inventory.json").read_text())
            return {"redis_ops": SecretStr(doc["redis"]["password"])}
        path = Path(self.state_dir) / "secrets" / "secrets.json"
        if not path.exists():
            raise PreflightFailed(f"no secrets for stack {self.spec.name!r} at {path}: was it ever started (fab up)?")
        return {k: SecretStr(v) for k, v in json.loads(path.read_text()).items()}

    def reachable(self) -> None:
        """Every host of the stack answers; raises :class:`PreflightFailed` naming the one that does not.
        On docker, the host is the engine: it answers and every database and Redis container exists
        (a stopped one is what a restore may be for)."""
        if self.spec.target != "local":
            states = self.control.states()
            missing = [n for n, st in states.items() if st == "MISSING"
                       and self.inventory.get(n).kind in ("postgres", "redis", "sentinel")]
            if missing:
                raise PreflightFailed(f"no container for {', '.join(missing)} on the engine: deploy the stack "
                                      f"(`pulumi up -s {self.spec.name}`) first; nothing was changed")
            return
        seen = set()
        for svc in self.inventory.services.values():
            if id(svc.executor) in seen:
                continue
            seen.add(id(svc.executor))
            try:
                svc.executor.run("true", timeout=30)
            except ExecutorUnreachable as exc:
                raise PreflightFailed(f"host of {svc.name} unreachable: {exc}; nothing was changed") from exc

    def check_versions(self) -> str:
        """pgBackRest's version on every database host; all must match (checked first)."""
        versions: dict[str, str] = {}
        for svc in self.inventory.of_kind("postgres"):
            try:
                res = self.executor_of(svc.name).run("pgbackrest version", timeout=30, check=False)
            except ExecutorUnreachable as exc:
                raise PreflightFailed(f"host of {svc.name} unreachable: {exc}; nothing was changed") from exc
            versions[f"{svc.name}@{getattr(svc.executor, 'where', svc.host)}"] = \
                res.stdout.strip() if res.ok else f"missing ({res.stderr.strip()[:80]})"
        distinct = set(versions.values())
        if len(distinct) != 1 or not next(iter(distinct)).startswith("pgBackRest "):
            raise VersionMismatch("pgBackRest versions differ across the database hosts (all must match): "
                                  + ", ".join(f"{h}: {v}" for h, v in sorted(versions.items())))
        return distinct.pop()

    def tool_versions(self) -> dict[str, str]:
        res = self.ex.run(f"pgbackrest version; {PG_BIN}/postgres --version; "
                          "redis-server --version | cut -d' ' -f1-3", check=False)
        lines = res.stdout.strip().splitlines() + ["", "", ""]
        return {"pgbackrest": lines[0], "postgres": lines[1], "redis": lines[2]}

    @property
    def admin_user(self) -> str | None:
        """Who may talk to supervisord (its socket is 0700, owned by whoever started it)."""
        if self.primary.run_as is None:
            return None
        return self.spec.ops.ssh.login if self.spec.ops.ssh else "root"

    @property
    def control(self):
        """Start, stop and reach the stack's processes (supervisord or the Docker engine)."""
        from ops.control import control
        if "_control" not in self.__dict__:
            self.__dict__["_control"] = control(self)
        return self.__dict__["_control"]
