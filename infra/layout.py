"""Where each process of the stack runs and how the others reach it, per target.

The templates never compute an address or a path themselves: they ask the layout. The same
template therefore renders the local target (everything on loopback, one port per process,
state under one directory) and the container targets (one host name per process, the
service's standard port, the image's conventional paths).

    Layout (abstract)
    ├── LocalLayout       processes on this machine, ports from services.local_ports()
    └── ContainerLayout   one container/pod per process; docker DNS or Kubernetes services

Process names, ports and data directories come from the service catalogue (infra/services.py);
a layout only decides where they are on its target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from infra import services
from infra.services import PG_PRIMARY
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
        return services.member_names(self.spec, "postgres-replica")

    def postgres_nodes(self) -> list[str]:
        """Every PostgreSQL process, the first-initialised primary first."""
        return [PG_PRIMARY, *self.postgres_replicas()]

    def redis_replicas(self) -> list[str]:
        return services.member_names(self.spec, "redis-replica")

    def sentinels(self) -> list[str]:
        return services.member_names(self.spec, "sentinel")

    def backends(self, slot: str) -> list[str]:
        return [m.name for m in services.service("backend").members(self.spec) if m.slot == slot]

    def exporter_jobs(self) -> list[tuple[str, str]]:
        """(scrape job, member) of every exporter this target runs, in catalogue order."""
        return [(s.scrape, m.name) for s, m in services.members(self.spec, self.target)
                if s.kind == "exporter" and s.scrape]

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

    def pgdata(self, proc: str) -> str:
        """A PostgreSQL node's data directory (``PGDATA``): its data path on this machine; a
        subdirectory of the volume in a container (initdb wants an empty directory it owns)."""
        return self.data(proc)

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
        self.ports = services.local_ports(spec)
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

    def tls(self, name: str) -> str:
        """The stack's CA and server certificate (infra/local/tls.py): ca.crt, server.crt, server.key."""
        return str(self.root / "tls" / name)

    def pg_tls(self) -> dict[str, str]:
        """libpq parameters every client of PostgreSQL on this target uses: TLS, and the server's
        certificate checked against the stack's CA for the host name connected to.

        Trap: without ``sslcert`` libpq looks for a client certificate under $HOME/.postgresql,
        and a service started by root as the service user inherits HOME=/root, which it may not
        read: the connection then fails. No client certificates are used; ``sslcert`` names a
        file that never exists (libpq goes on without one)."""
        return {"sslmode": "verify-full", "sslrootcert": self.tls("ca.crt"),
                "sslcert": self.tls("no-client-certificate")}


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
        self.ports = services.standard_ports(spec)
        self.listeners = services.endpoint_members(spec)

    def host_of(self, proc: str) -> str:
        """Host name of a process, or of the process behind an endpoint (``nginx-https``)."""
        return f"{self.listeners.get(proc, proc)}{self.domain}"

    def port_of(self, endpoint: str) -> int:
        try:
            return self.ports[endpoint]
        except KeyError:
            raise KeyError(f"unknown endpoint {endpoint!r}; one of {sorted(self.ports)}") from None

    def endpoint(self, proc: str) -> Endpoint:
        return Endpoint(self.host_of(proc), self.port_of(proc))

    def bind(self, proc: str) -> Endpoint:
        return Endpoint("0.0.0.0", self.port_of(proc))

    def conf(self, name: str) -> str:
        return str(PurePosixPath("/etc/recon") / name)

    def data(self, proc: str) -> str:
        if proc == "backup":
            return "/var/lib/backup"  # infra.images.BACKUP_ROOT
        svc, _ = services.owner(self.spec, proc)
        return svc.data or f"/var/lib/{svc.name}"

    def pgdata(self, proc: str) -> str:
        return str(PurePosixPath(self.data(proc)) / "pgdata")

    def run(self, name: str) -> str:
        return str(PurePosixPath("/tmp") / name)

    def log(self, name: str) -> str:
        return "/dev/stdout"

    def secret(self, name: str) -> str:
        """Secret files are delivered under the config root, as the platforms mount them."""
        return str(PurePosixPath("/etc/recon/secrets") / name)

    def pg_tls(self) -> dict[str, str]:
        """libpq parameters every PostgreSQL client uses. Docker: TLS, the server's certificate
        (made by the program, the containers' names in it) checked for the host name connected
        to, with that certificate as the root (``postgres-ca.crt`` in each client's secrets).
        Kubernetes: none yet (plain on the namespace's network, NetworkPolicy-bounded)."""
        if self.target != "docker":
            return {}
        return {"sslmode": "verify-full", "sslrootcert": self.secret("postgres-ca.crt")}

    def pg_tls_query(self) -> str:
        """:meth:`pg_tls` as a URL query (``sslmode=disable`` when there is none)."""
        from urllib.parse import quote, urlencode
        return urlencode(self.pg_tls(), quote_via=quote) or "sslmode=disable"
