"""Build the stack's images on this machine's Docker engine (definitions: infra/images.py).

    base      recon-base:bookworm from debootstrap --variant=minbase (cached rootfs outside the
              clone) and ``docker import``; or ``docker pull`` of images.base
    wheels    .build/runtime.lock (the service's closure of requirements.lock) and its wheels,
              downloaded on the host with the host's pip configuration, hashes checked
    images    ``docker build --network host`` per definition, skipped when the content tag exists

Each step prints progress; a failed build names the image and ends with the build's last lines.

Trap: ``--network host`` is what lets apt inside a build reach the Debian mirror here (the
engine runs without NAT); builds need no other network. The app build needs none at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from infra import images
from infra.spec import StackSpec
from ops.errors import OpsError

ROOTFS_CACHE = Path(os.environ.get("RECON_IMAGE_CACHE", "/var/cache/recon"))
Progress = Callable[[str], None]


class BuildFailed(OpsError):
    pass


def docker(*args: str, check: bool = True, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError:
        raise BuildFailed("the docker client is not installed: run `sh ops/docker-engine.sh`") from None
    if check and res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
        raise BuildFailed(f"`docker {' '.join(args[:3])} ...` exited {res.returncode}:\n{tail}")
    return res


def exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def engine_answers() -> bool:
    try:
        return docker("info", check=False, timeout=20).returncode == 0
    except BuildFailed:
        return False


def ensure_base(spec: StackSpec, say: Progress) -> str:
    ref = images.base_ref(spec)
    if exists(ref):
        return ref
    if spec.images.base_source == "pull":
        say(f"pulling {ref}")
        docker("pull", ref, timeout=1800)
        return ref
    rootfs = ROOTFS_CACHE / "rootfs-bookworm"
    if not (rootfs / "etc" / "debian_version").exists():
        if not shutil.which("debootstrap"):
            raise BuildFailed("debootstrap is missing: apt-get install debootstrap (ops/system-packages.sh does)")
        say(f"debootstrap --variant=minbase bookworm into {rootfs} (about a minute)")
        tmp = rootfs.with_name(rootfs.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp), spec.images.debian_mirror],
                             capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise BuildFailed("debootstrap failed:\n" + "\n".join(res.stdout.strip().splitlines()[-10:]))
        shutil.rmtree(rootfs, ignore_errors=True)
        tmp.rename(rootfs)
    say(f"docker import {ref}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    res = subprocess.run(["docker", "import", "-", ref], stdin=tar.stdout, capture_output=True, text=True,
                         timeout=600)
    tar.wait()
    if res.returncode != 0:
        raise BuildFailed(f"docker import failed: {res.stderr.strip()[-500:]}")
    return ref


def prepare_app_context(say: Progress) -> None:
    """.build/runtime.lock and .build/wheels: what the app image installs, and nothing more."""
    lock = "\n".join(images.runtime_requirements()) + "\n"
    build = images.BUILD_DIR
    wheels = build / "wheels"
    build.mkdir(exist_ok=True)
    path = build / "runtime.lock"
    if path.exists() and path.read_text() == lock and (wheels / ".complete").exists():
        return
    say(f"downloading the service's {lock.count('==')} locked wheels into {wheels}")
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    path.write_text(lock)
    res = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
                          "--only-binary=:all:", "-d", str(wheels), "-r", str(path)],
                         capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise BuildFailed("pip download of the locked wheels failed:\n" + res.stderr.strip()[-1500:])
    (wheels / ".complete").touch()


def build(defn: images.ImageDef, say: Progress, force: bool = False) -> tuple[str, float | None]:
    """Build one image unless its content tag exists; returns (ref, seconds or None if reused)."""
    if exists(defn.ref) and not force:
        return defn.ref, None
    say(f"building {defn.ref}")
    t0 = time.monotonic()
    args = ["build", "--network", "host", "-f", str(defn.dockerfile), "-t", defn.ref, "-t", f"{defn.name}:latest"]
    for k, v in sorted(defn.args.items()):
        args += ["--build-arg", f"{k}={v}"]
    docker(*args, str(defn.context), timeout=3600, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return defn.ref, time.monotonic() - t0


def definitions(spec: StackSpec) -> dict[str, images.ImageDef]:
    out = dict(images.service_images(spec))
    for slot in ("blue", "green"):
        version = spec.backend.slots[slot].version
        out[f"app-{version}"] = images.app_image(spec, version)
    return out


def build_all(spec: StackSpec, say: Progress, only: str | None = None, force: bool = False) -> dict[str, dict]:
    if not engine_answers():
        raise BuildFailed("no Docker engine answers (docker info failed): run `sh ops/docker-engine.sh`, "
                          "or set DOCKER_HOST to an engine")
    t0 = time.monotonic()
    report: dict[str, dict] = {"base": {"ref": ensure_base(spec, say), "seconds": round(time.monotonic() - t0, 1)}}
    defs = definitions(spec)
    if only:
        if only not in defs:
            raise BuildFailed(f"--only {only!r}: one of {sorted(defs)}")
        defs = {only: defs[only]}
    if any(d.name == "recon-app" for d in defs.values()):
        prepare_app_context(say)
    for key, defn in defs.items():
        ref, seconds = build(defn, say, force)
        report[key] = {"ref": ref, "seconds": round(seconds, 1) if seconds is not None else None,
                       "reused": seconds is None}
    report["total_s"] = round(time.monotonic() - t0, 1)
    return report
