"""Production on Kubernetes: one namespace holds the whole stack.

    KubernetesPlatform
    ├── Namespace (Pod Security "restricted"), the stack Secret, default-deny NetworkPolicy
    ├── deploy(workload)
    │   ├── stateful  -> StatefulSet + headless Service (+ PVC template)
    │   ├── stateless -> Deployment + Service
    │   ├── job       -> Job                 (migrations, awaited before the slots roll)
    │   ├── cronjob   -> CronJob + PVC       (logical backups)
    │   └── daemon    -> nothing: node metrics are the cluster monitoring's job
    ├── traffic(slots) -> backend-active / backend-preview Services, HPA per slot
    ├── edge(proxy)    -> stable Ingress -> active, canary Ingress (weight) -> preview
    └── finish()       -> PodDisruptionBudget per role with more than one pod,
                          NetworkPolicy per workload from the components' Edges

Every pod runs as its image's non-root uid with all capabilities dropped, no privilege
escalation, seccomp RuntimeDefault, a read-only root filesystem (writable paths are
emptyDirs), probes, requests and limits, and soft anti-affinity across nodes.

Trap: a file that must be 0600 and owned by the service user (pgpass) cannot come straight
from a Secret volume (kubelet makes it root-owned, group-readable, and libpq then ignores
it). Such workloads copy their config into an emptyDir in an init container running as the
service user; the main container mounts that emptyDir read-only.
"""

from __future__ import annotations

import shlex
from collections import defaultdict
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.model import Probe, Workload
from infra.components.platform import Platform
from infra.components.sizing import resources_for
from infra.kubernetes.layout import KubernetesLayout
from infra.kubernetes.prometheus import adapt as adapt_prometheus
from infra.render import RenderContext
from infra.spec import Resources, StackSpec

CONF_ROOT = "/etc/recon"
STACK_SECRET = "recon-secrets"
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_CLASS = "nginx"
PART_OF = "recon"
COPY_IMAGE = "busybox:1.36.1"


def cpu(cores: float) -> str:
    return f"{int(round(cores * 1000))}m"


def k8s_resources(r: Resources) -> dict:
    return {"limits": {"cpu": cpu(r.cpu_limit), "memory": f"{r.memory_limit_mib}Mi"},
            "requests": {"cpu": cpu(r.cpu_request), "memory": f"{r.memory_request_mib}Mi"}}


def cm_key(path: str) -> str:
    """ConfigMap key for a container path: /etc/recon/postgres/pg_hba.conf -> postgres_pg_hba.conf."""
    return path.removeprefix(CONF_ROOT + "/").replace("/", "_")


def probe(p: Probe | None) -> dict | None:
    if p is None:
        return None
    out: dict[str, Any] = {"initialDelaySeconds": p.initial_delay_s, "periodSeconds": p.period_s,
                           "timeoutSeconds": p.timeout_s, "failureThreshold": p.failure_threshold}
    if p.command:
        out["exec"] = {"command": list(p.command)}
    else:
        out["httpGet"] = {"path": p.path, "port": p.port}
    return out


class Namespace(pulumi.ComponentResource):
    """The namespace and what every workload in it shares: the Secret and the baseline policies."""

    def __init__(self, name: str, spec: StackSpec, secrets: dict[str, pulumi.Output[str]],
                 labels: dict[str, str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("recon:kubernetes:Namespace", name, None, opts)
        ns = spec.namespace
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = k8s.core.v1.Namespace(name, metadata={
            "name": ns, "labels": {**labels, "pod-security.kubernetes.io/enforce": "restricted",
                                   "pod-security.kubernetes.io/audit": "restricted",
                                   "pod-security.kubernetes.io/warn": "restricted"}}, opts=child)
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        self.secret = k8s.core.v1.Secret(STACK_SECRET, metadata={"name": STACK_SECRET, "namespace": ns,
                                                                 "labels": labels},
                                         type="Opaque", string_data=secrets, opts=in_ns)
        self.deny = k8s.networking.v1.NetworkPolicy("default-deny", metadata={
            "name": "default-deny", "namespace": ns, "labels": labels},
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, opts=in_ns)
        self.dns = k8s.networking.v1.NetworkPolicy("allow-dns", metadata={
            "name": "allow-dns", "namespace": ns, "labels": labels},
            spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]},
            opts=in_ns)
        self.register_outputs({"namespace": ns})


class KubernetesPlatform(Platform):
    target = "kubernetes"
    executor = "kubectl"
    supports_schedules = True

    @staticmethod
    def make_layout(spec: StackSpec) -> KubernetesLayout:
        return KubernetesLayout(spec)

    @staticmethod
    def render_context(spec: StackSpec) -> RenderContext:
        return RenderContext()

    def setup(self, parent: pulumi.Resource | None = None) -> list[pulumi.Resource]:
        ns = self.spec.namespace
        self.ns = ns
        self.base_labels = {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/instance": self.spec.name,
                            "app.kubernetes.io/managed-by": "pulumi"}
        secret_values = {k: v for k, v in self.secrets.values.items() if k not in ("tls_cert", "tls_key")}
        self.foundation = Namespace(ns, self.spec, secret_values, self.base_labels,
                                    opts=pulumi.ResourceOptions(parent=parent))
        self.by_name: dict[str, list[pulumi.Resource]] = {}
        self.owner: dict[str, pulumi.Resource] = {}
        return [self.foundation]

    def _opts(self, parent: pulumi.Resource, depends: list[pulumi.Resource] | None = None,
              **kw) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, depends_on=[self.foundation, *(depends or [])], **kw)

    def labels(self, w: Workload) -> dict[str, str]:
        return {**self.base_labels, "app.kubernetes.io/name": w.role, "app.kubernetes.io/component": w.component,
                "recon/workload": w.name, **w.labels}

    def selector(self, w: Workload) -> dict[str, str]:
        return {"app.kubernetes.io/instance": self.spec.name, "recon/workload": w.name}

    def meta(self, name: str, labels: dict[str, str], annotations: dict | None = None) -> dict:
        out = {"name": name, "namespace": self.ns, "labels": labels}
        if annotations:
            out["annotations"] = annotations
        return out

    # -- images -------------------------------------------------------------------------
    def app_image(self, slot: str, parent: pulumi.Resource) -> pulumi.Input[str]:
        return self.spec.backend.slots[slot].image

    def image(self, name: str, parent: pulumi.Resource) -> pulumi.Input[str]:
        """A service image as CI pushes it: ``<images.registry>/recon-<name>:<content tag>``."""
        from infra import images
        if name in images.UPSTREAM:
            return images.UPSTREAM[name]
        ref = images.service_images(self.spec)[name].ref
        return f"{self.spec.images.registry}/{ref}" if self.spec.images.registry else ref

    # -- pods ---------------------------------------------------------------------------
    def _member_prefix(self, w: Workload) -> str:
        """Shell that sets RECON_MEMBER / RECON_MEMBER_HOST from the pod's ordinal.

        Trap: a workload without ports has no Service, so no DNS name: it gets no
        RECON_MEMBER_HOST rather than a name that does not resolve.
        """
        if w.kind != "stateful" or w.members == [w.name]:
            member = w.members[0] if w.members else w.name
            if w.kind != "stateful" and not w.ports:
                return f"RECON_MEMBER={member}\nexport RECON_MEMBER\n"
            host = self.layout.host_of(member) if w.kind == "stateful" else self.layout.service_host(w.name)
            return f"RECON_MEMBER={member}\nRECON_MEMBER_HOST={host}\nexport RECON_MEMBER RECON_MEMBER_HOST\n"
        cases = "".join(f"  {i}) RECON_MEMBER={m}; RECON_MEMBER_HOST={self.layout.host_of(m)} ;;\n"
                        for i, m in enumerate(w.members))
        return ('case "${HOSTNAME##*-}" in\n' + cases +
                '  *) echo "pod $HOSTNAME has no member in this StatefulSet" >&2; exit 1 ;;\n'
                "esac\nexport RECON_MEMBER RECON_MEMBER_HOST\n")

    def _config(self, w: Workload, parent: pulumi.Resource, labels: dict) -> tuple[list, list, list, list]:
        """(resources, volumes, main mounts, init containers) for w's files."""
        files = w.all_files()
        if not files and not w.secret_files:
            return [], [], [], []
        for f in files:
            if not f.path.startswith(CONF_ROOT + "/"):
                raise ValueError(f"{w.name}: config file {f.path!r} is outside {CONF_ROOT}")
        content = {cm_key(f.path): f.content for f in files}
        if w.name == "prometheus":
            key = cm_key(self.layout.conf("prometheus/prometheus.yml"))
            content[key] = adapt_prometheus(content[key], self.ns)
        cm = k8s.core.v1.ConfigMap(f"{w.name}-config", metadata=self.meta(f"{w.name}-config", labels),
                                   data=content, opts=self._opts(parent))
        items = [{"key": cm_key(f.path), "path": f.path.removeprefix(CONF_ROOT + "/"), "mode": f.mode}
                 for f in files]
        if not w.secret_files:
            return [cm], [{"name": "config", "configMap": {"name": f"{w.name}-config", "items": items,
                                                          "defaultMode": 0o444}}], \
                [{"name": "config", "mountPath": CONF_ROOT, "readOnly": True}], []
        volumes = [
            {"name": "config-src", "configMap": {"name": f"{w.name}-config", "items": items}},
            {"name": "secret-src", "secret": {"secretName": STACK_SECRET, "defaultMode": 0o440, "items": [
                {"key": key, "path": path.removeprefix(CONF_ROOT + "/")} for path, key in w.secret_files.items()]}},
            {"name": "config", "emptyDir": {"medium": "Memory"}},
        ]
        lines = ["set -eu"]
        for f in files:
            rel = f.path.removeprefix(CONF_ROOT + "/")
            lines.append(f"mkdir -p {shlex.quote(str(_parent(f.path)))} && cp -L /run/recon/config-src/{rel} "
                         f"{shlex.quote(f.path)} && chmod {f.mode:o} {shlex.quote(f.path)}")
        for path in w.secret_files:
            rel = path.removeprefix(CONF_ROOT + "/")
            lines.append(f"mkdir -p {shlex.quote(str(_parent(path)))} && cp -L /run/recon/secret-src/{rel} "
                         f"{shlex.quote(path)} && chmod 600 {shlex.quote(path)}")
        init = {
            "name": "config", "image": COPY_IMAGE, "imagePullPolicy": "Always",
            "command": ["/bin/sh", "-c", "\n".join(lines)],
            "volumeMounts": [{"name": "config-src", "mountPath": "/run/recon/config-src", "readOnly": True},
                             {"name": "secret-src", "mountPath": "/run/recon/secret-src", "readOnly": True},
                             {"name": "config", "mountPath": CONF_ROOT}],
            "resources": k8s_resources(resources_for(self.spec, "config-copy")),
            "securityContext": self._container_security(w),
        }
        return [cm], volumes, [{"name": "config", "mountPath": CONF_ROOT, "readOnly": True}], [init]

    def _container_security(self, w: Workload) -> dict:
        return {"allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": w.read_only_root,
                "runAsNonRoot": True, "runAsUser": w.user, "runAsGroup": w.user,
                "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}

    def _pod(self, w: Workload, labels: dict, volumes: list, mounts: list, inits: list,
             restart: str = "Always") -> dict:
        env: list[dict] = [{"name": k, "value": v} for k, v in sorted(w.env.items())]
        env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": STACK_SECRET, "key": v}}}
                for k, v in sorted(w.secret_env.items())]
        for i, path in enumerate(w.writable):
            volumes = volumes + [{"name": f"scratch-{i}", "emptyDir": {}}]
            mounts = mounts + [{"name": f"scratch-{i}", "mountPath": path}]
        if w.storage_gib and w.data_path:
            mounts = mounts + [{"name": "data", "mountPath": w.data_path}]
        container: dict[str, Any] = {
            "name": w.role, "image": w.image, "imagePullPolicy": "Always", "env": env,
            "ports": [{"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in w.ports],
            "resources": k8s_resources(w.resources), "securityContext": self._container_security(w),
            "volumeMounts": mounts,
        }
        if w.script:
            container["command"] = ["/bin/sh", "-c", self._member_prefix(w) + w.script]
        else:
            if w.command:
                container["command"] = w.command
            if w.args:
                container["args"] = w.args
        if restart == "Always":
            container["livenessProbe"] = probe(w.liveness)
            container["readinessProbe"] = probe(w.readiness)
        spec: dict[str, Any] = {
            "automountServiceAccountToken": w.name == "prometheus",
            "securityContext": {"runAsNonRoot": True, "runAsUser": w.user, "runAsGroup": w.user, "fsGroup": w.user,
                                "fsGroupChangePolicy": "OnRootMismatch",
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container], "volumes": volumes, "restartPolicy": restart,
            "enableServiceLinks": False,
        }
        if w.name == "prometheus":
            spec["serviceAccountName"] = "prometheus"
        if inits:
            spec["initContainers"] = inits
        if restart == "Always":
            spec["affinity"] = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                   "labelSelector": {"matchLabels": self.selector(w)}}}]}}
            spec["terminationGracePeriodSeconds"] = 30
        return {"metadata": {"labels": labels}, "spec": spec}

    # -- workloads ------------------------------------------------------------------------
    def deploy(self, w: Workload, parent: pulumi.Resource) -> list[pulumi.Resource]:
        if w.shared:
            raise ValueError(f"{w.name}: shared volumes {sorted(w.shared)} need one host (shared_volumes); "
                             "a namespace's pods have none")
        self.workloads.append(w)
        self.owner[w.name] = parent
        if w.kind == "daemon":
            self.by_name[w.name] = []
            return []
        labels = self.labels(w)
        out, volumes, mounts, inits = self._config(w, parent, labels)
        after = [r for name in w.after for r in self.by_name.get(name, [])]
        if w.name == "prometheus":
            out += self._prometheus_rbac(parent, labels)
        annotations = self._annotations(w)
        ports = [{"name": p.name, "port": p.number, "targetPort": p.name, "protocol": "TCP"} for p in w.ports]
        if w.kind == "stateful":
            out.append(k8s.core.v1.Service(w.name, metadata=self.meta(w.name, labels), spec={
                "clusterIP": "None", "publishNotReadyAddresses": True, "selector": self.selector(w),
                "ports": ports}, opts=self._opts(parent)))
            out.append(k8s.apps.v1.StatefulSet(w.name, metadata=self.meta(w.name, labels, annotations), spec={
                "serviceName": w.name, "replicas": w.replicas, "selector": {"matchLabels": self.selector(w)},
                "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate"},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": self._pod(w, labels, volumes, mounts, inits),
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": labels}, "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": f"{w.storage_gib}Gi"}}}}],
            }, opts=self._opts(parent, after)))
        elif w.kind == "stateless":
            if ports:
                out.append(k8s.core.v1.Service(w.name, metadata=self.meta(w.name, labels), spec={
                    "type": "ClusterIP", "selector": self.selector(w), "ports": ports}, opts=self._opts(parent)))
            ignore = ["spec.replicas"] if w.role == "backend" else []
            out.append(k8s.apps.v1.Deployment(w.name, metadata=self.meta(w.name, labels, annotations), spec={
                "replicas": w.replicas, "selector": {"matchLabels": self.selector(w)},
                "revisionHistoryLimit": 5,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": self._pod(w, labels, volumes, mounts, inits),
            }, opts=self._opts(parent, after, ignore_changes=ignore)))
        elif w.kind == "job":
            out.append(k8s.batch.v1.Job(w.name, metadata=self.meta(w.name, labels, annotations), spec={
                "backoffLimit": 3, "template": self._pod(w, labels, volumes, mounts, inits, restart="OnFailure"),
            }, opts=self._opts(parent, after, delete_before_replace=True)))
        elif w.kind == "cronjob":
            claim = f"{w.name}-data"
            out.append(k8s.core.v1.PersistentVolumeClaim(claim, metadata=self.meta(claim, labels), spec={
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{w.storage_gib}Gi"}}},
                opts=self._opts(parent, protect=False)))
            pod = self._pod(w, labels, volumes + [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
                            mounts, inits, restart="OnFailure")
            out.append(k8s.batch.v1.CronJob(w.name, metadata=self.meta(w.name, labels, annotations), spec={
                "schedule": w.schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                "jobTemplate": {"spec": {"backoffLimit": 2, "template": pod}},
            }, opts=self._opts(parent, after)))
        else:
            raise ValueError(f"{w.name}: unknown workload kind {w.kind!r}; "
                             "expected stateful, stateless, job, cronjob or daemon")
        self.by_name[w.name] = out
        return out

    def _annotations(self, w: Workload) -> dict[str, str]:
        """Policy exemptions on the object itself, each with its reason (infra/policy/checkov-skips.md)."""
        skips = []
        if w.name == "prometheus":
            skips.append("CKV_K8S_38=Prometheus discovers pods through the API: it needs its service account "
                         "token (Role: get/list/watch pods in this namespace only)")
        if w.user < 10000:
            skips.append(f"CKV_K8S_40=the upstream image owns its files as uid {w.user}; another uid breaks "
                         "their ownership (runAsNonRoot still holds)")
        out = {f"checkov.io/skip{i}": text for i, text in enumerate(skips, start=1)}
        out.update({f"policy.recon/exempt-{rule}": why for rule, why in w.exemptions.items()
                    if rule.startswith("k8s-")})
        return out

    def _prometheus_rbac(self, parent: pulumi.Resource, labels: dict) -> list[pulumi.Resource]:
        sa = k8s.core.v1.ServiceAccount("prometheus", metadata=self.meta("prometheus", labels),
                                        automount_service_account_token=False, opts=self._opts(parent))
        role = k8s.rbac.v1.Role("prometheus-discovery", metadata=self.meta("prometheus-discovery", labels), rules=[
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}], opts=self._opts(parent))
        binding = k8s.rbac.v1.RoleBinding(
            "prometheus-discovery", metadata=self.meta("prometheus-discovery", labels),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "prometheus-discovery"},
            subjects=[{"kind": "ServiceAccount", "name": "prometheus", "namespace": self.ns}],
            opts=self._opts(parent, [sa, role]))
        return [sa, role, binding]

    # -- blue/green -------------------------------------------------------------------------
    def traffic(self, slots: dict[str, Workload], parent: pulumi.Resource) -> list[pulumi.Resource]:
        """Argo Rollouts blue-green: the active and preview Services select a slot by label."""
        b = self.spec.backend
        out: list[pulumi.Resource] = []
        for name, slot in (("backend-active", b.active_slot), ("backend-preview", b.idle_slot)):
            labels = {**self.base_labels, "app.kubernetes.io/name": "backend", "app.kubernetes.io/component": "backend"}
            out.append(k8s.core.v1.Service(name, metadata=self.meta(name, labels), spec={
                "type": "ClusterIP",
                "selector": {"app.kubernetes.io/instance": self.spec.name, "app.kubernetes.io/name": "backend",
                             "recon/slot": slot},
                "ports": [{"name": "http", "port": b.port, "targetPort": "http", "protocol": "TCP"}],
            }, opts=self._opts(parent)))
        for slot, w in slots.items():
            deployment = self.by_name[w.name][-1]
            out.append(k8s.autoscaling.v2.HorizontalPodAutoscaler(w.name, metadata=self.meta(w.name, self.labels(w)),
                spec={"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name},
                      "minReplicas": b.replicas, "maxReplicas": b.autoscale_max,
                      "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                          "type": "Utilization", "averageUtilization": b.autoscale_cpu_percent}}}]},
                opts=self._opts(parent, [deployment])))
        return out

    def edge(self, proxy: Workload, parent: pulumi.Resource) -> list[pulumi.Resource]:
        """Stable Ingress to the active Service; canary Ingress with the spec's weight to preview."""
        n, b = self.spec.nginx, self.spec.backend
        labels = {**self.base_labels, "app.kubernetes.io/name": "ingress", "app.kubernetes.io/component": "proxy"}
        common = {
            "nginx.ingress.kubernetes.io/proxy-body-size": f"{n.client_max_body_size_mib}m",
            "nginx.ingress.kubernetes.io/limit-rps": str(n.rate_limit.requests_per_second),
            "nginx.ingress.kubernetes.io/limit-burst-multiplier":
                str(max(1, n.rate_limit.burst // n.rate_limit.requests_per_second)),
            "nginx.ingress.kubernetes.io/ssl-redirect": "true" if n.tls else "false",
            "nginx.ingress.kubernetes.io/proxy-read-timeout": "120",
        }
        out = []
        for name, service, extra in (
                ("recon", "backend-active", {}),
                ("recon-canary", "backend-preview", {"nginx.ingress.kubernetes.io/canary": "true",
                                                     "nginx.ingress.kubernetes.io/canary-weight": str(b.canary_weight)})):
            spec: dict[str, Any] = {"ingressClassName": INGRESS_CLASS, "rules": [{"host": n.server_name, "http": {
                "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                    "name": service, "port": {"name": "http"}}}}]}}]}
            if n.tls:
                spec["tls"] = [{"hosts": [n.server_name], "secretName": f"{self.ns}-tls"}]
            out.append(k8s.networking.v1.Ingress(name, metadata=self.meta(name, labels, {**common, **extra}),
                                                 spec=spec, opts=self._opts(parent)))
        return out

    # -- derived from every workload --------------------------------------------------------
    def finish(self, parents: dict[str, pulumi.Resource]) -> list[pulumi.Resource]:
        out: list[pulumi.Resource] = []
        pods = [w for w in self.workloads if w.kind != "daemon"]
        roles: dict[str, list[Workload]] = defaultdict(list)
        for w in pods:
            if w.kind in ("stateful", "stateless"):
                roles[w.role].append(w)
        for role, group in sorted(roles.items()):
            total = sum(w.replicas for w in group)
            if total < 2:
                continue
            max_unavailable = 1
            if role == "sentinel":
                max_unavailable = max(1, total - self.spec.redis.sentinel.quorum)
            owner = self.owner[group[0].name]
            labels = {**self.base_labels, "app.kubernetes.io/name": role}
            out.append(k8s.policy.v1.PodDisruptionBudget(role, metadata=self.meta(role, labels), spec={
                "maxUnavailable": max_unavailable,
                "selector": {"matchLabels": {"app.kubernetes.io/instance": self.spec.name,
                                             "app.kubernetes.io/name": role}}},
                opts=self._opts(owner)))
        present = {w.role for w in pods}
        for w in pods:
            labels = self.labels(w)
            ingress: list[dict] = []
            by_source: dict[str, set[int]] = defaultdict(set)
            for e in w.peers:
                if e.source == "ingress" or e.source in present:
                    by_source[e.source].add(e.port)
            for source, ports in sorted(by_source.items()):
                if source == "ingress":
                    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_NAMESPACE}}}
                else:
                    peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": self.spec.name,
                                                            "app.kubernetes.io/name": source}}}
                ingress.append({"from": [peer], "ports": [{"protocol": "TCP", "port": p} for p in sorted(ports)]})
            egress: list[dict] = []
            for target in pods:
                ports = sorted({e.port for e in target.peers if e.source == w.role})
                if ports:
                    egress.append({"to": [{"podSelector": {"matchLabels": self.selector(target)}}],
                                   "ports": [{"protocol": "TCP", "port": p} for p in ports]})
            if w.name == "prometheus":
                egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                               "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]})
            if w.name == "alertmanager" and self.spec.alertmanager.webhook_url:
                egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                               "ports": [{"protocol": "TCP", "port": 443}]})
            types = []
            spec: dict[str, Any] = {"podSelector": {"matchLabels": self.selector(w)}}
            if ingress:
                types.append("Ingress")
                spec["ingress"] = ingress
            if egress:
                types.append("Egress")
                spec["egress"] = egress
            if not types:
                continue
            spec["policyTypes"] = types
            out.append(k8s.networking.v1.NetworkPolicy(w.name, metadata=self.meta(w.name, labels), spec=spec,
                                                       opts=self._opts(self.owner[w.name])))
        return out

    # -- outputs ------------------------------------------------------------------------------
    def endpoints(self) -> dict[str, Any]:
        n = self.spec.nginx
        scheme = "https" if n.tls else "http"
        return {"public": f"{scheme}://{n.server_name}/",
                "prometheus": f"http://{self.layout.service_host('prometheus')}:{self.spec.prometheus.port}",
                "grafana": f"http://{self.layout.service_host('grafana')}:{self.spec.grafana.port}",
                "jaeger": f"http://{self.layout.service_host('jaeger')}:{self.spec.jaeger.ui_port}",
                "preview": f"http://{self.layout.service_host('backend-preview')}:{self.spec.backend.port}"}

    def where(self, w: Workload, member: str) -> dict[str, Any]:
        """How ops/ reaches one process: ``kubectl exec -n <namespace> <pod>``."""
        out: dict[str, Any] = {"namespace": self.ns, "workload": w.name, "workload_kind": w.kind}
        pod = self.layout.pod_of(member) if w.kind == "stateful" else None
        if pod:
            out["pod"] = pod
        else:
            out["selector"] = ",".join(f"{k}={v}" for k, v in self.selector(w).items())
        out["container"] = w.role
        return out


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]
