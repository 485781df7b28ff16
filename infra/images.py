"""The images the stack runs: built from Debian packages and the lock file, tagged by content.

    recon-base        Debian bookworm: pulled (images.base_source "pull") or made here with
                      debootstrap --variant=minbase and ``docker import`` ("build")
    recon-<service>   images/service.Dockerfile on the base: the catalogue's Debian packages
                      (postgres: postgresql-15 + pgbackrest; redis: server, sentinel, tools; ...)
    recon-app         ./Dockerfile: a builder stage makes the virtualenv from wheels of
                      requirements.lock's runtime closure (built on the host: no network and no
                      certificate in the build), the runtime stage copies it and app/; non-root

Every tag is a hash of what goes into the image (Dockerfile, base, packages, for the app the
locked wheels and the app tree), so a rebuild after an app-only change reuses every other
image, and a changed package list is a new tag. The docker and kubernetes programs declare
these same definitions (infra/components: ``platform.image(name)``); ``fab images.build``
builds them here.

Grafana and Jaeger have no Debian package: they stay upstream images, declared, not run on
this machine (the catalogue says so, and so does ``fab status``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from infra import services
from infra.spec import REPO_ROOT, StackSpec

SERVICE_DOCKERFILE = REPO_ROOT / "images" / "service.Dockerfile"
APP_DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCK = REPO_ROOT / "requirements.lock"
BUILD_DIR = REPO_ROOT / ".build"
"""Build-context extras made on the host (wheels, the runtime lock); ignored by git."""
BACKUP_ROOT = "/var/lib/backup"
"""The backup repository's mount point in the database containers."""
UID = 10001
"""Every built image runs its process as this unprivileged user (``recon``)."""

EXTRAS: dict[str, tuple[str, ...]] = {
    # what a service's image needs beyond the service's own package
    "postgres": ("pgbackrest", "ca-certificates"),
    "redis": ("redis-sentinel", "redis-tools"),
    "nginx": ("curl",),
    "prometheus": ("curl",),
    "alertmanager": ("curl",),
    "postgres-exporter": ("curl",),
    "redis-exporter": ("curl",),
    "node-exporter": ("curl",),
    "nginx-exporter": ("curl",),
}
UPSTREAM: dict[str, str] = {
    # no Debian package: pulled where a registry is reachable, never run here
    "grafana": "grafana/grafana:11.1.3",
    "jaeger": "jaegertracing/all-in-one:1.59.0",
}
UPSTREAM_UIDS: dict[str, int] = {"grafana": 472, "jaeger": 10001}
"""The user each upstream image's files belong to; the platform runs the process as it."""


@dataclass(frozen=True)
class ImageDef:
    name: str
    """recon-postgres, recon-app, ..."""
    dockerfile: Path
    context: Path
    args: dict[str, str] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    """Content the tag is a hash of (besides the Dockerfile and args)."""

    @property
    def tag(self) -> str:
        h = hashlib.sha256(self.dockerfile.read_bytes())
        for k, v in sorted(self.args.items()):
            h.update(f"{k}={v}\n".encode())
        for item in self.inputs:
            h.update(item.encode() + b"\n")
        return h.hexdigest()[:12]

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"


def image_of(service_name: str) -> str:
    """The image a catalogue service runs in: postgres-primary and -replica share ``postgres``."""
    s = services.service(service_name)
    if s.kind in ("backend", "worker"):
        return "app"
    if s.kind == "postgres":
        return "postgres"
    if s.kind in ("redis", "sentinel"):
        return "redis"
    return s.name


def base_ref(spec: StackSpec) -> str:
    return spec.images.base if spec.images.base_source == "pull" else "recon-base:bookworm"


def packages(image: str) -> tuple[str, ...]:
    own = sorted({s.package for s in services.CATALOGUE if s.package and image_of(s.name) == image})
    return tuple(own) + EXTRAS.get(image, ())


def data_dirs(image: str) -> tuple[str, ...]:
    """Directories the image's services write (volumes mount there): owned by the service user
    in the image, so a new volume starts owned by it too."""
    dirs = {s.data for s in services.CATALOGUE if s.data and image_of(s.name) == image}
    # the volumes the database and Redis containers share (the backup repository; the backup
    # metrics for node-exporter's textfile collector) start owned by the service user too
    if image in ("postgres", "redis"):
        dirs.add(BACKUP_ROOT)
    if image == "postgres":
        dirs.add(services.service("node-exporter").data or "")
    return tuple(sorted(dirs))


def service_images(spec: StackSpec) -> dict[str, ImageDef]:
    """One image per Debian-packaged service group, keyed by short name (postgres, redis, ...)."""
    base = base_ref(spec)
    out = {}
    for name in sorted({image_of(s.name) for s in services.CATALOGUE if s.package}):
        out[name] = ImageDef(f"recon-{name}", SERVICE_DOCKERFILE, REPO_ROOT / "images",
                             {"BASE": base, "PACKAGES": " ".join(packages(name)), "UID": str(UID),
                              "DATA_DIRS": " ".join(data_dirs(name))})
    return out


def app_image(spec: StackSpec, version: str) -> ImageDef:
    """The service's image for ``version``: the same code and lock, labelled with the version."""
    return ImageDef("recon-app", APP_DOCKERFILE, REPO_ROOT,
                    {"BASE": base_ref(spec), "RECON_VERSION": version, "UID": str(UID)},
                    inputs=(LOCK.read_text(), _tree_digest(REPO_ROOT / "app")))


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def runtime_requirements(lock: Path = LOCK) -> list[str]:
    """The lock's entries (with hashes) the service itself needs at run time: the closure of
    pyproject's ``service`` extra over the installed distributions' own requirements (their
    markers and requested extras honoured), each pinned as the lock pins it."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement
    roots = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["service"]
    blocks = _parse_lock(lock)
    wanted: set[str] = set()
    todo = [(Requirement(r), ()) for r in roots]
    while todo:
        req, _ = todo.pop()
        name = _norm(req.name)
        extras = tuple(sorted(req.extras))
        key = name + (f"[{','.join(extras)}]" if extras else "")
        if key in wanted:
            continue
        wanted.add(key)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            raise LookupError(f"{req.name} is not installed: run `make venv` (the lock must be installed)") from None
        for text in requires:
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in (extras or ("",))):
                todo.append((child, ()))
    names = sorted({k.split("[")[0] for k in wanted})
    missing = [n for n in names if n not in blocks]
    if missing:
        raise LookupError(f"requirements.lock does not pin {missing}: re-lock (docs/images.md)")
    return [blocks[n] for n in names]


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _parse_lock(lock: Path) -> dict[str, str]:
    """{name: the pin with its hashes}."""
    blocks: dict[str, str] = {}
    current = None
    for line in lock.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            current = _norm(line.split("==")[0])
            blocks[current] = line
        elif current and line.strip().startswith("--hash"):
            blocks[current] += "\n" + line
    return blocks
