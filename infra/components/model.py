"""What runs, described once, independent of the target that runs it.

A component (Database, Cache, ...) decides *what* runs: images, commands, environment,
config files, ports, probes, compute, storage, who may talk to whom. It describes each group
of identical processes as a :class:`Workload` and hands it to the target's platform
(infra/docker, infra/kubernetes), which decides *how*: containers on one host, or
StatefulSets and Deployments in a namespace.

    Workload
    ├── members        process names from the layout (postgres-replica-1, sentinel-2, ...)
    ├── files          rendered config files, shared or per member
    ├── secret_env     environment variables filled from stack secrets
    ├── secret_files   files filled from stack secrets (pgpass, ...)
    ├── ports / probes / resources / storage
    └── peers          Edge(s): who may open a connection to this workload, on which port

Trap: every number in a Workload comes from the spec, the layout, or infra/components/sizing.py
(for processes the spec does not size). Platforms translate; they never invent a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi

from infra.spec import Resources

Kind = Literal["stateful", "stateless", "daemon", "job", "cronjob"]
Tier = Literal["front", "back", "data"]


@dataclass(frozen=True)
class Port:
    name: str
    number: int
    published: bool = False
    """Docker: published on the host (edge ports only). Kubernetes: reached through Ingress."""
    host_ip: str = "0.0.0.0"
    """Docker: host address a published port binds to (127.0.0.1 for operator UIs)."""


@dataclass(frozen=True)
class Probe:
    """A health check: an HTTP GET (``path`` on ``port``) or a command (``command``)."""

    path: str | None = None
    port: int | None = None
    command: tuple[str, ...] | None = None
    initial_delay_s: int = 5
    period_s: int = 10
    timeout_s: int = 3
    failure_threshold: int = 3

    def __post_init__(self) -> None:
        if (self.path is None) == (self.command is None):
            raise ValueError(f"a probe is either http (path, port) or exec (command), got {self!r}")


@dataclass(frozen=True)
class File:
    path: str
    """Absolute path in the container (under /etc/recon for rendered configs)."""
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Edge:
    """``source`` (a workload role, or ``ingress`` for the edge) may connect on ``port``."""

    source: str
    port: int


@dataclass
class Workload:
    """A group of identical processes (one container or pod each)."""

    name: str
    """Group name: a Kubernetes StatefulSet/Deployment/Service name, a Docker name prefix."""
    component: str
    role: str
    """Label shared by the members of one stateful role (postgres, redis, sentinel, ...)."""
    image: pulumi.Input[str]
    members: list[str]
    """Process names from the layout, one per container/pod. Empty for a daemon."""
    kind: Kind = "stateless"
    tier: tuple[Tier, ...] = ("back",)
    command: list[str] | None = None
    args: list[str] | None = None
    script: str | None = None
    """A POSIX sh script run instead of command/args; ``$RECON_MEMBER`` names the process."""
    env: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    """Environment variable -> name of a stack secret (see StackSecrets.values)."""
    files: list[File] = field(default_factory=list)
    member_files: dict[str, list[File]] = field(default_factory=dict)
    secret_files: dict[str, str] = field(default_factory=dict)
    """Absolute path -> name of a stack secret; written 0600, owned by ``user``."""
    ports: list[Port] = field(default_factory=list)
    liveness: Probe | None = None
    readiness: Probe | None = None
    resources: Resources | None = None
    user: int = 65534
    storage_gib: int | None = None
    data_path: str | None = None
    writable: list[str] = field(default_factory=lambda: ["/tmp"])
    """Paths that need to be writable besides the data volume (tmpfs / emptyDir)."""
    read_only_root: bool = True
    peers: list[Edge] = field(default_factory=list)
    egress: list[str] = field(default_factory=list)
    """Roles this workload connects to (for NetworkPolicy egress), besides DNS."""
    labels: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)
    """Workloads (by name) that must have been created, or for jobs completed, first."""
    schedule: str | None = None
    """Cron schedule for kind="cronjob"."""
    shared: dict[str, str] = field(default_factory=dict)
    """Volume name -> container path: a volume several workloads mount (the backup repository;
    only where ``Platform.shared_volumes``)."""
    host_paths: dict[str, str] = field(default_factory=dict)
    """Host path -> container path, mounted read-only (node-exporter only)."""
    http_client: Literal["curl", "wget", "python"] | None = "wget"
    """How a Docker health check runs an HTTP probe inside this image (None: it cannot)."""
    exemptions: dict[str, str] = field(default_factory=dict)
    """Policy rule name -> reason this workload is exempt (listed in docs and policy output)."""

    @property
    def replicas(self) -> int:
        return len(self.members)

    def all_files(self) -> list[File]:
        out = list(self.files)
        for files in self.member_files.values():
            out.extend(files)
        return out
