"""Apply a captured Pulumi program to a real Docker engine: the staging stack, as declared.

The Pulumi engine cannot run here. This harness runs the staging program under the mock
runtime (testing/pulumi_mocks.py, with realistic random and tls answers) and creates exactly
the resources it declared, with the Docker SDK for Python, in dependency order:

    docker:index/network:Network       -> networks (driver, internal, attachable, labels)
    docker:index/volume:Volume         -> volumes (labels)
    docker:index/image:Image           -> docker build (context, dockerfile, build args, name)
    docker:index/container:Container   -> create with every input, upload the files, start,
                                          wait until healthy (wait) or until it exits (attach)
    random / tls                       -> already real values (the mocks emulate those providers)

It is a verification device, not a second deployment tool: operators run `pulumi up -s
staging`. It fails on any resource type or container input it does not apply, so nothing is
silently dropped between the program and the engine. The one exception is written here with
its reason: upstream images that need a registry (Grafana, Jaeger: no Debian package) and the
containers that run them are not created on this machine.
"""

from __future__ import annotations

import io
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import docker
from docker.types import Healthcheck, Mount

from testing.pulumi_mocks import remote_image_id

NOT_RUN_HERE = {
    "docker:index/remoteImage:RemoteImage": "an upstream image: no registry is reachable from this machine",
}
"""Resource types the harness does not create, with why (their containers are skipped too)."""
COMPUTED = ("random:index/randomPassword:RandomPassword", "tls:index/privateKey:PrivateKey",
            "tls:index/selfSignedCert:SelfSignedCert")
CONTAINER_INPUTS = {
    "name", "hostname", "image", "entrypoints", "command", "envs", "user", "readOnly", "tmpfs", "mounts",
    "uploads", "networksAdvanced", "ports", "healthcheck", "cpus", "memory", "memoryReservation", "memorySwap",
    "capabilities", "securityOpts", "privileged", "restart", "mustRun", "start", "wait", "waitTimeout",
    "attach", "logs", "logDriver", "logOpts", "labels", "stopSignal",
}


class NotApplied(AssertionError):
    """The capture holds something this harness does not know how to apply."""


def _duration_ns(text: str) -> int:
    units = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            return int(float(text[:-len(suffix)]) * units[suffix])
    raise NotApplied(f"duration {text!r}: expected <n>ms, <n>s or <n>m")


def _urn_key(urn: str) -> tuple[str, str]:
    parts = urn.split("::")
    return parts[2].split("$")[-1], parts[3]


@dataclass
class Applied:
    """What the harness created, for the tests and for tearing it down."""

    networks: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)
    images: dict[str, float] = field(default_factory=dict)
    containers: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class Harness:
    def __init__(self, run: Any, client: docker.DockerClient | None = None, say: Callable[[str], None] = print):
        self.run = run
        self.client = client or docker.from_env(timeout=600)
        self.say = say
        self.applied = Applied()
        self._unresolved_images: set[str] = set()

    # -- order ---------------------------------------------------------------------------------
    def ordered(self, type_: str) -> list[Any]:
        """Resources of ``type_`` so that each comes after those of the same type it depends on."""
        recs = {r.name: r for r in self.run.of_type(type_)}
        done: list[Any] = []
        seen: set[str] = set()

        def visit(name: str, path: tuple[str, ...]) -> None:
            if name in seen:
                return
            if name in path:
                raise NotApplied(f"dependency cycle among {type_}: {' -> '.join(path + (name,))}")
            for urn in recs[name].depends_on:
                t, n = _urn_key(urn)
                if t == type_ and n in recs:
                    visit(n, path + (name,))
            seen.add(name)
            done.append(recs[name])

        for name in sorted(recs):
            visit(name, ())
        return done

    def waves(self, type_: str) -> list[list[Any]]:
        """:meth:`ordered`, grouped: each wave depends only on earlier waves."""
        level: dict[str, int] = {}
        for rec in self.ordered(type_):
            deps = [level[n] for t, n in map(_urn_key, rec.depends_on) if t == type_ and n in level]
            level[rec.name] = 1 + max(deps, default=-1)
        recs = {r.name: r for r in self.run.of_type(type_)}
        return [[recs[n] for n in sorted(level) if level[n] == i] for i in range(max(level.values(), default=-1) + 1)]

    def check_types(self) -> None:
        known = {"docker:index/network:Network", "docker:index/volume:Volume", "docker:index/image:Image",
                 "docker:index/container:Container", *NOT_RUN_HERE, *COMPUTED}
        unknown = sorted({r.type for r in self.run.records if r.custom and r.type not in known})
        if unknown:
            raise NotApplied(f"resource types this harness does not apply: {unknown}")

    # -- apply ---------------------------------------------------------------------------------
    def apply(self) -> Applied:
        t0 = time.monotonic()
        self.check_types()
        for rec in self.run.of_type("docker:index/network:Network"):
            self.network(rec.props)
        for rec in self.run.of_type("docker:index/volume:Volume"):
            self.volume(rec.props)
        t = time.monotonic()
        for rec in self.run.of_type("docker:index/image:Image"):
            self.image(rec.props)
        self.applied.seconds["images"] = round(time.monotonic() - t, 1)
        for rec in self.run.of_type("docker:index/remoteImage:RemoteImage"):
            # a container names it by the image id the (mocked) provider returned
            self._unresolved_images |= {rec.props["name"], remote_image_id(rec.name)}
            self.applied.skipped[rec.props["name"]] = NOT_RUN_HERE[rec.type]
        t = time.monotonic()
        for wave in self.waves("docker:index/container:Container"):
            # as the engine does: everything whose dependencies are done, at once
            with ThreadPoolExecutor(max_workers=8) as pool:
                for future in [pool.submit(self.container, rec) for rec in wave]:
                    future.result()
        self.applied.seconds["containers"] = round(time.monotonic() - t, 1)
        self.applied.seconds["total"] = round(time.monotonic() - t0, 1)
        return self.applied

    def network(self, p: dict) -> None:
        unknown = set(p) - {"name", "driver", "internal", "attachable", "labels"}
        if unknown:
            raise NotApplied(f"network {p.get('name')}: inputs not applied: {sorted(unknown)}")
        labels = {lb["label"]: lb["value"] for lb in p.get("labels", [])}
        existing = self.client.networks.list(names=[p["name"]])
        net = existing[0] if existing else self.client.networks.create(
            p["name"], driver=p.get("driver", "bridge"), internal=bool(p.get("internal")),
            attachable=bool(p.get("attachable")), labels=labels)
        self.applied.networks[p["name"]] = net.id

    def volume(self, p: dict) -> None:
        unknown = set(p) - {"name", "labels"}
        if unknown:
            raise NotApplied(f"volume {p.get('name')}: inputs not applied: {sorted(unknown)}")
        labels = {lb["label"]: lb["value"] for lb in p.get("labels", [])}
        vol = self.client.volumes.create(name=p["name"], labels=labels)
        self.applied.volumes[p["name"]] = vol.name

    def image(self, p: dict) -> None:
        # buildOnPreview: whether `pulumi preview` builds too; nothing to apply in an update
        unknown = set(p) - {"imageName", "skipPush", "build", "buildOnPreview"}
        build = p.get("build") or {}
        unknown |= {f"build.{k}" for k in set(build) - {"context", "dockerfile", "args", "platform"}}
        if unknown:
            raise NotApplied(f"image {p.get('imageName')}: inputs not applied: {sorted(unknown)}")
        ref = p["imageName"]
        try:
            self.client.images.get(ref)
            self.applied.images[ref] = 0.0
            return
        except docker.errors.ImageNotFound:
            pass
        self.say(f"building {ref}")
        t = time.monotonic()
        try:
            self.client.images.build(path=build["context"], dockerfile=build["dockerfile"], tag=ref,
                                     buildargs=build.get("args") or {}, network_mode="host", rm=True,
                                     platform=build.get("platform"))
        except docker.errors.BuildError as exc:
            tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-2000:]
            raise AssertionError(f"docker build of {ref} failed: {exc}\n{tail}") from None
        self.applied.images[ref] = round(time.monotonic() - t, 1)

    def container(self, rec: Any) -> None:
        p = rec.props
        unknown = set(p) - CONTAINER_INPUTS
        if unknown:
            raise NotApplied(f"container {p['name']}: inputs not applied: {sorted(unknown)}")
        if p["image"] in self._unresolved_images:
            self.applied.skipped[p["name"]] = f"runs {p['image']}: {NOT_RUN_HERE['docker:index/remoteImage:RemoteImage']}"
            return
        name = p["name"]
        old = self.client.containers.list(all=True, filters={"name": f"^{name}$"})
        for c in old:
            c.remove(force=True)
        nets = p.get("networksAdvanced") or []
        first, rest = (nets[0], nets[1:]) if nets else (None, [])
        hc = p.get("healthcheck")
        healthcheck = Healthcheck(test=hc["tests"], interval=_duration_ns(hc["interval"]),
                                  timeout=_duration_ns(hc["timeout"]), retries=int(hc["retries"]),
                                  start_period=_duration_ns(hc["startPeriod"])) if hc else None
        mounts = [Mount(m["target"], m["source"], type=m["type"], read_only=bool(m.get("readOnly")),
                        propagation=(m.get("bindOptions") or {}).get("propagation"))
                  for m in p.get("mounts") or []]
        ports = {f"{x['internal']}/tcp": (x.get("ip", "0.0.0.0"), x["external"]) for x in p.get("ports") or []}
        restart = p.get("restart", "no")
        kwargs = dict(
            name=name, hostname=p.get("hostname"), entrypoint=p.get("entrypoints"), command=p.get("command"),
            environment=list(p.get("envs") or []), user=p.get("user"), read_only=bool(p.get("readOnly")),
            tmpfs=p.get("tmpfs") or {}, mounts=mounts, ports=ports, healthcheck=healthcheck,
            nano_cpus=int(float(p["cpus"]) * 1e9) if p.get("cpus") else None,
            mem_limit=f"{p['memory']}m" if p.get("memory") else None,
            mem_reservation=f"{p['memoryReservation']}m" if p.get("memoryReservation") else None,
            memswap_limit=f"{p['memorySwap']}m" if p.get("memorySwap") else None,
            cap_drop=(p.get("capabilities") or {}).get("drops"), cap_add=(p.get("capabilities") or {}).get("adds"),
            security_opt=p.get("securityOpts"), privileged=bool(p.get("privileged")),
            restart_policy={"Name": restart} if restart != "no" else None,
            stop_signal=p.get("stopSignal"),
            log_config={"type": p.get("logDriver", "json-file"), "config": p.get("logOpts") or {}},
            labels={lb["label"]: lb["value"] for lb in p.get("labels") or []},
            network=first["name"] if first else None,
            networking_config=({first["name"]: self.client.api.create_endpoint_config(aliases=first.get("aliases"))}
                               if first else None),
            detach=True)
        container = self.client.containers.create(p["image"], **{k: v for k, v in kwargs.items() if v is not None})
        for net in rest:
            self.client.networks.get(net["name"]).connect(container, aliases=net.get("aliases"))
        # each file into the mount that holds it (a read-only root filesystem refuses writes
        # anywhere else, as with the provider)
        targets = sorted((m["target"] for m in p.get("mounts") or []), key=len, reverse=True)
        by_root: dict[str, list[dict]] = {}
        for u in p.get("uploads") or []:
            root = next((t for t in targets if u["file"].startswith(t.rstrip("/") + "/")), "/")
            by_root.setdefault(root, []).append(u)
        for root, files in by_root.items():
            container.put_archive(root, _tar(files, root))
        self.applied.containers[name] = container.id
        if p.get("start") is False:
            return
        self.say(f"starting {name}")
        container.start()
        if p.get("attach"):
            code = container.wait(timeout=int(p.get("waitTimeout", 300)))["StatusCode"]
            if code != 0:
                raise AssertionError(f"{name} exited {code}:\n{container.logs(tail=40).decode(errors='replace')}")
        elif p.get("wait"):
            self.wait_healthy(container, int(p.get("waitTimeout", 120)))

    def wait_healthy(self, container: Any, timeout: int) -> None:
        deadline = time.monotonic() + timeout
        while True:
            container.reload()
            state = container.attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            if health == "healthy":
                return
            if state["Status"] in ("exited", "dead") or health == "unhealthy" or time.monotonic() > deadline:
                logs = container.logs(tail=30).decode(errors="replace")
                raise AssertionError(f"{container.name} is {state['Status']}/{health} (waited for healthy, like "
                                     f"pulumi-docker's wait):\n{logs}")
            time.sleep(0.5)

    def save_inventory(self, path: Any) -> None:
        """The program's ``inventory`` output, as `pulumi stack output --json --show-secrets
        inventory > <state>/inventory.json` saves it (0600: it holds the DSNs)."""
        import json
        import os

        from testing.pulumi_mocks import resolve
        doc = resolve(self.run.stack.outputs["inventory"])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)

    # -- teardown ------------------------------------------------------------------------------
    def destroy(self, stack: str) -> None:
        """Remove what a stack's label marks: containers, then volumes and networks."""
        for c in self.client.containers.list(all=True, filters={"label": f"recon.stack={stack}"}):
            c.remove(force=True)
        for v in self.client.volumes.list(filters={"label": f"recon.stack={stack}"}):
            v.remove(force=True)
        for n in self.client.networks.list(filters={"label": f"recon.stack={stack}"}):
            n.remove()


def _tar(uploads: list[dict], root: str = "/") -> bytes:
    """The files as a tar relative to ``root``, with their modes and owners (directories too)."""
    buf = io.BytesIO()
    prefix = root.rstrip("/") + "/"
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for u in uploads:
            path = u["file"][len(prefix):] if root != "/" else u["file"].lstrip("/")
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    info.uid, info.gid = int(u.get("owner", 0)), int(u.get("group", 0))
                    tar.addfile(info)
            data = u["content"].encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), int(u.get("permissions", "0644"), 8)
            info.uid, info.gid = int(u.get("owner", 0)), int(u.get("group", 0))
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
