"""The reconciliation service: web replicas and job workers per blue/green slot.

Both slots run all the time at ``backend.replicas`` (as an Argo Rollouts preview does), each
with its own image and version from ``backend.slots``. Which slot takes traffic is the
target's routing (``Platform.traffic``/``edge``), driven by ``backend.active_slot`` and
``backend.canary_weight``: flipping those keys changes routing only, never a workload.

Migrations run once per distinct version, before the slots that need them
(``python -m app migrate`` is idempotent; expand/contract keeps both versions working).
"""

from __future__ import annotations

import re

import pulumi

from infra.components.base import Concern
from infra import images, services
from infra.services import PG_PRIMARY
from infra.components.model import Edge, Port, Probe, Workload
from infra.components.sizing import resources_for

SLOTS = ("blue", "green")
MIGRATE_ENV = ("RECON_SLOT", "RECON_VERSION", "RECON_LOG_JSON", "RECON_SERVICE_NAME")
"""All a migration needs besides its database URL (it talks to nothing else)."""


def version_slug(version: str) -> str:
    """A version as a DNS label fragment: ``1.2.0+rc1`` -> ``1-2-0-rc1``."""
    return re.sub(r"[^a-z0-9-]", "-", version.lower()).strip("-")[:40]


class Backend(Concern):
    TYPE = "recon:components:Backend"

    def __init__(self, name, platform, sentinels: str, opts=None):
        self.sentinels = sentinels
        super().__init__(name, platform, opts)

    def app_env(self, slot: str) -> dict[str, str]:
        b, s = self.spec.backend, self.spec
        env = {
            "RECON_SLOT": slot,
            "RECON_VERSION": b.slots[slot].version,
            "RECON_REDIS_SENTINELS": self.sentinels,
            "RECON_REDIS_MASTER_NAME": s.redis.sentinel.master_name,
            "RECON_REDIS_USERNAME": "app",  # its own ACL user (infra/redisacl.py)
            "RECON_LOG_JSON": "true",
            "RECON_SERVICE_NAME": "recon",
        }
        if s.jaeger.enabled:
            env["RECON_OTLP_ENDPOINT"] = f"http://{self.layout.host_of('jaeger')}:{s.jaeger.otlp_port}"
        return env

    def worker_metrics_port(self) -> int:
        """The port a worker serves its /metrics on in a container (the catalogue's worker port;
        only when the spec has workers)."""
        return self.layout.port_of(services.slot_members(self.spec, "worker", SLOTS[0])[0])

    def describe(self) -> list[Workload]:
        b = self.spec.backend
        out: list[Workload] = []
        secret_env = {"RECON_DATABASE_URL": "database_url", "RECON_DATABASE_REPLICA_URL": "database_replica_url",
                      "RECON_REDIS_PASSWORD": "redis_password", "RECON_REDIS_SENTINEL_PASSWORD": "sentinel_password"}
        egress_common = dict(user=images.UID, http_client="python", tier=("back", "data"))
        self.images = {slot: self.platform.app_image(slot, parent=self) for slot in SLOTS}
        self.migrations: dict[str, Workload] = {}
        for slot in SLOTS:
            version = b.slots[slot].version
            if version in self.migrations:
                continue
            self.migrations[version] = Workload(
                name=f"migrate-{version_slug(version)}", component="backend", role="migrate",
                image=self.images[slot], members=[f"migrate-{version_slug(version)}"], kind="job",
                command=["python", "-m", "app", "migrate"],
                env={k: v for k, v in self.app_env(slot).items() if k in MIGRATE_ENV},
                secret_env={"RECON_DATABASE_URL": "migrate_database_url"},  # as the owner role
                resources=resources_for(self.spec, "migrate"), tier=("data",), user=images.UID,
                http_client="python", labels={"recon/version": version_slug(version)},
                after=[PG_PRIMARY])  # the database exists (and is healthy) before migrations run
            out.append(self.migrations[version])
        for slot in SLOTS:
            labels = {"recon/slot": slot, "recon/version": version_slug(b.slots[slot].version)}
            http = Probe(path="/health", port=b.port, initial_delay_s=5, period_s=10)
            ready = Probe(path="/ready", port=b.port, initial_delay_s=5, period_s=5)
            out.append(Workload(
                name=f"backend-{slot}", component="backend", role="backend", image=self.images[slot],
                members=self.layout.backends(slot), kind="stateless",
                command=["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", str(b.port)],
                env=self.app_env(slot), secret_env=secret_env, ports=[Port("http", b.port)],
                liveness=http, readiness=ready, resources=resources_for(self.spec, "backend"),
                peers=[Edge("ingress", b.port), Edge("nginx", b.port), Edge("prometheus", b.port)],
                labels=labels, after=[self.migrations[b.slots[slot].version].name], **egress_common))
            workers = services.slot_members(self.spec, "worker", slot)
            if workers:
                mport = self.worker_metrics_port()
                probe = Probe(path="/metrics", port=mport, initial_delay_s=10, period_s=15)
                out.append(Workload(
                    name=f"worker-{slot}", component="backend", role="worker", image=self.images[slot],
                    members=workers, kind="stateless",
                    command=["python", "-m", "app", "worker"],
                    # the catalogue's metrics listener: 0.0.0.0 (app default 127.0.0.1) for probes, scrapes
                    env={**self.app_env(slot), **self.environment("worker", workers[0])},
                    secret_env=secret_env, ports=[Port("metrics", mport)], liveness=probe, readiness=probe,
                    resources=resources_for(self.spec, "worker"), peers=[Edge("prometheus", mport)],
                    labels=labels, after=[self.migrations[b.slots[slot].version].name], **egress_common))
        return out

    def extra(self) -> list[pulumi.Resource]:
        slots = {w.name.removeprefix("backend-"): w for w in self.workloads if w.role == "backend"}
        return self.platform.traffic(slots, parent=self)

    def outputs(self):
        b = self.spec.backend
        return {**super().outputs(), "active_slot": b.active_slot, "canary_weight": b.canary_weight,
                "versions": {s: b.slots[s].version for s in SLOTS}}
