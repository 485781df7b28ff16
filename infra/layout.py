"""Where each process of the stack runs and how the others reach it, per target.

The templates never compute an address or a path themselves: they ask the layout. The same
template therefore renders the local target (everything on loopback, one port per process,
state under one directory) and the container targets (one host name per process, the
service's standard port, the image's conventional paths).

    Layout (abstract)
    ├── LocalLayout       processes on this machine, ports from StackSpec.local_ports()
    └── ContainerLayout   one container/pod per process; docker DNS or Kubernetes services
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from infra.spec import StackSpec


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Layout:
    """Addresses and paths of the stack's processes for one target."""

    target: str
    client_cidr: str
    """Addresses allowed to reach PostgreSQL over TCP (pg_hba)."""

    def __init__(self, spec: StackSpec):
        self.spec = spec

    # -- process names -------------------------------------------------------------------
    def postgres_replicas(self) -> list[str]:
        return [f"postgres-replica-{i}" for i in range(1, self.spec.postgres.replicas + 1)]

    def redis_replicas(self) -> list[str]:
        return [f"redis-replica-{i}" for i in range(1, self.spec.redis.replicas + 1)]

    def sentinels(self) -> list[str]:
        if not self.spec.redis.failover:
            return []
        return [f"sentinel-{i}" for i in range(1, self.spec.redis.sentinel.count + 1)]

    def backends(self, slot: str) -> list[str]:
        return [f"backend-{slot}-{i}" for i in range(1, self.spec.backend.replicas + 1)]

    def serving_slots(self) -> list[str]:
        """Slots that receive traffic: the active one, plus the idle one during a canary."""
        b = self.spec.backend
        return [b.active_slot] + ([b.idle_slot] if b.canary_weight else [])

    # -- addresses -----------------------------------------------------------------------
    def endpoint(self, proc: str) -> Endpoint:  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, proc: str) -> Endpoint:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- paths ---------------------------------------------------------------------------
    def conf(self, name: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def data(self, proc: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, name: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def log(self, name: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def secret(self, name: str) -> str:  # pragma: no cover - abstract
        """Path of a secret file the target provides (never rendered into a config)."""
        raise NotImplementedError


class LocalLayout(Layout):
    """Every process on this machine, bound to ``spec.host``, state under ``spec.state_path``."""

    target = "local"

    def __init__(self, spec: StackSpec):
        super().__init__(spec)
        self.root = spec.state_path
        self.ports = spec.local_ports()
        self.client_cidr = f"{spec.host}/32"

    def endpoint(self, proc: str) -> Endpoint:
        return Endpoint(self.spec.host, self.ports[proc])

    bind = endpoint

    def conf(self, name: str) -> str:
        return str(self.root / "conf" / name)

    def data(self, proc: str) -> str:
        return str(self.root / "data" / proc)

    def run(self, name: str) -> str:
        return str(self.root / "run" / name)

    def log(self, name: str) -> str:
        return str(self.root / "log" / name)

    def secret(self, name: str) -> str:
        return str(self.root / "secrets" / name)


_STANDARD_PORTS = {
    "postgres": lambda s: s.postgres.port,
    "redis": lambda s: s.redis.port,
    "sentinel": lambda s: s.redis.sentinel.port,
    "backend": lambda s: s.backend.port,
    "prometheus": lambda s: s.prometheus.port,
    "alertmanager-cluster": lambda s: s.alertmanager.port + 1,
    "alertmanager": lambda s: s.alertmanager.port,
    "postgres-exporter": lambda s: s.exporters.postgres_port,
    "redis-exporter": lambda s: s.exporters.redis_port,
    "node-exporter": lambda s: s.exporters.node_port,
    "nginx-https": lambda s: s.nginx.https_port,
    "nginx-http": lambda s: s.nginx.http_port,
}


class ContainerLayout(Layout):
    """One container (Docker) or pod (Kubernetes) per process, each on its standard port.

    ``domain`` is appended to host names: "" on a Docker network (container names resolve),
    ``"<service>.<namespace>.svc.cluster.local"``-style suffixes on Kubernetes, where
    ``host_of`` may be overridden by the Kubernetes target for StatefulSet pod names.
    """

    def __init__(self, spec: StackSpec, target: str, domain: str = ""):
        super().__init__(spec)
        self.target = target
        self.domain = domain
        self.client_cidr = "0.0.0.0/0"

    def host_of(self, proc: str) -> str:
        return f"{proc}{self.domain}"

    def port_of(self, proc: str) -> int:
        for prefix in sorted(_STANDARD_PORTS, key=len, reverse=True):
            if proc.startswith(prefix):
                return _STANDARD_PORTS[prefix](self.spec)
        raise KeyError(f"unknown process {proc!r}")

    def endpoint(self, proc: str) -> Endpoint:
        return Endpoint(self.host_of(proc), self.port_of(proc))

    def bind(self, proc: str) -> Endpoint:
        return Endpoint("0.0.0.0", self.port_of(proc))

    def conf(self, name: str) -> str:
        return str(PurePosixPath("/etc/recon") / name)

    def data(self, proc: str) -> str:
        base = proc.split("-")[0]
        return {"postgres": "/var/lib/postgresql/data", "redis": "/data", "sentinel": "/data",
                "prometheus": "/prometheus", "alertmanager": "/alertmanager"}.get(base, f"/var/lib/{base}")

    def run(self, name: str) -> str:
        return str(PurePosixPath("/tmp") / name)

    def log(self, name: str) -> str:
        return "/dev/stdout"

    def secret(self, name: str) -> str:
        return str(PurePosixPath("/run/secrets/recon") / name)
