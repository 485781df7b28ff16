"""The inventory: where each service of a stack runs and how to run a command there.

Ops tasks never hard-code a host. They ask the inventory for a service and run commands
through its executor. Sources:

- local target: the layout of the spec (every process on this machine); commands run
  locally, or over SSH when ``ops.ssh`` is set in the spec (``RECON_OPS__SSH__PORT=2222``),
  which is how the drills exercise the SSH path against a real sshd on loopback;
- docker / kubernetes targets: the ``inventory`` stack output of the Pulumi program, saved
  with ``pulumi stack output --json --show-secrets inventory > .state/<stack>/inventory.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from infra import services as catalogue
from infra.layout import LocalLayout
from infra.spec import StackSpec
from ops.errors import InventoryError
from ops.executors import Executor, executor


@dataclass
class Service:
    name: str
    kind: str
    host: str
    port: int | None
    executor: Executor
    data_dir: str | None = None
    run_as: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Inventory:
    spec: StackSpec
    services: dict[str, Service]
    state_dir: Path

    def get(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise InventoryError(f"no service {name!r} in stack {self.spec.name!r}; "
                                 f"known: {', '.join(sorted(self.services))}") from None

    def of_kind(self, kind: str) -> list[Service]:
        return [s for s in self.services.values() if s.kind == kind]

    @property
    def run_log(self) -> Path:
        return self.spec.ops.run_log or self.state_dir / "runlog.jsonl"


def _host_executor(spec: StackSpec, run_as: str | None) -> Executor:
    ssh = spec.ops.ssh
    if ssh is None:
        return executor("local", user=run_as)
    return executor("ssh", user=run_as, options={
        "host": ssh.host, "port": ssh.port, "login": ssh.login, "key_filename": ssh.key_filename,
        "connect_timeout": ssh.connect_timeout_s})


def load_inventory(spec: StackSpec) -> Inventory:
    if spec.target == "local":
        return _local_inventory(spec)
    return _output_inventory(spec)


def _local_inventory(spec: StackSpec) -> Inventory:
    import os
    import pwd

    from infra.local.privileges import SERVICE_USER
    layout = LocalLayout(spec)
    run_as = None
    if os.geteuid() == 0 or (spec.ops.ssh and spec.ops.ssh.login == "root"):
        try:
            pwd.getpwnam(SERVICE_USER)
            run_as = SERVICE_USER
        except KeyError:
            run_as = None
    ex = _host_executor(spec, run_as)
    services = {}
    for svc, m in catalogue.members(spec, "local"):
        ports = svc.port_defs(spec)
        services[m.name] = Service(m.name, svc.kind, spec.host,
                                   layout.ports[ports[0].endpoint(m.name)] if ports else None, ex,
                                   layout.data(m.name) if svc.data else None, run_as,
                                   {"supervisor_conf": layout.conf("supervisord.conf")})
    return Inventory(spec, services, layout.root)


def _output_inventory(spec: StackSpec) -> Inventory:
    path = spec.state_path / "inventory.json"
    if not path.exists():
        raise InventoryError(
            f"no inventory for stack {spec.name!r} at {path}; after `pulumi up -s {spec.name}` run "
            f"`pulumi stack output -s {spec.name} --json --show-secrets inventory > {path}`")
    doc = json.loads(path.read_text())
    kind = doc.get("executor")
    if kind not in ("docker", "kubectl"):
        raise InventoryError(f"{path}: executor {kind!r}; expected the Pulumi program's inventory output, "
                             "which names its executor (docker or kubectl)")
    services = {}
    for name, s in doc.get("services", {}).items():
        opts = {"container": s.get("container", name)} if kind == "docker" else {
            "pod": s.get("pod"), "selector": s.get("selector"),
            "namespace": s.get("namespace", spec.namespace), "container": s.get("container")}
        if kind == "kubectl" and not (opts["pod"] or opts["selector"]):
            raise InventoryError(f"{path}: service {name!r} names neither a pod nor a selector")
        services[name] = Service(name, s.get("kind", name.split("-")[0]), s.get("host", name),
                                 s.get("port"), executor(kind, options=opts), s.get("data_dir"),
                                 None, s)
    return Inventory(spec, services, spec.state_path)
