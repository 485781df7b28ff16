"""What a target must provide to the components: the seam between *what* and *how*.

    Platform (abstract)
    ├── infra.docker.platform.DockerPlatform          one Docker host: networks, volumes, containers
    └── infra.kubernetes.platform.KubernetesPlatform  one namespace: StatefulSets, Deployments, ...

The whole contract, in the order ``infra.components.stack`` uses it:

    make_layout(spec)        where each process is and how the others reach it (a ContainerLayout)
    render_context(spec)     target facts the templates need beyond spec and layout
    __init__ + setup()       the foundation: networks or a namespace, TLS, shared secrets
    deploy / traffic / edge  each component's workloads, the blue/green routing, the entry point
    finish(parents)          what derives from every workload (NetworkPolicies, PDBs)
    endpoints() / where()    how operators and ops/ reach the stack and each process
    executor                 the ops executor kind (ops/executors.py) that runs commands there

A new target is a package with a Platform subclass plus one line in ``TARGETS``
(infra/components/stack.py).
"""

from __future__ import annotations

import abc
from typing import Any

import pulumi

from infra.components.model import Workload
from infra.components.secrets import StackSecrets
from infra.layout import ContainerLayout
from infra.render import RenderContext, Rendered
from infra.spec import StackSpec


class Platform(abc.ABC):
    target: str
    executor: str
    """The ops executor kind that runs a command in one of this target's processes."""
    supports_schedules: bool = False
    """True when the target runs cron jobs itself (Kubernetes CronJob); else ops/ schedules."""
    shared_volumes: bool = False
    """True when workloads can mount one volume together (one Docker host): the database
    containers then archive WAL to a pgBackRest repository on a volume they share, Redis copies
    its RDB there and node-exporter reads the backup's metrics (``Workload.shared``)."""

    @classmethod
    def backs_up_in_place(cls, spec: StackSpec) -> bool:
        """pgBackRest runs in the database containers with its repository on a shared volume."""
        return cls.shared_volumes and spec.backup.enabled

    def __init__(self, spec: StackSpec, layout: ContainerLayout, secrets: StackSecrets,
                 rendered: dict[str, Rendered]):
        self.spec = spec
        self.layout = layout
        self.secrets = secrets
        self.rendered = rendered
        self.workloads: list[Workload] = []

    @staticmethod
    @abc.abstractmethod
    def make_layout(spec: StackSpec) -> ContainerLayout:
        """The target's layout: host names and ports of every process."""

    @staticmethod
    @abc.abstractmethod
    def render_context(spec: StackSpec) -> RenderContext:
        """Target facts the templates need beyond the spec and the layout."""

    @abc.abstractmethod
    def setup(self, parent: pulumi.Resource | None = None) -> list[pulumi.Resource]:
        """Declare the foundation every workload needs (networks, namespace, TLS)."""

    def file(self, rel: str) -> "Rendered":
        """A rendered config by its path relative to the config directory."""
        try:
            return self.rendered[rel]
        except KeyError:
            raise KeyError(f"no rendered file {rel!r}; rendered: {sorted(self.rendered)}") from None

    @abc.abstractmethod
    def app_image(self, slot: str, parent: pulumi.Resource) -> pulumi.Input[str]:
        """The image reference of ``slot``'s app (built, pulled or referenced)."""

    @abc.abstractmethod
    def image(self, name: str, parent: pulumi.Resource) -> pulumi.Input[str]:
        """The image reference of a service image (infra/images.py: postgres, redis, nginx, ...,
        or an upstream one: grafana, jaeger)."""

    @abc.abstractmethod
    def deploy(self, workload: Workload, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """Declare the resources that run ``workload``."""

    @abc.abstractmethod
    def traffic(self, slots: dict[str, Workload], parent: pulumi.Resource) -> list[pulumi.Resource]:
        """Blue/green routing objects that are not the proxy itself (Kubernetes Services)."""

    @abc.abstractmethod
    def edge(self, proxy: Workload, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """The entry point of the stack: Nginx container, or Ingress objects."""

    def finish(self, parents: dict[str, pulumi.Resource]) -> list[pulumi.Resource]:
        """Resources derived from all workloads (policies, budgets); ``parents`` by component."""
        return []

    @abc.abstractmethod
    def endpoints(self) -> dict[str, Any]:
        """How operators and ops/ reach the stack (URLs, host names), without secrets."""

    @abc.abstractmethod
    def where(self, w: Workload, member: str) -> dict[str, Any]:
        """The executor options that reach ``member`` (container name, or namespace and pod)."""
