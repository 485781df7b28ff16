"""Staging on one Docker host: a container per process, three networks, named volumes.

    DockerPlatform
    ├── DockerHost: networks front (bridge), back and data (internal: no route out),
    │               images (built from Debian packages and ./Dockerfile: infra/images.py), TLS for Nginx
    ├── deploy(workload) -> per member: Container (+ data Volume, + conf Volume)
    │   ├── job      -> runs once on create, attached: dependants start after it exits
    │   └── cronjob  -> created, not started: ops/ runs it with ``docker start -a``
    ├── traffic()   -> nothing: Nginx's rendered config is the switch on this target
    └── edge(nginx) -> the Nginx container, the only one publishing a port to the world

Containers are named ``recon-<stack>-<process>`` and answer on their networks to the
layout's process name (``postgres-primary``, ``sentinel-2``, ...), so the rendered configs
need no Docker-specific address.

Traps:

* Docker refuses to copy files into a container whose root filesystem is read-only unless
  the destination is on a volume. Rendered configs are therefore uploaded into a small
  per-container volume mounted at /etc/recon, and the root filesystem stays read-only.
* An upload's content is part of the container's definition: a changed config replaces
  the container. ``fab switch`` reloads Nginx in place; ``pulumi up`` after a switch
  replaces the Nginx container (a second or two without the edge on staging).
* Plain Docker has no secret store. Secrets reach containers through their environment
  and 0600 files, held as Pulumi secrets (encrypted in the state); anyone with access to
  the Docker socket can read them, as with any Docker deployment.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker

from infra import images
from infra.components.model import Probe, Workload
from infra.components.platform import Platform
from infra.layout import ContainerLayout
from infra.render import RenderContext
from infra.spec import StackSpec

CONF_ROOT = "/etc/recon"
TIERS = ("front", "back", "data")
LOG_OPTS = {"max-size": "10m", "max-file": "5"}


def is_local_image(ref: str) -> bool:
    """True for an image name without a registry host (``recon-app:0.1.0``): built here."""
    first = ref.split("/", 1)[0]
    return "/" not in ref or not ("." in first or ":" in first or first == "localhost")


def healthcheck(p: Probe | None, client: str | None) -> docker.ContainerHealthcheckArgs | None:
    if p is None:
        return None
    if p.command:
        test = ["CMD", *p.command]
    elif client == "curl":
        test = ["CMD", "curl", "-fsS", "-o", "/dev/null", f"http://127.0.0.1:{p.port}{p.path}"]
    elif client == "wget":
        test = ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{p.port}{p.path}"]
    elif client == "python":
        test = ["CMD", "python", "-c",
                f"import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:{p.port}{p.path}', "
                "timeout=3); sys.exit(0)"]
    else:
        return None
    return docker.ContainerHealthcheckArgs(
        tests=test, interval=f"{p.period_s}s", timeout=f"{p.timeout_s}s", retries=p.failure_threshold,
        start_period=f"{p.initial_delay_s}s")


def _stop_signal(spec: StackSpec, member: str) -> str:
    """How the engine stops a process: the catalogue's signal, as supervisord does locally
    (PostgreSQL: SIGINT, a fast shutdown; SIGTERM would wait for every client to disconnect and
    run into the engine's kill). The grace period is the engine's (``docker stop --time``)."""
    from infra import services
    try:
        svc, _ = services.owner(spec, member)
    except KeyError:  # jobs: the default
        return "SIGTERM"
    return f"SIG{svc.stop_signal}"


class DockerHost(pulumi.ComponentResource):
    """Networks per tier, and TLS material for Nginx when the stack has none configured."""

    def __init__(self, name: str, spec: StackSpec, need_tls: bool, opts: pulumi.ResourceOptions | None = None,
                 pg_hosts: list[str] | None = None):
        super().__init__("recon:docker:Host", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.networks = {
            tier: docker.Network(f"{tier}", name=f"recon-{spec.name}-{tier}", driver="bridge",
                                 internal=tier != "front", attachable=False,
                                 labels=[docker.NetworkLabelArgs(label="recon.stack", value=spec.name)], opts=child)
            for tier in TIERS}
        self.tls: dict[str, pulumi.Output[str]] = {}
        if need_tls:
            import pulumi_tls as tls

            key = tls.PrivateKey("nginx-tls", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            cert = tls.SelfSignedCert(
                "nginx-tls", private_key_pem=key.private_key_pem, validity_period_hours=24 * 365,
                early_renewal_hours=24 * 30, dns_names=[spec.nginx.server_name],
                subject=tls.SelfSignedCertSubjectArgs(common_name=spec.nginx.server_name, organization="recon staging"),
                allowed_uses=["key_encipherment", "digital_signature", "server_auth"], opts=child)
            self.tls = {"tls_cert": pulumi.Output.secret(cert.cert_pem),
                        "tls_key": pulumi.Output.secret(key.private_key_pem)}
        if pg_hosts:
            import pulumi_tls as tls

            # PostgreSQL's own certificate: every node's container name, so clients verify the host
            # they connect to (verify-full) with this certificate as their root
            key = tls.PrivateKey("postgres-tls", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            cert = tls.SelfSignedCert(
                "postgres-tls", private_key_pem=key.private_key_pem, validity_period_hours=24 * 365,
                early_renewal_hours=24 * 30, dns_names=pg_hosts,
                subject=tls.SelfSignedCertSubjectArgs(common_name=pg_hosts[0], organization="recon staging"),
                allowed_uses=["key_encipherment", "digital_signature", "server_auth"], opts=child)
            self.tls.update({"postgres_tls_cert": pulumi.Output.secret(cert.cert_pem),
                             "postgres_tls_key": pulumi.Output.secret(key.private_key_pem)})
        self.register_outputs({"networks": {t: n.name for t, n in self.networks.items()}})


class DockerPlatform(Platform):
    target = "docker"
    executor = "docker"
    supports_schedules = False
    shared_volumes = True

    @staticmethod
    def make_layout(spec: StackSpec) -> ContainerLayout:
        return ContainerLayout(spec, "docker")

    @classmethod
    def render_context(cls, spec: StackSpec) -> RenderContext:
        from infra.pgbackrest import archive_command
        # WAL goes to the pgBackRest repository on the volume the database containers share
        layout = cls.make_layout(spec)
        return RenderContext(archive_command=archive_command(spec, layout) if cls.backs_up_in_place(spec) else None,
                             pg_tls=layout.pg_tls())  # the PostgreSQL containers get their certificate there

    def setup(self, parent: pulumi.Resource | None = None) -> list[pulumi.Resource]:
        need_tls = self.spec.nginx.tls and "tls_cert" not in self.secrets.values
        pg_hosts = [self.layout.host_of(n) for n in self.layout.postgres_nodes()] if self.layout.pg_tls() else []
        self.host = DockerHost(f"{self.spec.name}-host", self.spec, need_tls, opts=pulumi.ResourceOptions(parent=parent),
                               pg_hosts=pg_hosts)
        self.secrets.values.update(self.host.tls)
        self.images: dict[str, pulumi.Resource] = {}
        self.containers: dict[str, list[docker.Container]] = {}
        self.container_names: dict[str, str] = {}
        self.shared: dict[str, docker.Volume] = {}
        return [self.host]

    def cname(self, member: str) -> str:
        return f"recon-{self.spec.name}-{member}"

    # -- images -------------------------------------------------------------------------
    def app_image(self, slot: str, parent: pulumi.Resource) -> pulumi.Input[str]:
        """The slot's app image: built here from ./Dockerfile (infra/images.py, tagged by content:
        the same code and lock give the same image) when the slot names a local image, pulled
        when it names a registry."""
        ref = self.spec.backend.slots[slot].image
        if not is_local_image(ref):
            return self._remote(ref)
        return self._build(images.app_image(self.spec, self.spec.backend.slots[slot].version))

    def image(self, name: str, parent: pulumi.Resource) -> pulumi.Input[str]:
        if name in images.UPSTREAM:
            return self._remote(images.UPSTREAM[name])
        return self._build(images.service_images(self.spec)[name])

    def _build(self, defn: images.ImageDef) -> pulumi.Input[str]:
        if defn.ref not in self.images:
            self.images[defn.ref] = docker.Image(
                f"image-{defn.name.removeprefix('recon-')}-{defn.tag}", image_name=defn.ref, skip_push=True,
                build=docker.DockerBuildArgs(context=str(defn.context), dockerfile=str(defn.dockerfile),
                                             platform="linux/amd64", args=defn.args),
                opts=pulumi.ResourceOptions(parent=self.host))
        return self.images[defn.ref].image_name

    def _remote(self, ref: str) -> pulumi.Input[str]:
        if ref not in self.images:
            name = "remote-" + ref.replace("/", "-").replace(":", "-").replace(".", "-")
            self.images[ref] = docker.RemoteImage(name, name=ref, keep_locally=True,
                                                  opts=pulumi.ResourceOptions(parent=self.host))
        return self.images[ref].image_id

    # -- workloads ------------------------------------------------------------------------
    def deploy(self, w: Workload, parent: pulumi.Resource) -> list[pulumi.Resource]:
        self.workloads.append(w)
        out: list[pulumi.Resource] = []
        after = [c for name in w.after for c in self.containers.get(name, [])]
        members = w.members or [w.name]
        containers = []
        for member in members:
            opts = pulumi.ResourceOptions(parent=parent, depends_on=[self.host, *after])
            mounts: list[docker.ContainerMountArgs] = []
            if w.storage_gib and w.data_path:
                vol = docker.Volume(f"{member}-data", name=f"{self.cname(member)}-data",
                                    labels=[docker.VolumeLabelArgs(label="recon.stack", value=self.spec.name)],
                                    opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True))
                out.append(vol)
                mounts.append(docker.ContainerMountArgs(target=w.data_path, type="volume", source=vol.name))
            files = [*w.files, *w.member_files.get(member, [])]
            secret_files = {**w.secret_files, **self._pg_client_files(w)}
            uploads = [docker.ContainerUploadArgs(file=f.path, content=f.content, permissions=f"{f.mode:04o}",
                                                  owner=str(w.user), group=str(w.user)) for f in files]
            uploads += [docker.ContainerUploadArgs(file=path, content=self.secrets[key], permissions="0600",
                                                   owner=str(w.user), group=str(w.user))
                        for path, key in sorted(secret_files.items())]
            if uploads:
                for f in [*files, *secret_files]:
                    path = f if isinstance(f, str) else f.path
                    if not path.startswith(CONF_ROOT + "/"):
                        raise ValueError(f"{w.name}: file {path!r} is outside {CONF_ROOT}")
                conf = docker.Volume(f"{member}-conf", name=f"{self.cname(member)}-conf",
                                     labels=[docker.VolumeLabelArgs(label="recon.stack", value=self.spec.name)],
                                     opts=pulumi.ResourceOptions(parent=parent))
                out.append(conf)
                mounts.append(docker.ContainerMountArgs(target=CONF_ROOT, type="volume", source=conf.name))
            for name, target in sorted(w.shared.items()):
                mounts.append(docker.ContainerMountArgs(target=target, type="volume",
                                                        source=self._shared(name, out).name))
            for host_path, target in sorted(w.host_paths.items()):
                # no rslave propagation: /proc and /sys need none, and it fails on hosts whose root
                # mount is not shared ("not a shared or slave mount")
                mounts.append(docker.ContainerMountArgs(target=target, type="bind", source=host_path, read_only=True))
            env: list[pulumi.Input[str]] = [f"{k}={v}" for k, v in sorted(w.env.items())]
            if w.script:
                env += [f"RECON_MEMBER={member}", f"RECON_MEMBER_HOST={self.layout.host_of(member)}"]
            env += [pulumi.Output.concat(f"{k}=", self.secrets[v]) for k, v in sorted(w.secret_env.items())]
            if w.script:
                entrypoints, command = ["/bin/sh", "-c"], [w.script]
            else:
                entrypoints, command = w.command, w.args
            aliases = [member] + ([w.name] if w.name != member else [])
            networks = [docker.ContainerNetworksAdvancedArgs(name=self.host.networks[t].name, aliases=aliases)
                        for t in w.tier]
            r = w.resources
            running = w.kind not in ("job", "cronjob")
            stop = _stop_signal(self.spec, member)
            check = healthcheck(w.liveness, w.http_client) if running else None
            container = docker.Container(
                member, name=self.cname(member), hostname=member, image=w.image,
                entrypoints=entrypoints, command=command, envs=env, user=f"{w.user}:{w.user}",
                read_only=w.read_only_root,
                tmpfs={p: "rw,nosuid,nodev,size=256m" for p in w.writable},
                mounts=mounts, uploads=uploads or None, networks_advanced=networks,
                ports=[docker.ContainerPortArgs(internal=p.number, external=p.number, ip=p.host_ip)
                       for p in w.ports if p.published],
                healthcheck=check, stop_signal=stop,
                cpus=str(r.cpu_limit), memory=r.memory_limit_mib, memory_reservation=r.memory_request_mib,
                memory_swap=r.memory_limit_mib,
                capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
                security_opts=["no-new-privileges:true"], privileged=False,
                restart="unless-stopped" if running else "no", must_run=running,
                start=w.kind != "cronjob", wait=check is not None, wait_timeout=120,
                attach=w.kind == "job", logs=w.kind == "job",
                log_driver="json-file", log_opts=LOG_OPTS,
                labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted({
                    "recon.stack": self.spec.name, "recon.component": w.component, "recon.role": w.role,
                    "recon.workload": w.name, **w.labels,
                    **{f"recon.policy.exempt.{rule}": why for rule, why in w.exemptions.items()}}.items())],
                opts=opts)
            self.container_names[member] = self.cname(member)
            containers.append(container)
        self.containers[w.name] = containers
        return out + containers

    def _pg_client_files(self, w: Workload) -> dict[str, str]:
        """The PostgreSQL certificate, as the root to verify it with, in every workload the
        database accepts connections from (its peers) and in the database's own containers."""
        if not self.layout.pg_tls():
            return {}
        clients = {e.source for d in self.workloads if d.component == "database" for e in d.peers}
        if w.component != "database" and w.role not in clients:
            return {}
        return {self.layout.pg_tls()["sslrootcert"]: "postgres_tls_cert"}

    def _shared(self, name: str, out: list[pulumi.Resource]) -> docker.Volume:
        """The stack's volume ``name``, declared by the first workload that mounts it; kept when
        the stack is destroyed, as the data volumes are (it holds the backups)."""
        if name not in self.shared:
            self.shared[name] = docker.Volume(
                f"shared-{name}", name=f"recon-{self.spec.name}-{name}",
                labels=[docker.VolumeLabelArgs(label="recon.stack", value=self.spec.name)],
                opts=pulumi.ResourceOptions(parent=self.host, retain_on_delete=True))
            out.append(self.shared[name])
        return self.shared[name]

    def traffic(self, slots: dict[str, Workload], parent: pulumi.Resource) -> list[pulumi.Resource]:
        return []

    def edge(self, proxy: Workload, parent: pulumi.Resource) -> list[pulumi.Resource]:
        backends = [name for name in self.containers if name.startswith("backend-")]
        proxy.after = backends
        return self.deploy(proxy, parent)

    def endpoints(self) -> dict[str, Any]:
        n = self.spec.nginx
        public = (f"https://{n.server_name}:{n.https_port}/" if n.tls else f"http://{n.server_name}:{n.http_port}/")
        return {"public": public, "health": f"http://{n.server_name}:{n.http_port}/health",
                "prometheus": f"http://127.0.0.1:{self.spec.prometheus.port}",
                "grafana": f"http://127.0.0.1:{self.spec.grafana.port}",
                "jaeger": f"http://127.0.0.1:{self.spec.jaeger.ui_port}"}

    def where(self, w: Workload, member: str) -> dict[str, Any]:
        """How ops/ reaches one process: ``docker exec <container>`` on the staging host."""
        return {"container": self.cname(member), "workload": w.name, "workload_kind": w.kind}
