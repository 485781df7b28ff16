"""The wiring checks: every connection of the stack is carried by the production objects, and
nothing else is.

    CHECKS          name -> check(cluster) -> problems (sorted strings, one per fault)
    ├── services    each link's target pods are selected by a Service on the link's port;
    │               every Service selects pods, and its target ports exist on them
    ├── network     each link is allowed at both ends by NetworkPolicy, and every allowance is a
    │               link (or DNS, the Kubernetes API, the alert webhook); every pod is isolated
    ├── addresses   every address a container is given (command, environment, secrets, config,
    │               pod discovery) resolves and is a link; each configured link's source is given
    │               its target's address; the edge's Ingresses route to every backend
    ├── credentials each link carries the secret it authenticates with: the server is given it,
    │               the source holds it, as its role; every DSN names a role and a database that exist
    ├── references  secretKeyRefs, configMap/secret volume items and init copies name what exists
    ├── files       every path a process reads is mounted in its container; every mounted file is read
    ├── listeners   every container port has a process listening on a pod address; probes ask ports
    ├── environment every variable given to a container is one its program reads
    └── rollout     HPAs scale what exists; Ingresses name Service ports that exist; every workload
                    running the app starts after its version's migration Job, which Pulumi awaits

Trap: the checks read the declared objects, never the components' Workloads. A bug the
components and the platform agree on (both say port 5433) is still caught where it meets a fact
outside them: the spec's port in a config file, the app's settings, the catalogue's connections.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

from infra import services
from infra.services import PG_PRIMARY
from tests.infra.wiring import (
    DEFAULT_DATABASES,
    DNS,
    EXTERNAL,
    RELAYED,
    SECRET_KEYS,
    STANDINS,
    Capture,
    Cluster,
    Workload,
    app_variables,
    command_text,
    covers,
    probe_text,
    secret_roles,
    selects,
)

Problems = list[str]


def _done(problems: Iterable[str]) -> Problems:
    return sorted(set(problems))


def check_services(cl: Cluster) -> Problems:
    out = []
    for link in cl.links:
        targets = cl.workloads_of(link.target)
        if not targets:
            out.append(f"{link}: no workload runs {link.target}")
        for t in targets:
            if not any(selects(s["spec"].get("selector", {}), t.labels)
                       and any(p["port"] == link.port and t.resolve_port(p.get("targetPort", p["port"])) is not None
                               for p in s["spec"].get("ports", []))
                       for s in cl.by_kind["Service"].values()):
                out.append(f"{link}: no Service selects {t.name}'s pods on port {link.port}")
    for name, s in sorted(cl.by_kind["Service"].items()):
        selected = cl.pods_selected(s["spec"].get("selector", {}))
        if not selected:
            out.append(f"Service {name}: selector {s['spec'].get('selector')} matches no pods")
        out += [f"Service {name}: targetPort {p.get('targetPort')!r} is not a port of {w.name}"
                for p in s["spec"].get("ports", []) for w in selected
                if w.resolve_port(p.get("targetPort", p["port"])) is None]
    return _done(out)


def check_network(cl: Cluster) -> Problems:
    out = []
    allowed = {d: {(a.source, a.destination, a.port) for a in cl.allowances if a.direction == d and a.protocol == "TCP"}
               for d in ("ingress", "egress")}
    for link in cl.links:
        for s, t in cl.pairs(link):
            if s in cl.workloads and cl.isolated(s, "Egress") and (s, t, link.port) not in allowed["egress"]:
                out.append(f"{link}: no NetworkPolicy lets {s} send to {t} on {link.port}")
            if cl.isolated(t, "Ingress") and (s, t, link.port) not in allowed["ingress"]:
                out.append(f"{link}: no NetworkPolicy lets {t} accept {s} on {link.port}")
    for a in cl.allowances:
        if ((a.source, a.destination, a.port) in cl.connected and a.protocol == "TCP"
                or cl.single_pod_self(a.source, a.destination) or cl.external_ok(a)):
            continue
        out.append(f"NetworkPolicy {a.policy} lets {a.source} reach {a.destination} on "
                   f"{a.port if a.port is not None else 'every port'}/{a.protocol}, which is no connection of the stack")
    dns = {(peer, port, proto) for (_, peer, port, proto) in EXTERNAL if peer == DNS}
    for w in sorted(cl.workloads):
        out += [f"{w}: no NetworkPolicy isolates its {t.lower()}" for t in ("Ingress", "Egress")
                if not cl.isolated(w, t)]
        reach = {(a.destination, a.port, a.protocol) for a in cl.allowances if a.direction == "egress" and a.source == w}
        if cl.isolated(w, "Egress") and not dns <= reach:
            out.append(f"{w}: no NetworkPolicy lets it reach DNS")
    return _done(out)


def check_addresses(cl: Cluster) -> Problems:
    out: Problems = []
    reached: set[tuple[str, str, int]] = set()
    for w in cl.workloads.values():
        found, problems = _reached_from(cl, w)
        out += problems
        for t, port, origin in found:
            reached.add((w.name, t.name, port))
            relay = RELAYED.get((w.name, t.name))
            if relay and (relay, t.name, port) in cl.connected:
                continue  # passed on to the relay, which connects
            if (w.name, t.name, port) not in cl.connected and not cl.single_pod_self(w.name, t.name):
                out.append(f"{w.name} is given {t.name}:{port} ({origin}), which is no connection of the stack")
    for link in cl.links:
        if link.source in STANDINS:
            out += _routed(cl, link)
        elif link.mode == "configured":
            out += [f"{link}: {s} is given no address of {t} on port {link.port}"
                    for s, t in cl.pairs(link) if (s, t, link.port) not in reached]
    return _done(out)


def _reached_from(cl: Cluster, w: Workload) -> tuple[list[tuple[Workload, int, str]], Problems]:
    """((target, port, origin) of every address w is given or discovers, problems with them)."""
    found, out = [], []
    databases = {cl.spec.postgres.database, *DEFAULT_DATABASES}
    for a in cl.given_addresses(w):
        targets, problem = cl.resolve(a)
        if problem:
            out.append(f"{w.name} ({a.origin}): {problem}")
        if a.path and a.path not in databases and any(cl.kind_of(t) == "postgres" for t in targets):
            out.append(f"{w.name} ({a.origin}): database {a.path!r}; the stack has {sorted(databases)}")
        found += [(t, a.port, a.origin) for t in targets if a.port is not None]
    discovered = cl.discovered(w)
    for t, port, origin in discovered:
        if t is None:
            out.append(f"{w.name}: {origin}")
        else:
            found.append((t, port, origin))
    if discovered:
        out += _discovery_access(cl, w)
    return found, out


def _discovery_access(cl: Cluster, w: Workload) -> Problems:
    """A pod that discovers pods has a token of a service account bound to list and watch them."""
    pod, ns = w.pod["spec"], cl.namespace
    account = pod.get("serviceAccountName", "default")
    out = []
    if not pod.get("automountServiceAccountToken", True):
        out.append(f"{w.name}: discovers pods but mounts no service account token")
    if account not in cl.by_kind["ServiceAccount"]:
        out.append(f"{w.name}: discovers pods as service account {account!r}, which does not exist")
    roles = [b["roleRef"]["name"] for b in cl.by_kind["RoleBinding"].values() if b["roleRef"]["kind"] == "Role"
             and any(s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace", ns) == ns
                     for s in b.get("subjects", []))]
    verbs = {v for r in roles for rule in cl.by_kind["Role"].get(r, {}).get("rules", [])
             if "" in rule.get("apiGroups", []) and "pods" in rule.get("resources", []) for v in rule["verbs"]}
    if not {"list", "watch"} <= verbs:
        out.append(f"{w.name}: service account {account!r} may not list and watch pods in {ns}")
    return out


def _routed(cl: Cluster, link) -> Problems:
    """A link from the cluster's edge: an Ingress routes to a Service of each target workload."""
    routed: set[tuple[str, int]] = set()
    for ing in cl.by_kind["Ingress"].values():
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                ref = path["backend"]["service"]
                svc = cl.by_kind["Service"].get(ref["name"], {"spec": {"ports": []}})
                ports = [p["port"] for p in svc["spec"]["ports"]
                         if ref["port"] in ({"name": p.get("name")}, {"number": p["port"]})]
                routed |= {(w.name, p) for w in cl.pods_selected(svc["spec"].get("selector", {})) for p in ports}
    return [f"{link}: no Ingress routes to {t} on port {link.port}"
            for _, t in cl.pairs(link) if (t, link.port) not in routed]


def credentials_of(value: str) -> list[tuple[str | None, str]]:
    """(user, password) pairs a secret value carries: a DSN, pgpass lines, a Redis replica's
    login include, redis_exporter's password file (JSON), or a bare password."""
    if value.startswith("masteruser "):
        conf = dict(ln.split(" ", 1) for ln in value.splitlines() if " " in ln)
        return [(conf.get("masteruser"), conf.get("masterauth", "").strip('"'))]
    if value.startswith("{"):
        return [(None, pw) for pw in json.loads(value).values()]
    if "://" in value:
        u = urlsplit(value)
        return [(unquote(u.username or ""), unquote(u.password or ""))]
    fields = [re.split(r"(?<!\\):", ln) for ln in value.splitlines() if ln.strip()]
    if fields and all(len(f) == 5 for f in fields):
        return [(f[3], f[4].replace("\\:", ":").replace("\\\\", "\\")) for f in fields]
    return [(None, value)]


def check_credentials(cl: Cluster) -> Problems:
    out = []
    roles = secret_roles(cl.spec)
    for link in cl.links:
        key = link.stack_secret
        if link.mode == "failover" or link.source in STANDINS or key is None:
            continue
        value = cl.stack_secret(key)
        if value is None:
            out.append(f"{link}: the stack has no secret {key!r}")
            continue
        server = PG_PRIMARY if services.service(link.target).kind == "postgres" else link.target
        out += [f"{link}: {t.name} is never given {key}, so it cannot accept it"
                for t in cl.workloads_of(server) if not _accepts(cl.held_secrets(t), value)]
        role = roles.get(link.secret or "")
        for s in cl.workloads_of(link.source):
            held = [c for v in cl.held_secrets(s) for c in credentials_of(v)]
            if not any(pw == value for _, pw in held):
                out.append(f"{link}: {s.name} holds no {key}")
            elif role and not any(pw == value and user in (None, role) for user, pw in held):
                out.append(f"{link}: {s.name} presents {key} as another role than {role!r}")
    return _done(out + _dsn_problems(cl, roles))


def _accepts(held: list[str], value: str) -> bool:
    """A server accepts ``value`` if it holds it, or its SHA-256 as a Redis ACL user's password."""
    digest = hashlib.sha256(value.encode()).hexdigest()
    return value in held or any(f" on #{digest} " in h for h in held)


def _dsn_problems(cl: Cluster, roles: dict[str, str]) -> Problems:
    out = []
    passwords = {roles[s]: cl.stack_secret(k) for s, k in SECRET_KEYS.items() if s in roles}
    databases = {cl.spec.postgres.database, *DEFAULT_DATABASES}
    for w in cl.workloads.values():
        for v in cl.held_secrets(w):
            if not re.match(r"postgres(ql)?://", v):
                continue
            u = urlsplit(v)
            user, db = unquote(u.username or ""), u.path.lstrip("/")
            if user not in passwords:
                out.append(f"{w.name}: a DSN logs in as {user!r}, not one of the roles {sorted(passwords)}")
            elif passwords[user] != unquote(u.password or ""):
                out.append(f"{w.name}: a DSN logs in as {user!r} with another secret than that role's")
            if db not in databases:
                out.append(f"{w.name}: a DSN names database {db!r}; the stack has {sorted(databases)}")
    return out


def check_references(cl: Cluster) -> Problems:
    out = []
    for w in cl.workloads.values():
        for c in [*w.pod["spec"].get("initContainers", []), *w.pod["spec"]["containers"]]:
            for e in c.get("env", []):
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["key"] not in (cl.secret_data(ref["name"]) or {}):
                    out.append(f"{w.name}/{c['name']}: env {e['name']} names key {ref['key']!r} "
                               f"of Secret {ref['name']!r}, which does not exist")
        for v in w.volumes.values():
            if "configMap" in v:
                kind, ref = "ConfigMap", v["configMap"]
                data = cl.by_kind[kind].get(ref["name"], {}).get("data")
            elif "secret" in v:
                kind, ref = "Secret", {**v["secret"], "name": v["secret"]["secretName"]}
                data = cl.secret_data(ref["name"])
            else:
                continue
            if data is None:
                out.append(f"{w.name}: volume {v['name']} names {kind} {ref['name']!r}, which does not exist")
                continue
            out += [f"{w.name}: volume {v['name']} names key {i['key']!r} of {kind} {ref['name']!r}, "
                    "which does not exist" for i in ref.get("items", []) if i["key"] not in data]
        for init in w.pod["spec"].get("initContainers", []):
            out += [f"{w.name}/{init['name']}: `{cp}` copies a file no volume provides, or outside its emptyDirs"
                    for cp in cl.copies(w, init)[1]]
    return _done(out)


def check_files(cl: Cluster) -> Problems:
    out = []
    for w in cl.workloads.values():
        files = cl.visible(w)
        read = cl.reads(w)
        for member, found in read.items():
            out += [f"{w.name} ({member}) reads {path} ({origin}), which is not mounted"
                    for path, origin in found if not any(covers(path, f) for f in files)]
        every = {(p, origin) for found in read.values() for p, origin in found}
        out += [f"{w.name}: {f} is mounted but nothing in the container reads it"
                for f in files if not any(covers(p, f) for p, origin in every if origin != f)]
    return _done(out)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_listeners(cl: Cluster) -> Problems:
    out = []
    for w in cl.workloads.values():
        heard = cl.listeners(w)
        for p in w.main.get("ports", []):
            hosts = [h for h, port in heard if port == p["containerPort"]]
            if not hosts:
                out.append(f"{w.name}: nothing listens on container port {p['name']} ({p['containerPort']})")
            elif all(h in LOOPBACK for h in hosts):
                out.append(f"{w.name}: port {p['name']} ({p['containerPort']}) is bound to {hosts[0]} only: "
                           "probes, Services and peers cannot reach it")
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = w.main.get(kind) or {}
            if "httpGet" in probe and w.resolve_port(probe["httpGet"]["port"]) is None:
                out.append(f"{w.name}: {kind} asks port {probe['httpGet']['port']}, not a container port")
            out += [f"{w.name}: {kind} asks port {p}, not a container port"
                    for p in re.findall(r"-p\s+(\d+)", " ".join(probe.get("exec", {}).get("command", [])))
                    if int(p) not in w.port_numbers()]
    return _done(out)


IMAGE_ENV: dict[str, tuple[str, ...]] = {
    # Variables a program reads by itself (its documentation), by image repository name
    # (``registry/recon-<name>:<tag>``, or the upstream repository); "X_" is a prefix.
    "grafana": ("GF_",),                                            # every GF_<SECTION>_<KEY>
    "all-in-one": ("COLLECTOR_OTLP_ENABLED", "SPAN_STORAGE_TYPE"),  # jaegertracing/all-in-one
    "postgres-exporter": ("DATA_SOURCE_NAME", "DATA_SOURCE_URI", "DATA_SOURCE_USER", "DATA_SOURCE_PASS",
                          "DATA_SOURCE_PASS_FILE"),
    "redis-exporter": ("REDIS_ADDR", "REDIS_USER", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE", "REDIS_EXPORTER_"),
    # ops/containers.py and the failover tasks run psql in the database containers (docker exec,
    # kubectl exec) as the superuser, with the container's own RECON_SUPERUSER_PASSWORD
    "postgres": ("RECON_SUPERUSER_PASSWORD",),
}


def image_name(ref: str) -> str:
    """``registry.example.com/recon-postgres:1a2b`` -> postgres; ``grafana/grafana:11.1.3`` -> grafana."""
    return ref.rsplit("/", 1)[-1].split("@")[0].split(":")[0].removeprefix("recon-")


def check_environment(cl: Cluster) -> Problems:
    out = []
    app_images = {slot.image for slot in cl.spec.backend.slots.values()}
    for w in cl.workloads.values():
        c = w.main
        text = "\n".join([command_text(c), probe_text(c), *(content for content, _ in cl.visible(w).values())])
        known = app_variables() if c["image"] in app_images else set(IMAGE_ENV.get(image_name(c["image"]), ()))
        for e in c.get("env", []):
            name = e["name"]
            if not (re.search(rf"(?<![\w-]){name}(?![\w-])", text) or name in known
                    or any(k.endswith("_") and name.startswith(k) for k in known)):
                out.append(f"{w.name}: env {name} is read by nothing in the container")
    return _done(out)


def check_rollout(cl: Cluster) -> Problems:
    out = []
    for name, hpa in sorted(cl.by_kind["HorizontalPodAutoscaler"].items()):
        ref = hpa["spec"]["scaleTargetRef"]
        if ref["name"] not in cl.by_kind[ref["kind"]] or ref.get("apiVersion") != "apps/v1":
            out.append(f"HorizontalPodAutoscaler {name} scales {ref.get('apiVersion')} {ref['kind']} "
                       f"{ref['name']!r}, which does not exist")
    for name, ing in sorted(cl.by_kind["Ingress"].items()):
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                ref = path["backend"]["service"]
                ports = cl.by_kind["Service"].get(ref["name"], {"spec": {"ports": []}})["spec"]["ports"]
                if not any(ref["port"] in ({"name": p.get("name")}, {"number": p["port"]}) for p in ports):
                    out.append(f"Ingress {name} routes to {ref['name']}:{ref['port']}, which does not exist")
    migrations = {n: w for n, w in cl.workloads.items()
                  if w.kind == "Job" and "migrate" in command_text(w.main).split()}
    out += [f"Job {n}: pulumi.com/skipAwait set, so nothing waits for the migrations"
            for n, j in migrations.items() if "pulumi.com/skipAwait" in j.obj["metadata"].get("annotations", {})]
    app_images = {slot.image for slot in cl.spec.backend.slots.values()}
    for w in cl.workloads.values():
        if w.kind in ("Job", "CronJob") or w.main["image"] not in app_images:
            continue
        needed = {n for n, j in migrations.items() if j.main["image"] == w.main["image"]}
        after = {n for kind, n in cl.dependencies.get((w.kind, w.name), set()) if kind == "Job"}
        if not needed:
            out.append(f"{w.name}: no migration Job runs its image {w.main['image']}")
        elif not needed & after:
            out.append(f"{w.name}: not ordered after its migration Job ({', '.join(sorted(needed))})")
    return _done(out)


CHECKS: dict[str, Callable[[Cluster], Problems]] = {
    "services": check_services,
    "network": check_network,
    "addresses": check_addresses,
    "credentials": check_credentials,
    "references": check_references,
    "files": check_files,
    "listeners": check_listeners,
    "environment": check_environment,
    "rollout": check_rollout,
}


def problems(cap: Capture) -> dict[str, Problems]:
    """Every check's problems for one capture."""
    cl = Cluster(cap)
    return {name: check(cl) for name, check in CHECKS.items()}
