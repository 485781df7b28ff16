"""The stack's connections, and the production program's Kubernetes objects read as a cluster reads them.

The program runs under Pulumi's mock runtime (no cluster here). This module turns what it
declared into the questions a cluster answers: which pods a Service selects, which files a
container sees, which addresses it is given, which traffic a NetworkPolicy rule opens.
The checks that use it are in tests/infra/wiring_checks.py.

    links(spec)                  every connection: services.connections(spec) for Kubernetes
                                 plus SUPPLEMENT (what only this stack needs; belongs in the catalogue)
    capture(spec) -> Capture     the objects and their depends_on, from one mock run
    Cluster(capture)
    ├── Workload                 one pod template (Deployment, StatefulSet, Job, CronJob)
    ├── visible(w)               files its main container sees: ConfigMap and Secret volumes,
    │                            and what its init container copies into an emptyDir
    ├── held_secrets(w)          Secret values it gets by environment or as files
    ├── given_addresses(w)       host[:port]s in its command, environment, secrets, config files
    ├── discovered(w)            pods its Prometheus pod-discovery jobs keep
    ├── allowances()             (source, destination, port) every NetworkPolicy rule opens
    └── reads(w) / listeners(w)  paths its process opens; addresses it listens on

Trap: a Link's ``mode`` says what to demand of it. ``configured``: the source is given the
address. ``discovered``: it learns the address at run time (Sentinel names the Redis master).
``failover``: needed once roles swap (ops/ sets it up then): reachable, nothing configured now.
Trap: a process reaching its own single pod crosses no network; such self-links are neither
required nor forbidden.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import itertools
import re
import shlex
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import yaml
from pulumi.runtime import mocks as _mocks
from pulumi.runtime.sync_await import _sync_await

from infra import services
from infra.kubernetes.layout import CLUSTER_DOMAIN, KubernetesLayout
from infra.services import PG_PRIMARY, REDIS_PRIMARY, SLOTS, PortDef
from infra.spec import StackSpec
from testing.pulumi_mocks import RecordingMocks, Run, _Monitor
from tests.infra.conftest import k8s_objects

Key = tuple[str, str]
"""(kind, name) of a Kubernetes object."""

# -- the connections ---------------------------------------------------------------------------

INGRESS_CONTROLLER = "namespace:ingress-nginx"
"""The cluster's ingress-nginx (docs/pulumi.md, cluster prerequisites), as a NetworkPolicy peer."""

STANDINS = {"nginx": INGRESS_CONTROLLER}
"""Catalogue services the cluster provides: on Kubernetes the edge is ingress-nginx, not our Nginx."""

NOT_ON_KUBERNETES = {
    # Belongs in the catalogue (infra/services.py: node-exporter's targets and unavailable).
    "node-exporter": "needs host paths, which the namespace's restricted Pod Security forbids; "
                     "nodes are the cluster monitoring's job (docs/pulumi.md)",
}


@dataclass(frozen=True)
class Extra:
    """A connection the Kubernetes stack needs that the catalogue does not list."""

    source: str
    target: str
    port: PortDef | str
    """The target's catalogue port name, or a PortDef where the catalogue has none."""
    secret: str | None
    why: str


SUPPLEMENT: tuple[Extra, ...] = (
    # Each belongs in the catalogue (infra/services.py: connects_to, ports); listed here so the
    # checks hold the Kubernetes stack to them until they move there.
    Extra("migrate", PG_PRIMARY, "main", "postgres_owner",
          "the migration Job (python -m app migrate) writes the schema on the primary, as the owner role"),
    Extra("backup", "postgres-replica", "main", "postgres_reader",
          "the logical backup CronJob dumps from the replica (infra/components/backups.py)"),
)

FAILOVER = {(PG_PRIMARY, "postgres-replica"), ("postgres-replica", "postgres-replica"),
            (REDIS_PRIMARY, "redis-replica"), ("redis-replica", "redis-replica")}
"""Links needed only once roles have swapped."""

DISCOVERED = {
    ("backend", REDIS_PRIMARY): "Sentinel names the current master",
    ("backend", "redis-replica"): "Sentinel names the replicas",
    ("worker", REDIS_PRIMARY): "Sentinel names the current master",
    ("worker", "redis-replica"): "Sentinel names the replicas",
    ("sentinel", "redis-replica"): "a Sentinel learns the replicas from the master's INFO",
    ("sentinel", "sentinel"): "Sentinels find each other through the master's hello channel",
}
"""Links whose address the source learns at run time, so no object carries it."""

RELAYED = {
    ("prometheus", REDIS_PRIMARY): "redis-exporter",
    ("prometheus", "redis-replica"): "redis-exporter",
    ("prometheus", "sentinel"): "redis-exporter",
}
"""(holder, target) -> who connects: an address a workload is given only to pass on (Prometheus's
redis-nodes job hands each Redis node to the redis exporter's /scrape)."""

DNS = "namespace:kube-system/k8s-app=kube-dns"
EXTERNAL = {
    # (source catalogue service or "*", peer outside the namespace, port, protocol) -> why
    ("*", DNS, 53, "UDP"): "DNS",
    ("*", DNS, 53, "TCP"): "DNS",
    ("prometheus", "cidr:0.0.0.0/0", 443, "TCP"): "the Kubernetes API, for pod discovery",
    ("prometheus", "cidr:0.0.0.0/0", 6443, "TCP"): "the Kubernetes API, for pod discovery",
}
WEBHOOK = ("alertmanager", "cidr:0.0.0.0/0", 443, "TCP")
"""Allowed only when ``alertmanager.webhook_url`` is set: the receiver is outside the cluster."""

SECRET_KEYS = {
    # catalogue secret -> the stack secret that holds it (infra/components/secrets.py)
    "postgres_app": "postgres_password",
    "postgres_owner": "owner_password",
    "postgres_reader": "reader_password",
    "postgres_replication": "replication_password",
    "postgres_exporter": "exporter_password",
    "redis_app": "redis_password",
    "redis_replication": "redis_replication_password",
    "redis_sentinel": "redis_sentinel_password",
    "redis_exporter": "redis_exporter_password",
    "sentinel_auth": "sentinel_password",
}
KIND_SECRETS: dict[str, str] = {
    # Servers of these catalogue kinds authenticate every client on the container targets,
    # though the catalogue's connections say ``secret=None`` (none today: every connection to
    # Redis and the Sentinels names its user's secret).
}
DEFAULT_DATABASES = ("postgres",)
"""Databases initdb creates besides the application's."""


@dataclass(frozen=True)
class Link:
    """``source`` opens connections to ``target`` on ``port``, presenting ``secret``."""

    source: str
    target: str
    port: int
    secret: str | None
    mode: str = "configured"
    """configured | discovered | failover (see the module's Trap)."""

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}:{self.port}"

    @property
    def stack_secret(self) -> str | None:
        """The stack secret this link authenticates with (None: the server asks for none)."""
        if self.secret is not None:
            return SECRET_KEYS.get(self.secret, self.secret)
        kind = services.service(self.target).kind if self.target in services.SERVICES else ""
        return KIND_SECRETS.get(kind)


def _port_number(spec: StackSpec, target: str, port: PortDef | str) -> int:
    if isinstance(port, PortDef):
        return int(services.value(spec, port.key)) + port.offset
    defs = {p.name: p for p in services.service(target).port_defs(spec)}
    try:
        p = defs[port]
    except KeyError:
        raise KeyError(f"{target} has no port {port!r}; ports: {sorted(defs)}") from None
    return int(services.value(spec, p.key)) + p.offset


def on_kubernetes(name: str) -> bool:
    return name not in NOT_ON_KUBERNETES and (name not in services.SERVICES
                                              or services.service(name).runs_on("kubernetes"))


def links(spec: StackSpec) -> list[Link]:
    """Every connection of the Kubernetes stack: the catalogue's, then :data:`SUPPLEMENT`."""
    raw = [*services.connections(spec), *((e.source, e.target, e.port, e.secret) for e in SUPPLEMENT)]
    out = []
    for src, dst, port, secret in raw:
        if on_kubernetes(src) and on_kubernetes(dst):
            mode = "failover" if (src, dst) in FAILOVER else "discovered" if (src, dst) in DISCOVERED \
                else "configured"
            out.append(Link(src, dst, _port_number(spec, dst, port), secret, mode))
    return list(dict.fromkeys(out))


def secret_roles(spec: StackSpec) -> dict[str, str]:
    """Catalogue secret -> the PostgreSQL role it logs in as (the spec; the catalogue's exporter env)."""
    exporter = dict(services.service("postgres-exporter").env).get("DATA_SOURCE_USER", "exporter")
    return {"postgres_app": spec.postgres.user, "postgres_owner": spec.postgres.owner_user,
            "postgres_reader": spec.postgres.reader_user, "postgres_replication": spec.postgres.replication_user,
            "postgres_exporter": exporter}


# -- capturing the program ------------------------------------------------------------------------

class _DependencyMonitor(_Monitor):
    """Also records each resource's dependencies (``depends_on``), which the mocks API drops."""

    def RegisterResource(self, request):
        self.mocks.dependencies[(request.type, request.name)] = list(request.dependencies)  # type: ignore[attr-defined]
        return super().RegisterResource(request)


@dataclass
class Capture:
    """The Kubernetes objects one program run declared, and what each depends on."""

    spec: StackSpec
    objects: list[dict]
    dependencies: dict[Key, set[Key]]

    def copy(self) -> Capture:
        return Capture(self.spec, copy.deepcopy(self.objects), copy.deepcopy(self.dependencies))


def _key_of_urn(urn: str) -> Key:
    """``urn:pulumi:s::p::a$kubernetes:batch/v1:Job::migrate`` -> ("Job", "migrate")."""
    types, name = urn.split("::")[-2:]
    return types.rsplit("$", 1)[-1].rsplit(":", 1)[-1], name


def capture(spec: StackSpec) -> Capture:
    """Run the program for ``spec`` under mocks (as testing.pulumi_mocks.run does), keeping the
    Kubernetes objects and who depends on whom."""
    from infra.components.stack import build

    mocks = RecordingMocks()
    mocks.dependencies = {}  # type: ignore[attr-defined]
    pulumi.runtime.set_mocks(mocks, project="recon", stack=spec.name, preview=False,
                             monitor=_DependencyMonitor(mocks))
    _sync_await(_mocks.run_pulumi_func(lambda: build(spec)))
    deps = {(t.rsplit(":", 1)[-1], name): {_key_of_urn(u) for u in urns}
            for (t, name), urns in mocks.dependencies.items()}  # type: ignore[attr-defined]
    return Capture(spec, copy.deepcopy(k8s_objects(Run(spec, mocks.records, None))), deps)


@functools.cache
def baseline(stack: str = "production") -> Capture:
    """The committed stack's capture, once per process. Copy it (``.copy()``) before changing it."""
    from infra.spec import load_spec

    return capture(load_spec(stack))


# -- pods ---------------------------------------------------------------------------------------------

POD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def command_text(container: dict) -> str:
    return "\n".join([*container.get("command", []), *container.get("args", [])])


def probe_text(container: dict) -> str:
    return "\n".join(" ".join(container[p].get("exec", {}).get("command", [])) for p in PROBES if container.get(p))


@dataclass
class Workload:
    kind: str
    name: str
    obj: dict
    pod: dict
    replicas: int

    @property
    def labels(self) -> dict[str, str]:
        return self.pod["metadata"]["labels"]

    @property
    def main(self) -> dict:
        return self.pod["spec"]["containers"][0]

    @property
    def volumes(self) -> dict[str, dict]:
        return {v["name"]: v for v in self.pod["spec"].get("volumes", [])}

    def port_numbers(self) -> set[int]:
        return {p["containerPort"] for c in self.pod["spec"]["containers"] for p in c.get("ports", [])}

    def resolve_port(self, port: int | str) -> int | None:
        """A container port by number or name; None when the pod has no such port."""
        for c in self.pod["spec"]["containers"]:
            for p in c.get("ports", []):
                if port in (p["containerPort"], p.get("name")):
                    return p["containerPort"]
        return None

    def members(self) -> list[tuple[str, str | None]]:
        """(process name, its host) per pod, from the script's RECON_MEMBER lines."""
        found = re.findall(r"RECON_MEMBER=([\w.-]+)(?:[;\s]+RECON_MEMBER_HOST=([\w.-]+))?", command_text(self.main))
        return [(m, h or None) for m, h in found] or [(self.name, None)]


File = tuple[str, bool]
"""(content, came from a Secret)."""


class Cluster:
    """The objects of one capture, indexed by kind and name, with the questions the checks ask."""

    def __init__(self, cap: Capture):
        self.spec = cap.spec
        self.namespace = cap.spec.namespace
        self.dependencies = cap.dependencies
        self.by_kind: dict[str, dict[str, dict]] = defaultdict(dict)
        for obj in cap.objects:
            self.by_kind[obj["kind"]][obj["metadata"]["name"]] = obj
        self.workloads: dict[str, Workload] = {}
        for kind in POD_KINDS:
            for name, obj in sorted(self.by_kind[kind].items()):
                spec = obj["spec"]
                pod = spec["jobTemplate"]["spec"]["template"] if kind == "CronJob" else spec["template"]
                self.workloads[name] = Workload(kind, name, obj, pod, int(spec.get("replicas", 1)))
        layout = KubernetesLayout(cap.spec)
        self.roots = (layout.conf(""), layout.secret(""))
        """Where config and secret files are delivered: the paths whose reads are checked."""
        self.links = links(cap.spec)
        self._visible: dict[str, dict[str, File]] = {}

    # -- catalogue names <-> workloads and peers
    def workloads_of(self, service: str) -> list[Workload]:
        """The workloads that run a catalogue service (``backend`` -> backend-blue, backend-green)."""
        names = {service, *(f"{service}-{slot}" for slot in SLOTS)}
        return [w for w in self.workloads.values()
                if w.name in names or w.labels.get("app.kubernetes.io/name") == service]

    def service_of(self, w: Workload) -> str:
        for name in [*services.SERVICES, *(e.source for e in SUPPLEMENT)]:
            if w in self.workloads_of(name):
                return name
        return w.labels.get("app.kubernetes.io/name", w.name)

    def kind_of(self, w: Workload) -> str:
        name = self.service_of(w)
        return services.service(name).kind if name in services.SERVICES else name

    def pairs(self, link: Link) -> list[tuple[str, str]]:
        """(source peer, target workload) a link joins; the source may be a stand-in peer."""
        sources = [STANDINS[link.source]] if link.source in STANDINS else \
            [w.name for w in self.workloads_of(link.source)]
        return [(s, t.name) for s in sources for t in self.workloads_of(link.target)]

    @functools.cached_property
    def connected(self) -> set[tuple[str, str, int]]:
        """(source peer, target workload, port) of every link."""
        return {(s, t, link.port) for link in self.links for s, t in self.pairs(link)}

    def pods_selected(self, selector: dict[str, str]) -> list[Workload]:
        return [w for w in self.workloads.values() if selects(selector, w.labels)]

    def single_pod_self(self, source: str, target: str) -> bool:
        return source == target and source in self.workloads and self.workloads[source].replicas == 1

    # -- secrets and environment
    def secret_data(self, name: str) -> dict[str, str] | None:
        secret = self.by_kind["Secret"].get(name)
        return None if secret is None else {**secret.get("data", {}), **secret.get("stringData", {})}

    def stack_secret(self, key: str) -> str | None:
        """A key's value in any Secret of the stack (there is one)."""
        return next((d[key] for n in self.by_kind["Secret"] if key in (d := self.secret_data(n) or {})), None)

    def env(self, w: Workload, secrets: bool = True) -> dict[str, str]:
        """The main container's environment with secretKeyRefs resolved (only those, if not ``secrets``)."""
        out = {}
        for e in w.main.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and (value := (self.secret_data(ref["name"]) or {}).get(ref["key"])) is not None:
                out[e["name"]] = value
            elif "value" in e and secrets:
                out[e["name"]] = str(e["value"])
        return out

    def held_secrets(self, w: Workload) -> list[str]:
        """Secret values w's main container gets, by environment or as files."""
        return [*self.env(w, secrets=False).values(), *(c for c, secret in self.visible(w).values() if secret)]

    # -- files
    def volume_files(self, volume: dict) -> dict[str, File]:
        """rel path -> file of a configMap or secret volume (missing keys are left out)."""
        if "configMap" in volume:
            ref, data, secret = volume["configMap"], self.by_kind["ConfigMap"].get(
                volume["configMap"]["name"], {}).get("data", {}), False
        elif "secret" in volume:
            ref, data, secret = volume["secret"], self.secret_data(volume["secret"]["secretName"]) or {}, True
        else:
            return {}
        if ref.get("items") is None:
            return {k: (v, secret) for k, v in data.items()}
        return {i["path"]: (data[i["key"]], secret) for i in ref["items"] if i["key"] in data}

    def copies(self, w: Workload, init: dict) -> tuple[list[tuple[str, str, File]], list[str]]:
        """([(emptyDir volume, rel path, file)], [copies that fail]) for each ``cp SRC DST`` in
        an init container's script."""
        sources: dict[str, File] = {}
        targets: list[tuple[str, str]] = []
        for m in init.get("volumeMounts", []):
            v = w.volumes.get(m["name"], {})
            if "emptyDir" in v:
                targets.append((m["mountPath"].rstrip("/"), m["name"]))
            for rel, f in self.volume_files(v).items():
                sources[f"{m['mountPath'].rstrip('/')}/{rel}"] = f
        done, failed = [], []
        for part in (p for line in command_text(init).splitlines() for p in line.split("&&")):
            words = shlex.split(part)
            if words[:1] != ["cp"]:
                continue
            src, dst = [x for x in words[1:] if not x.startswith("-")][-2:]
            into = [(vol, dst[len(mount) + 1:]) for mount, vol in targets if dst.startswith(mount + "/")]
            if src not in sources or not into:
                failed.append(f"cp {src} {dst}")
            else:
                done += [(vol, rel, sources[src]) for vol, rel in into]
        return done, failed

    def visible(self, w: Workload) -> dict[str, File]:
        """Path -> file of everything w's main container sees from its volumes."""
        if w.name not in self._visible:
            filled: dict[str, dict[str, File]] = defaultdict(dict)
            for init in w.pod["spec"].get("initContainers", []):
                for vol, rel, f in self.copies(w, init)[0]:
                    filled[vol][rel] = f
            out: dict[str, File] = {}
            for m in w.main.get("volumeMounts", []):
                v = w.volumes.get(m["name"], {})
                for rel, f in (filled[m["name"]] if "emptyDir" in v else self.volume_files(v)).items():
                    if not m.get("subPath"):
                        out[f"{m['mountPath'].rstrip('/')}/{rel}"] = f
                    elif rel == m["subPath"]:
                        out[m["mountPath"]] = f
            self._visible[w.name] = out
        return self._visible[w.name]

    # -- addresses
    def given_addresses(self, w: Workload) -> list[Address]:
        """Every address w's main container is given: command, environment, secrets, config files."""
        ns = self.namespace
        out = addresses_in(command_text(w.main), "command", ns)
        env = self.env(w)
        for name, value in env.items():
            out += addresses_in(value, f"env {name}", ns)
            if name.endswith("_HOST") and f"{name[:-5]}_PORT" in env:  # RECON_PRIMARY_HOST + _PORT
                out += addresses_in(f"{value}:{env[name[:-5] + '_PORT']}", f"env {name}", ns)
        for path, (content, _) in sorted(self.visible(w).items()):
            out += addresses_in(content, path, ns)
        return out

    def resolve(self, a: Address) -> tuple[list[Workload], str | None]:
        """(workloads an address reaches, the problem with it, if any)."""
        suffix = f".{self.namespace}.{CLUSTER_DOMAIN}"
        if not a.host.endswith(suffix):
            webhook = urlsplit(self.spec.alertmanager.webhook_url or "").hostname
            ok = a.host in ("localhost", "127.0.0.1") or a.host == webhook
            return [], None if ok else f"host {a.host} is not a name in namespace {self.namespace}"
        parts = a.host[: -len(suffix)].split(".")
        svc = self.by_kind["Service"].get(parts[-1])
        if svc is None or len(parts) > 2:
            return [], f"{a.host}: no Service {parts[-1]!r}"
        selected = self.pods_selected(svc["spec"].get("selector", {}))
        if len(parts) == 2:  # <pod>.<headless service>
            pods = {f"{w.name}-{i}": w for w in selected if w.kind == "StatefulSet"
                    and w.obj["spec"].get("serviceName") == parts[-1] for i in range(w.replicas)}
            if svc["spec"].get("clusterIP") != "None" or parts[0] not in pods:
                return [], f"{a.host}: no pod {parts[0]!r} behind headless Service {parts[-1]!r}"
            if a.port is not None and a.port not in pods[parts[0]].port_numbers():
                return [pods[parts[0]]], f"{a.host}:{a.port}: pod {parts[0]} has no container port {a.port}"
            return [pods[parts[0]]], None
        if not selected:
            return [], f"{a.host}: Service {parts[-1]!r} selects no pods"
        if a.port is not None and a.port not in {p["port"] for p in svc["spec"].get("ports", [])}:
            return selected, f"{a.host}:{a.port}: Service {parts[-1]!r} has no port {a.port}"
        return selected, None

    def discovered(self, w: Workload) -> list[tuple[Workload | None, int, str]]:
        """(workload, port, job) each Prometheus pod-discovery job in w's config keeps;
        (None, -1, problem) for a job that keeps nothing."""
        out: list[tuple[Workload | None, int, str]] = []
        for job in self.discovery_jobs(w):
            sd = job["kubernetes_sd_configs"]
            if any(s.get("role") != "pod" or self.namespace not in s.get("namespaces", {}).get("names", [])
                   for s in sd):
                out.append((None, -1, f"job {job['job_name']} does not discover pods in {self.namespace}"))
                continue
            kept = _kept(self, job)
            out += kept or [(None, -1, f"job {job['job_name']} discovers no pods")]
        return out

    def discovery_jobs(self, w: Workload) -> list[dict]:
        out = []
        for path, (content, _) in sorted(self.visible(w).items()):
            doc = yaml.safe_load(content) if path.endswith((".yml", ".yaml")) else None
            if isinstance(doc, dict):
                out += [j for j in doc.get("scrape_configs") or [] if j.get("kubernetes_sd_configs")]
        return out

    # -- NetworkPolicy
    @functools.cached_property
    def allowances(self) -> list[Allowance]:
        """Every (source, destination, port) some NetworkPolicy rule opens."""
        out = []
        for name, pol in sorted(self.by_kind["NetworkPolicy"].items()):
            sel = (pol["spec"].get("podSelector") or {}).get("matchLabels", {})
            selected = sorted(self.workloads) if not sel else [w.name for w in self.pods_selected(sel)]
            for direction, peers_key in (("ingress", "from"), ("egress", "to")):
                for rule in pol["spec"].get(direction, []):
                    peers = [p for peer in rule.get(peers_key, [{"ipBlock": {"cidr": "0.0.0.0/0"}}])
                             for p in self._peer_names(peer)]
                    for me in selected:
                        for other in peers:
                            src, dst = (other, me) if direction == "ingress" else (me, other)
                            for port in rule.get("ports", [{"port": None}]):
                                number = port.get("port")
                                if isinstance(number, str):
                                    number = self.workloads[dst].resolve_port(number) if dst in self.workloads else None
                                out.append(Allowance(direction, name, src, dst, number, port.get("protocol", "TCP")))
        return out

    def _peer_names(self, peer: dict) -> list[str]:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            return [f"cidr:{block['cidr']}" + (f" except {block['except']}" if block.get("except") else "")]
        pods = (peer.get("podSelector") or {}).get("matchLabels", {})
        if "namespaceSelector" in peer:
            ns = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name", "*")
            if ns != self.namespace:
                labels = ",".join(f"{k}={v}" for k, v in sorted(pods.items()))
                return [f"namespace:{ns}" + (f"/{labels}" if labels else "")]
        if not pods:
            return sorted(self.workloads)  # {} selects every pod
        return [w.name for w in self.pods_selected(pods)]

    def isolated(self, w: str, policy_type: str) -> bool:
        """Whether some NetworkPolicy of that type selects w's pods (then only rules let traffic through)."""
        for pol in self.by_kind["NetworkPolicy"].values():
            sel = (pol["spec"].get("podSelector") or {}).get("matchLabels", {})
            if policy_type in pol["spec"].get("policyTypes", []) and (not sel or selects(sel, self.workloads[w].labels)):
                return True
        return False

    def external_ok(self, a: Allowance) -> bool:
        table = {**EXTERNAL, **({WEBHOOK: "the alert webhook"} if self.spec.alertmanager.webhook_url else {})}
        src = self.service_of(self.workloads[a.source]) if a.source in self.workloads else a.source
        return any((who, a.destination, a.port, a.protocol) in table for who in (src, "*"))

    # -- what a process opens and where it listens
    def reads(self, w: Workload) -> dict[str, list[tuple[str, str]]]:
        """Member -> (path, where it is named) of every path under the config and secret roots
        w's main container is told to open (per member: scripts name ``$RECON_MEMBER``'s files)."""
        env, files = self.env(w), self.visible(w)
        out = {}
        for member, host in w.members():
            variables = {**env, "RECON_MEMBER": member, **({"RECON_MEMBER_HOST": host} if host else {})}
            script = expand(command_text(w.main) + "\n" + probe_text(w.main), variables)
            found = [(p, "command") for p in paths_in(script, self.roots)]
            found += [(p, f"env {k}") for k, v in env.items() for p in paths_in(v, self.roots)]
            found += [(p, f) for f, (content, _) in files.items() for p in paths_in(content, self.roots)]
            out[member] = found
        return out

    def listeners(self, w: Workload) -> list[tuple[str, int]]:
        """(address, port) w's main process listens on, from its flags, environment and config."""
        c, env = w.main, self.env(w)
        argv = [*c.get("command", []), *c.get("args", [])]
        out = [(h, int(p)) for h, p in re.findall(r"(?:listen-address|host-port)=([^\s:]*):(\d+)", "\n".join(argv))]
        for flag, value in itertools.pairwise(argv):  # -web.listen-address 0.0.0.0:9121
            if re.fullmatch(r"-{1,2}[\w.-]*(?:listen-address|host-port)", flag) and re.fullmatch(r"[^\s:]*:\d+", value):
                out.append((value.rpartition(":")[0], int(value.rpartition(":")[2])))
        if "--port" in argv:
            out.append((argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1",
                        int(argv[argv.index("--port") + 1])))
        out += [(v.rpartition(":")[0], int(v.rpartition(":")[2])) for k, v in env.items()
                if k.endswith("_LISTEN_ADDRESS") and re.fullmatch(r"[^\s:]*:\d+", v)]
        if "GF_SERVER_HTTP_PORT" in env:
            out.append((env.get("GF_SERVER_HTTP_ADDR", ""), int(env["GF_SERVER_HTTP_PORT"])))
        if "RECON_WORKER_METRICS_PORT" in env:
            out.append((env.get("RECON_WORKER_METRICS_HOST", app_setting_default("worker_metrics_host")),
                        int(env["RECON_WORKER_METRICS_PORT"])))
        for content, _ in self.visible(w).values():  # postgresql.conf, redis.conf, sentinel.conf
            port = re.search(r"^port\s*=?\s*(\d+)", content, re.MULTILINE)
            if port:
                bind = re.search(r"^(?:bind|listen_addresses\s*=)\s*'*([^'\n]*)", content, re.MULTILINE)
                out.append((bind.group(1).split()[0] if bind else "127.0.0.1", int(port.group(1))))
        return out


def _kept(cl: Cluster, job: dict) -> list[tuple[Workload | None, int, str]]:
    """Pods (and the port) a pod-discovery job keeps: its ``keep`` relabels on pod labels and
    on the container port's name."""
    labels, port_name = {}, None
    for r in job.get("relabel_configs", []):
        if r.get("action") == "keep":
            (source,) = r["source_labels"]
            if source == "__meta_kubernetes_pod_container_port_name":
                port_name = r["regex"]
            elif source.startswith("__meta_kubernetes_pod_label_"):
                labels[source.removeprefix("__meta_kubernetes_pod_label_")] = r["regex"]
    out: list[tuple[Workload | None, int, str]] = []
    for w in cl.workloads.values():
        sanitized = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in w.labels.items()}
        port = w.resolve_port(port_name) if port_name else None
        if w.kind in ("Deployment", "StatefulSet") and port is not None and \
                all(sanitized.get(k) == v for k, v in labels.items()):
            out.append((w, port, f"job {job['job_name']}"))
    return out


def app_setting_default(name: str) -> str:
    """The app's default for a setting (app/settings.py), e.g. the worker's metrics bind address."""
    from app.settings import Settings

    return str(Settings.model_fields[name].default)


def app_variables() -> set[str]:
    """Every environment variable the app's settings read (RECON_<FIELD>)."""
    from app.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


# -- addresses ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    host: str
    port: int | None
    origin: str
    path: str = ""
    """The first path segment after host:port (a DSN's database)."""


URL = re.compile(r"\b(?:https?|redis|rediss|postgres|postgresql)://(?:[^@/\s]*@)?(?P<host>[^/:?\s'\"]+)")


def addresses_in(text: str, origin: str, namespace: str) -> list[Address]:
    """Cluster names with their port in any of the forms configs write them (``host:port``,
    ``host port``, ``host=h port=p``), and the hosts of URLs that are not cluster names."""
    host = rf"(?P<host>[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\.{re.escape(namespace)}\.{re.escape(CLUSTER_DOMAIN)})"
    port = r"(?::(?P<p1>\d+)(?:/(?P<path>[\w-]+))?|[ \t]+(?P<p2>\d+)\b| port=(?P<p3>\d+))?"
    out = []
    for m in re.finditer(host + port, text):
        number = m.group("p1") or m.group("p2") or m.group("p3")
        out.append(Address(m.group("host"), int(number) if number else None, origin, m.group("path") or ""))
    for m in URL.finditer(text):
        if not m.group("host").endswith(f".{namespace}.{CLUSTER_DOMAIN}"):
            out.append(Address(m.group("host"), None, origin))
    return out


@dataclass(frozen=True)
class Allowance:
    """One (source, destination, port) a NetworkPolicy rule opens; a peer is a workload name,
    or ``namespace:<ns>[/<labels>]`` / ``cidr:<block>`` outside the namespace."""

    direction: str
    policy: str
    source: str
    destination: str
    port: int | None
    protocol: str


# -- shell and paths ----------------------------------------------------------------------------------

def expand(text: str, variables: dict[str, str]) -> str:
    """``text`` with shell variables filled in, line by line, following simple assignments
    (``n="${RECON_MEMBER##*-}"``); ``#``, ``##``, ``%``, ``%%`` trims are applied; anything not
    known becomes ``*``."""
    known = dict(variables)

    def one(m: re.Match) -> str:
        name, op = m.group(1) or m.group(3), m.group(2) or ""
        if name not in known:
            return "*"
        value, trim = known[name], re.fullmatch(r"(##|#|%%|%)(.+)", op)
        if not op or not trim:
            return value if not op else "*"
        kind, pattern = trim.groups()
        cuts = range(len(value) + 1)
        if kind.startswith("#"):
            hits = [i for i in cuts if fnmatch.fnmatchcase(value[:i], pattern)]
            return value[(max(hits) if kind == "##" else min(hits)):] if hits else value
        hits = [i for i in cuts if fnmatch.fnmatchcase(value[i:], pattern)]
        return value[:(min(hits) if kind == "%%" else max(hits))] if hits else value

    out = []
    for line in text.splitlines():
        line = re.sub(r"\$\{(\w+)([^}]*)\}|\$(\w+)", one, line)
        m = re.fullmatch(r"\s*(\w+)=(\"?)([^\"\s;]*)\2\s*", line)
        if m and m.group(1) not in variables:
            known[m.group(1)] = m.group(3)
        out.append(line)
    return "\n".join(out)


def paths_in(text: str, roots: Iterable[str]) -> set[str]:
    alt = "|".join(re.escape(r.rstrip("/")) for r in roots)
    return {m.rstrip("/.") for m in re.findall(rf"(?:{alt})(?=[/\s'\"]|$)(?:/[\w.*-]+)*", text)}


def covers(path: str, file: str) -> bool:
    """A path read covers a file: the file itself, a directory above it, or a glob matching it."""
    return file == path or file.startswith(path + "/") or fnmatch.fnmatchcase(file, path)
