"""Kubernetes DNS names for the layout's processes.

    postgres-primary    -> postgres-primary-0.postgres-primary.<ns>.svc.cluster.local
    postgres-replica-2  -> postgres-replica-1.postgres-replica.<ns>.svc.cluster.local
    sentinel-1          -> sentinel-0.sentinel.<ns>.svc.cluster.local
    backend-blue-3      -> backend-blue.<ns>.svc.cluster.local   (a Deployment: no pod names)
    prometheus          -> prometheus.<ns>.svc.cluster.local

Members of a stateful group are StatefulSet pods behind a headless Service of the group's
name; the layout's 1-based process index is the pod's ordinal + 1.
"""

from __future__ import annotations

from infra import services
from infra.layout import ContainerLayout
from infra.spec import StackSpec

CLUSTER_DOMAIN = "svc.cluster.local"

def group_of(spec: StackSpec, proc: str) -> tuple[str, int | None]:
    """(group name, pod ordinal) of a layout process; ordinal None for Deployments and for
    names outside the catalogue (jobs such as ``migrate``)."""
    try:
        _, member = services.owner(spec, services.endpoint_members(spec).get(proc, proc))
    except KeyError:
        return proc, None
    return member.group, member.ordinal


class KubernetesLayout(ContainerLayout):
    def __init__(self, spec: StackSpec):
        super().__init__(spec, "kubernetes", domain="")
        self.namespace = spec.namespace

    def service_host(self, service: str) -> str:
        return f"{service}.{self.namespace}.{CLUSTER_DOMAIN}"

    def host_of(self, proc: str) -> str:
        group, ordinal = group_of(self.spec, proc)
        if ordinal is None:
            return self.service_host(group)
        return f"{group}-{ordinal}.{self.service_host(group)}"

    def pod_of(self, proc: str) -> str | None:
        group, ordinal = group_of(self.spec, proc)
        return None if ordinal is None else f"{group}-{ordinal}"
