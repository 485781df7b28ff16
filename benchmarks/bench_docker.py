"""Staging on Docker: image build times and the stack's time to healthy (docs/images.md).

    python benchmarks/bench_docker.py [--from-nothing] [--no-drills]

- images: every image the staging program declares, built now (reused when its content tag
  exists); with --from-nothing, every recon-* image and the build cache are removed first and
  the base is made again with debootstrap (target 6 min);
- app-only change: one file added under app/, the images built again: only recon-app is
  (target 60 s);
- up: the captured program applied to the engine until every container is healthy, images
  present (target 60 s);
- the recovery drill (skip with --no-drills) on both targets, side by side: the docker one
  (tests/docker/test_staging.py) and the local one (tests/backup/test_drill.py, on a throwaway
  local stack of its own), each printing its RPO, restore times and writes lost.
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
    ap.add_argument("--no-drills", action="store_true", help="skip the recovery drills on docker and locally")
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
    ok = app_only <= 60 and up <= 60 and rebuilt == ["app-0.1.0"]
    if not a.no_drills:
        ok = drills() and ok
    return 0 if ok else 1


def _figures(test: str, marker: str) -> dict:
    import json
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test],
                         cwd=ROOT, capture_output=True, text=True, timeout=3600)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith(marker)), None)
    if res.returncode != 0 or line is None:
        print(f"{test}: failed (exit {res.returncode})\n{res.stdout[-2000:]}")
        return {}
    return json.loads(line[len(marker):])


def drills() -> bool:
    docker = _figures("tests/docker/test_staging.py::test_drill_on_docker_pitr_to_a_mark_lose_the_primary_restore_latest",
                      "docker figures: ")
    local = _figures("tests/backup/test_drill.py::test_drill_destroy_the_primary_restore_latest_and_to_a_marked_time",
                     "drill figures: ")
    rows = [("archive_timeout_s (bounds the RPO)", docker.get("archive_timeout_s"), local.get("archive_timeout_s")),
            ("RPO after losing the primary (s)", docker.get("rpo_s"), local.get("rpo_s")),
            ("acknowledged writes lost / acknowledged", f"{docker.get('writes_lost')}/{docker.get('writes_acked')}",
             f"{local.get('writes_lost')}/{local.get('writes_acked')}"),
            ("restore latest: database writable (s)", docker.get("disaster_db_rto_s"), local.get("db_rto_s")),
            ("restore latest: stack healthy (s)", docker.get("disaster_restore_s"), local.get("full_rto_s")),
            ("PITR to a mark: stack healthy (s)", docker.get("pitr_restore_s"), None)]
    print(f"\n{'drill':44} {'docker':>10} {'local':>10}")
    for title, d, lo in rows:
        fmt = lambda v: "-" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)  # noqa: E731
        print(f"{title:44} {fmt(d):>10} {fmt(lo):>10}")
    return bool(docker) and bool(local)


if __name__ == "__main__":
    raise SystemExit(main())
