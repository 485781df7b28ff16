"""What a target must provide to the components: the seam between *what* and *how*.

    Platform (abstract)
    ├── infra.docker.platform.DockerPlatform          one Docker host: networks, volumes, containers
    └── infra.kubernetes.platform.KubernetesPlatform  one namespace: StatefulSets, Deployments, ...

A component calls ``deploy`` for each of its workloads, with itself as parent; the Backend
calls ``traffic`` and the Proxy calls ``edge``. ``finish`` runs once every component has
declared its workloads (Kubernetes derives NetworkPolicies and PDBs from all of them).
"""

from __future__ import annotations

import abc
from typing import Any

import pulumi

from infra.components.model import Workload
from infra.components.secrets import StackSecrets
from infra.layout import ContainerLayout
from infra.render import Rendered
from infra.spec import StackSpec


class Platform(abc.ABC):
    target: str
    supports_schedules: bool = False
    """True when the target runs cron jobs itself (Kubernetes CronJob); else ops/ schedules."""

    def __init__(self, spec: StackSpec, layout: ContainerLayout, secrets: StackSecrets,
                 rendered: dict[str, Rendered]):
        self.spec = spec
        self.layout = layout
        self.secrets = secrets
        self.rendered = rendered
        self.workloads: list[Workload] = []

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
