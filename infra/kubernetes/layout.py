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

import re

from infra.layout import ContainerLayout
from infra.spec import StackSpec

CLUSTER_DOMAIN = "svc.cluster.local"

_STATEFUL = re.compile(r"^(postgres-replica|redis-replica|sentinel)-(\d+)$")
_SINGLE_STATEFUL = {"postgres-primary", "redis-primary", "prometheus"}
_SLOT = re.compile(r"^(backend-(?:blue|green))-\d+$")


def group_of(proc: str) -> tuple[str, int | None]:
    """(group name, pod ordinal) of a layout process; ordinal None for Deployments."""
    if m := _STATEFUL.match(proc):
        return m.group(1), int(m.group(2)) - 1
    if proc in _SINGLE_STATEFUL:
        return proc, 0
    if m := _SLOT.match(proc):
        return m.group(1), None
    return proc, None


class KubernetesLayout(ContainerLayout):
    def __init__(self, spec: StackSpec):
        super().__init__(spec, "kubernetes", domain="")
        self.namespace = spec.namespace

    def service_host(self, service: str) -> str:
        return f"{service}.{self.namespace}.{CLUSTER_DOMAIN}"

    def host_of(self, proc: str) -> str:
        group, ordinal = group_of(proc)
        if ordinal is None:
            return self.service_host(group)
        return f"{group}-{ordinal}.{self.service_host(group)}"

    def pod_of(self, proc: str) -> str | None:
        group, ordinal = group_of(proc)
        return None if ordinal is None else f"{group}-{ordinal}"
