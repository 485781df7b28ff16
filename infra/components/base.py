"""The shape every component shares: describe workloads, deploy them, register outputs."""

from __future__ import annotations

from typing import Any

import pulumi

from infra.components.model import Workload
from infra.components.platform import Platform


class Concern(pulumi.ComponentResource):
    """One concern of the stack (Database, Cache, ...), parent of everything it declares.

    Subclasses implement :meth:`describe` (pure: spec, layout and rendered files in,
    Workloads out) and may extend :meth:`extra` for objects that are not workloads.
    """

    TYPE = "recon:components:Concern"

    def __init__(self, name: str, platform: Platform, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, None, opts)
        self.platform = platform
        self.spec = platform.spec
        self.layout = platform.layout
        self.workloads: list[Workload] = self.describe()
        self.children: list[pulumi.Resource] = []
        for workload in self.workloads:
            self.children += platform.deploy(workload, parent=self)
        self.children += self.extra()
        self.register_outputs(self.outputs())

    def describe(self) -> list[Workload]:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra(self) -> list[pulumi.Resource]:
        return []

    def outputs(self) -> dict[str, Any]:
        return {"workloads": [w.name for w in self.workloads]}

    def command(self, service_name: str, member: str | None = None) -> list[str]:
        """The catalogue's command line for a service (infra/services.py), filled for containers:
        the same program and flags the local target runs, with this layout's addresses and paths."""
        from infra import services
        svc = services.service(service_name)
        return services.command(svc, member or svc.members(self.spec)[0].name, self._fill())

    def environment(self, service_name: str, member: str | None = None) -> dict[str, str]:
        from infra import services
        svc = services.service(service_name)
        return services.environment(svc, member or svc.members(self.spec)[0].name, self._fill())

    def _fill(self):
        from infra import services
        return services.Fill(self.layout, pg_tls=self.layout.pg_tls_query())

    def conf(self, rel: str, mode: int = 0o644):
        """The rendered file ``rel`` as a File at its container path."""
        from infra.components.model import File

        return File(self.layout.conf(rel), self.platform.file(rel).content, mode)
