"""Hardening rules over declared resources: plain functions, shared by pytest and CrossGuard.

A rule takes :class:`Declared` resources (type token, name, input properties as the engine
sees them: camelCase keys, secrets unwrapped) and returns :class:`Violation` s. The same
functions run

* in tests/infra over every resource the program declares under Pulumi's mock runtime, and
* in the CrossGuard pack (infra/policy/__main__.py) during ``pulumi preview --policy-pack``.

Stdlib only, so the policy pack's virtualenv needs nothing but pulumi-policy.

    RESOURCE_RULES   one resource at a time
    ├── k8s-pod-security        non-root, no escalation, drop ALL, seccomp, read-only root, no host*
    ├── k8s-resources           requests and limits on every container
    ├── k8s-probes              liveness and readiness on every long-running container
    ├── k8s-image-pinned        a tag, never ``latest``
    ├── k8s-secret-env          secret-looking variables come from a Secret (valueFrom)
    ├── docker-hardening        user, drop ALL, no-new-privileges, read-only root, limits
    ├── docker-healthcheck      every long-running container has a health check
    ├── docker-published-ports  only the edge publishes to the world; no data port at all
    └── docker-internal-tiers   back and data networks have no route out
    STACK_RULES      all resources together
    ├── k8s-pdb                 a PDB for every role with more than one pod, none otherwise
    ├── k8s-network-policy      default deny, and every workload has its own allow policy
    └── no-plaintext-secret     a known secret value appears only in Secrets / secret inputs

Exemptions are explicit and carry their reason: a Docker label
``recon.policy.exempt.<rule>`` or a Kubernetes annotation ``policy.recon/exempt-<rule>``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

K8S_POD_OWNERS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
}
LONG_RUNNING = {"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:DaemonSet"}
DOCKER_CONTAINER = "docker:index/container:Container"
DOCKER_NETWORK = "docker:index/network:Network"
SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|_DSN$|DATABASE_URL|DATABASE_REPLICA_URL|DATA_SOURCE_NAME)")
EDGE_ROLES = {"nginx"}
DATA_ROLES = {"postgres", "redis", "sentinel"}
SECRET_TYPES = {"kubernetes:core/v1:Secret", "random:index/randomPassword:RandomPassword",
                "tls:index/privateKey:PrivateKey", "tls:index/selfSignedCert:SelfSignedCert"}


@dataclass(frozen=True)
class Declared:
    type: str
    name: str
    props: dict[str, Any]
    secret_paths: frozenset[str] = field(default_factory=frozenset)
    """Dotted paths of inputs the program marked secret (known under mocks; empty otherwise)."""


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource}: {self.message}"


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _k8s_exempt(r: Declared, rule: str) -> bool:
    ann = _get(r.props, "metadata", "annotations") or {}
    return bool(ann.get(f"policy.recon/exempt-{rule}"))


def _docker_labels(r: Declared) -> dict[str, str]:
    return {lab.get("label"): lab.get("value") for lab in (r.props.get("labels") or []) if isinstance(lab, dict)}


def _docker_exempt(r: Declared, rule: str) -> bool:
    return bool(_docker_labels(r).get(f"recon.policy.exempt.{rule}"))


def pod_spec(r: Declared) -> dict | None:
    path = K8S_POD_OWNERS.get(r.type)
    if not path:
        return None
    return _get(r.props, *path, "spec")


def _containers(spec: dict) -> Iterator[tuple[str, dict]]:
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            yield kind, c


def _label(r: Declared) -> str:
    return f"{r.type.split(':')[-1]} {r.name}"


# -- Kubernetes, per resource --------------------------------------------------------------

def k8s_pod_security(r: Declared) -> list[Violation]:
    spec = pod_spec(r)
    if spec is None or _k8s_exempt(r, "k8s-pod-security"):
        return []
    out = []
    v = lambda msg: out.append(Violation("k8s-pod-security", _label(r), msg))  # noqa: E731
    psc = spec.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        v("pod securityContext.runAsNonRoot is not true")
    if _get(psc, "seccompProfile", "type") != "RuntimeDefault":
        v("pod seccompProfile is not RuntimeDefault")
    if psc.get("runAsUser") == 0:
        v("pod runs as uid 0")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            v(f"{key} is true")
    for vol in spec.get("volumes") or []:
        if "hostPath" in vol:
            v(f"volume {vol.get('name')!r} is a hostPath")
    for kind, c in _containers(spec):
        sc = c.get("securityContext") or {}
        name = f"{kind[:-1]} {c.get('name')!r}"
        if sc.get("allowPrivilegeEscalation") is not False:
            v(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            v(f"{name}: privileged")
        if "ALL" not in (_get(sc, "capabilities", "drop") or []):
            v(f"{name}: capabilities do not drop ALL")
        if _get(sc, "capabilities", "add"):
            v(f"{name}: adds capabilities {_get(sc, 'capabilities', 'add')}")
        if sc.get("readOnlyRootFilesystem") is not True:
            v(f"{name}: root filesystem is writable")
        if sc.get("runAsUser") == 0:
            v(f"{name}: runs as uid 0")
    return out


def k8s_resources(r: Declared) -> list[Violation]:
    spec = pod_spec(r)
    if spec is None:
        return []
    out = []
    for kind, c in _containers(spec):
        res = c.get("resources") or {}
        for section in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if not _get(res, section, what):
                    out.append(Violation("k8s-resources", _label(r),
                                         f"{kind[:-1]} {c.get('name')!r} has no {section}.{what}"))
    return out


def k8s_probes(r: Declared) -> list[Violation]:
    spec = pod_spec(r)
    if spec is None or r.type not in LONG_RUNNING:
        return []
    out = []
    for c in spec.get("containers") or []:
        for probe in ("livenessProbe", "readinessProbe"):
            if not c.get(probe):
                out.append(Violation("k8s-probes", _label(r), f"container {c.get('name')!r} has no {probe}"))
    return out


def k8s_image_pinned(r: Declared) -> list[Violation]:
    spec = pod_spec(r)
    if spec is None:
        return []
    out = []
    for kind, c in _containers(spec):
        image = str(c.get("image") or "")
        tail = image.rsplit("/", 1)[-1]
        if "@sha256:" not in image and (":" not in tail or tail.endswith(":latest")):
            out.append(Violation("k8s-image-pinned", _label(r), f"{kind[:-1]} {c.get('name')!r}: image "
                                                                 f"{image!r} has no pinned tag"))
    return out


def k8s_secret_env(r: Declared) -> list[Violation]:
    spec = pod_spec(r)
    if spec is None:
        return []
    out = []
    for kind, c in _containers(spec):
        for e in c.get("env") or []:
            if SECRET_ENV.search(e.get("name", "")) and "value" in e and not _names_a_file(e):
                out.append(Violation("k8s-secret-env", _label(r),
                                     f"{kind[:-1]} {c.get('name')!r}: {e['name']} is a literal value, "
                                     "not a secretKeyRef"))
    return out


def _names_a_file(env: dict) -> bool:
    """``REDIS_PASSWORD_FILE=/etc/recon/secrets/...``: a path to a mounted secret, not a secret."""
    return env["name"].endswith("_FILE") and str(env.get("value", "")).startswith("/")


# -- Docker, per resource -------------------------------------------------------------------

def docker_hardening(r: Declared) -> list[Violation]:
    if r.type != DOCKER_CONTAINER:
        return []
    p, out = r.props, []
    v = lambda msg: out.append(Violation("docker-hardening", _label(r), msg))  # noqa: E731
    user = str(p.get("user") or "")
    if not user or user.split(":")[0] in ("0", "root"):
        v(f"runs as {user or 'the image default user'!r}, not an explicit non-root uid")
    if "ALL" not in (_get(p, "capabilities", "drops") or []):
        v("capabilities do not drop ALL")
    if _get(p, "capabilities", "adds"):
        v("adds capabilities")
    if "no-new-privileges:true" not in (p.get("securityOpts") or []):
        v("no-new-privileges is not set")
    if p.get("privileged"):
        v("privileged")
    if p.get("readOnly") is not True and not _docker_exempt(r, "docker-read-only"):
        v("root filesystem is writable")
    if not p.get("memory") or not p.get("cpus"):
        v("no memory or cpu limit")
    if p.get("networkMode") == "host" or p.get("pidMode") == "host" or p.get("ipcMode") == "host":
        v("shares a host namespace")
    return out


def docker_healthcheck(r: Declared) -> list[Violation]:
    if r.type != DOCKER_CONTAINER or r.props.get("mustRun") is False:
        return []
    if r.props.get("healthcheck") or _docker_exempt(r, "docker-healthcheck"):
        return []
    return [Violation("docker-healthcheck", _label(r), "long-running container without a health check "
                                                       "(or a recon.policy.exempt.docker-healthcheck reason)")]


def docker_published_ports(r: Declared) -> list[Violation]:
    if r.type != DOCKER_CONTAINER:
        return []
    role = _docker_labels(r).get("recon.role", "")
    out = []
    for port in r.props.get("ports") or []:
        ip = port.get("ip") or "0.0.0.0"
        if role in DATA_ROLES:
            out.append(Violation("docker-published-ports", _label(r),
                                 f"data service {role!r} publishes port {port.get('internal')} to the host"))
        elif role not in EDGE_ROLES and ip not in ("127.0.0.1", "::1"):
            out.append(Violation("docker-published-ports", _label(r),
                                 f"port {port.get('internal')} is published on {ip}; only the edge "
                                 f"({sorted(EDGE_ROLES)}) may listen beyond 127.0.0.1"))
    if r.props.get("publishAllPorts"):
        out.append(Violation("docker-published-ports", _label(r), "publish_all_ports is on"))
    return out


def docker_internal_tiers(r: Declared) -> list[Violation]:
    if r.type != DOCKER_NETWORK:
        return []
    name = str(r.props.get("name") or r.name)
    if (name.endswith("-back") or name.endswith("-data")) and r.props.get("internal") is not True:
        return [Violation("docker-internal-tiers", _label(r), f"network {name!r} is not internal")]
    return []


RESOURCE_RULES: dict[str, Callable[[Declared], list[Violation]]] = {
    "k8s-pod-security": k8s_pod_security,
    "k8s-resources": k8s_resources,
    "k8s-probes": k8s_probes,
    "k8s-image-pinned": k8s_image_pinned,
    "k8s-secret-env": k8s_secret_env,
    "docker-hardening": docker_hardening,
    "docker-healthcheck": docker_healthcheck,
    "docker-published-ports": docker_published_ports,
    "docker-internal-tiers": docker_internal_tiers,
}


# -- the whole stack ------------------------------------------------------------------------------

def _replicas(r: Declared) -> int:
    value = _get(r.props, "spec", "replicas")
    return 1 if value is None else int(value)


def k8s_pdb(resources: Iterable[Declared]) -> list[Violation]:
    resources = list(resources)
    pods_by_role: dict[str, int] = defaultdict(int)
    for r in resources:
        if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"):
            role = _get(r.props, "spec", "template", "metadata", "labels", "app.kubernetes.io/name")
            pods_by_role[role] += _replicas(r)
    pdb_roles: dict[str, str] = {}
    for r in resources:
        if r.type == "kubernetes:policy/v1:PodDisruptionBudget":
            role = _get(r.props, "spec", "selector", "matchLabels", "app.kubernetes.io/name")
            pdb_roles[role] = r.name
    out = []
    for role, pods in sorted(pods_by_role.items()):
        if pods > 1 and role not in pdb_roles:
            out.append(Violation("k8s-pdb", f"role {role}", f"{pods} pods and no PodDisruptionBudget"))
        if pods <= 1 and role in pdb_roles:
            out.append(Violation("k8s-pdb", f"role {role}", "one pod and a PodDisruptionBudget: it would "
                                                            "block every node drain"))
    for role, name in sorted(pdb_roles.items()):
        if role not in pods_by_role:
            out.append(Violation("k8s-pdb", f"PodDisruptionBudget {name}", f"selects no workload (role {role!r})"))
    return out


def k8s_network_policy(resources: Iterable[Declared]) -> list[Violation]:
    resources = list(resources)
    workloads = [r for r in resources if r.type in K8S_POD_OWNERS]
    if not workloads:
        return []
    policies = [r for r in resources if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"]
    out = []
    deny = [p for p in policies if _get(p.props, "spec", "podSelector") in ({}, None)
            and set(_get(p.props, "spec", "policyTypes") or []) == {"Ingress", "Egress"}
            and not _get(p.props, "spec", "ingress") and not _get(p.props, "spec", "egress")]
    if not deny:
        out.append(Violation("k8s-network-policy", "namespace", "no default-deny NetworkPolicy "
                                                                "(empty podSelector, Ingress and Egress, no rules)"))
    selected = set()
    for p in policies:
        labels = _get(p.props, "spec", "podSelector", "matchLabels") or {}
        if labels.get("recon/workload"):
            selected.add(labels["recon/workload"])
    for w in workloads:
        name = _get(w.props, "metadata", "name") or w.name
        tmpl = _get(w.props, *K8S_POD_OWNERS[w.type], "metadata", "labels") or {}
        if tmpl.get("recon/workload") not in selected:
            out.append(Violation("k8s-network-policy", _label(w), f"workload {name!r} has no NetworkPolicy of its "
                                                                  "own: under default deny it can reach nothing"))
    return out


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def no_plaintext_secret(resources: Iterable[Declared], secret_values: Iterable[str] = ()) -> list[Violation]:
    """A known secret value may appear only in a Secret, or in an input marked secret.

    Under mocks ``secret_values`` are the stack's secrets and ``secret_paths`` are known, so
    a secret copied into a ConfigMap, a label, a plain env value or a non-secret input is
    caught. In CrossGuard the values are unknown and only the env-name rules apply.
    """
    values = [s for s in secret_values if s and len(s) >= 8]
    out = []
    for r in resources:
        if r.type in SECRET_TYPES or r.type.startswith("recon:"):
            continue
        for path, text in _walk(r.props):
            if any(path == p or path.startswith(p + ".") or path.startswith(p + "[") for p in r.secret_paths):
                continue
            for s in values:
                if s in text:
                    out.append(Violation("no-plaintext-secret", _label(r),
                                         f"a stack secret appears in plain input {path!r}"))
                    break
    return out


def stack_rules(secret_values: Iterable[str] = ()) -> dict[str, Callable[[list[Declared]], list[Violation]]]:
    values = list(secret_values)
    return {
        "k8s-pdb": k8s_pdb,
        "k8s-network-policy": k8s_network_policy,
        "no-plaintext-secret": lambda rs: no_plaintext_secret(rs, values),
    }


def check(resources: Iterable[Declared], secret_values: Iterable[str] = ()) -> list[Violation]:
    """Every rule over every resource; the list is empty when the stack is compliant."""
    resources = list(resources)
    out: list[Violation] = []
    for r in resources:
        for rule in RESOURCE_RULES.values():
            out += rule(r)
    for rule in stack_rules(secret_values).values():
        out += rule(resources)
    return out
