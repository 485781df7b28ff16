"""Staging on Docker: image build times and the stack's time to healthy (docs/images.md).

    python benchmarks/bench_docker.py [--from-nothing]

- images: every image the staging program declares, built now (reused when its content tag
  exists); with --from-nothing, every recon-* image and the build cache are removed first and
  the base is made again with debootstrap (target 6 min);
- app-only change: one file added under app/, the images built again: only recon-app is
  (target 60 s);
- up: the captured program applied to the engine until every container is healthy, images
  present (target 60 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RECON_NGINX__PUBLISH_ADDRESS", "127.0.0.1")

from infra.spec import load_spec  # noqa: E402
from ops import images  # noqa: E402
from testing.pulumi_mocks import run  # noqa: E402
from tests.docker.apply import Harness  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from-nothing", action="store_true")
    a = ap.parse_args()
    spec = load_spec("staging")
    quiet = lambda m: None  # noqa: E731
    if a.from_nothing:
        refs = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True,
                              text=True).stdout.split()
        subprocess.run(["docker", "rmi", "-f", *[r for r in refs if r.startswith("recon-")]], capture_output=True)
        subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True)
        shutil.rmtree(images.ROOTFS_CACHE / "rootfs-bookworm", ignore_errors=True)
    t0 = time.monotonic()
    images.build_all(spec, quiet)
    full = time.monotonic() - t0
    marker = ROOT / "app" / "_bench_docker_marker.py"
    marker.write_text(f"# bench_docker: an app-only change ({time.time()})\n")
    try:
        t0 = time.monotonic()
        again = images.build_all(spec, quiet)
        app_only = time.monotonic() - t0
    finally:
        marker.unlink()
    rebuilt = [k for k, v in again.items() if isinstance(v, dict) and v.get("seconds") and not v.get("reused")
               and k != "base"]
    h = Harness(run(spec, realistic=True), say=quiet)
    h.destroy(spec.name)
    try:
        up = h.apply().seconds["containers"]
    finally:
        h.destroy(spec.name)
    images.build_all(spec, quiet)  # the tree's own app image again
    print(f"{'figure':44} {'seconds':>8}  target")
    print(f"{'images ' + ('from nothing' if a.from_nothing else '(reused where built)'):44} {full:8.1f}  "
          f"{'<= 360' if a.from_nothing else ''}")
    print(f"{'rebuild after an app-only change':44} {app_only:8.1f}  <= 60   (rebuilt: {', '.join(rebuilt)})")
    print(f"{'stack up to all healthy, images present':44} {up:8.1f}  <= 60")
    return 0 if app_only <= 60 and up <= 60 and rebuilt == ["app-0.1.0"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
