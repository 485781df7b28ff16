"""The program as a function: ``build(spec, lookup)`` declares the whole stack.

``infra/__main__.py`` calls it with the stack's spec and ``pulumi.Config("recon").get_secret``;
tests call it under Pulumi's mock runtime with any spec. Importing this module declares
nothing.

Targets are looked up by name and imported lazily, so the Docker program never imports
pulumi_kubernetes and the other way round.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlencode

import pulumi

from infra import services
from infra.components.backend import Backend
from infra.components.backups import Backups
from infra.components.cache import Cache
from infra.components.database import Database
from infra.components.observability import Observability
from infra.components.platform import Platform
from infra.components.proxy import Proxy
from infra.components.secrets import StackSecrets
from infra.render import render_all
from infra.services import PG_PRIMARY, REDIS_PRIMARY
from infra.spec import StackSpec

TARGETS: dict[str, str] = {
    "docker": "infra.docker.platform:DockerPlatform",
    "kubernetes": "infra.kubernetes.platform:KubernetesPlatform",
}


Lookup = Callable[[str], "pulumi.Output[str] | None"]


class UnsupportedTarget(ValueError):
    """The spec names a target this program does not deploy (``local`` runs under fab up)."""


def platform_class(target: str) -> type[Platform]:
    try:
        module, _, cls = TARGETS[target].partition(":")
    except KeyError:
        raise UnsupportedTarget(
            f"target {target!r} is not deployed by Pulumi; expected one of {sorted(TARGETS)} "
            "(the local target runs with `fab up`)") from None
    return getattr(importlib.import_module(module), cls)


@dataclass
class Stack:
    """What build() declared: the platform, the components, and the stack outputs."""

    spec: StackSpec
    platform: Platform
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


def _no_secrets(_key: str) -> None:
    return None


def prepare(spec: StackSpec, lookup: Lookup = _no_secrets) -> Platform:
    """The target's platform with its foundation declared: layout, rendered configs, secrets."""
    cls = platform_class(spec.target)
    layout = cls.make_layout(spec)
    rendered = render_all(spec, layout, cls.render_context(spec))
    secrets = StackSecrets.resolve(spec, lookup)
    secrets.derive(spec, layout.host_of(PG_PRIMARY), [layout.host_of(p) for p in layout.postgres_replicas()],
                   redis_nodes=[str(layout.endpoint(n)) for n in (REDIS_PRIMARY, *layout.redis_replicas(),
                                                                  *layout.sentinels())],
                   pg_query=urlencode(layout.pg_tls(), quote_via=quote))
    if cls.backs_up_in_place(spec):
        secrets.derive_backup(spec, layout)
    platform = cls(spec, layout, secrets, rendered)
    platform.setup()
    return platform


def build(spec: StackSpec, lookup: Lookup = _no_secrets) -> Stack:
    """Declare every resource of ``spec``'s stack; returns what ``pulumi.export`` should export."""
    platform = prepare(spec, lookup)
    st = Stack(spec, platform)
    st.components["database"] = Database("database", platform)
    st.components["cache"] = cache = Cache("cache", platform)
    st.components["backend"] = Backend("backend", platform, sentinels=cache.sentinel_addresses())
    st.components["proxy"] = Proxy("proxy", platform)
    st.components["observability"] = Observability("observability", platform)
    st.components["backups"] = Backups("backups", platform)
    platform.finish({name: c for name, c in st.components.items()})
    st.outputs = outputs(st)
    return st


def _kind(spec: StackSpec, member: str, w) -> str:
    """The catalogue's kind of a process (the inventory's and the local target's word for it)."""
    try:
        return services.owner(spec, member)[0].kind
    except KeyError:
        return "job" if w.kind in ("job", "cronjob") else w.role


def outputs(st: Stack) -> dict[str, Any]:
    """Stack outputs: endpoints, the release state, and the inventory ops/ reads.

    DSNs and passwords appear only as Pulumi secrets (``pulumi stack output --show-secrets``).
    """
    spec, platform = st.spec, st.platform
    b = spec.backend
    services: dict[str, Any] = {}
    for w in platform.workloads:
        for member in (w.members or [w.name]):
            entry = {"kind": _kind(spec, member, w), "component": w.component, "role": w.role,
                     **platform.where(w, member)}
            if w.data_path:
                entry["data_dir"] = w.data_path
            try:
                ep = platform.layout.endpoint(member)
                entry.update(host=ep.host, port=ep.port)
            except KeyError:
                if w.ports:
                    entry.update(host=platform.layout.host_of(member), port=w.ports[0].number)
            services[member] = entry
    s = platform.secrets
    inventory = {
        "stack": spec.name,
        "target": spec.target,
        "executor": platform.executor,
        "namespace": spec.namespace if spec.target == "kubernetes" else None,
        "services": services,
        "postgres": {"database": spec.postgres.database, "user": spec.postgres.user,
                     "primary": str(platform.layout.endpoint(PG_PRIMARY)),
                     "replicas": [str(platform.layout.endpoint(p)) for p in platform.layout.postgres_replicas()],
                     "dsn": s["database_url"], "replica_dsn": s["database_replica_url"]},
        "redis": {"master_name": spec.redis.sentinel.master_name,
                  "sentinels": [str(platform.layout.endpoint(x)) for x in platform.layout.sentinels()],
                  "username": "ops", "password": s["redis_ops_password"],  # checks and backups (infra/redisacl.py)
                  "sentinel_password": s["sentinel_password"]},
        "backup": st.components["backups"].schedule(),  # type: ignore[attr-defined]
        "release": {"active_slot": b.active_slot, "idle_slot": b.idle_slot, "canary_weight": b.canary_weight,
                    "slots": {k: {"version": v.version, "image": v.image} for k, v in b.slots.items()}},
        "generated_secrets": list(s.generated),
    }
    return {
        "endpoints": platform.endpoints(),
        "active_slot": b.active_slot,
        "canary_weight": b.canary_weight,
        "inventory": inventory,
    }
