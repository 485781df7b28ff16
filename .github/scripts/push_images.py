"""Push a stack's images to the registry its Kubernetes program pulls from (deploy.yml).

    .venv/bin/python .github/scripts/push_images.py --stack production [--dry-run]

The kubernetes program names each service image ``<images.registry>/<local ref>``
(infra/kubernetes/platform.py, "as CI pushes it") and each slot's app image by the slot's
``image``. ``fab images.build --stack STACK`` has built them on this engine under their local
refs (``fab images.list --json``); this tags each one under the name the program pulls and
pushes it. Upstream images (Grafana, Jaeger) are pulled from their own registries, not pushed.

Credentials: REGISTRY_USERNAME and REGISTRY_PASSWORD (the password goes to ``docker login``
on stdin). Nothing is pushed unless every image the program needs is built.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def plan(rows: list[dict], registry: str, slots: dict[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """(local ref, remote ref) for every image to push.

    rows: ``fab images.list --json``; slots: slot name -> (version, image the program pulls).
    """
    if not registry:
        raise SystemExit("recon:images.registry is empty in the stack's config: the cluster could not pull "
                         "the images; set it (Pulumi.<stack>.yaml, docs/images.md)")
    pairs: list[tuple[str, str]] = []
    missing: list[str] = []
    for row in rows:
        name, ref, built = row["image"], row["ref"], row["built"]
        if name == "base" or isinstance(built, str):  # the build's base; upstream images
            continue
        if built is not True:
            missing.append(ref)
            continue
        if name.startswith("app-"):
            version = name.removeprefix("app-")
            pairs += [(ref, image) for v, image in slots.values() if v == version]
        else:
            pairs.append((ref, f"{registry}/{ref}"))
    for slot, (version, image) in sorted(slots.items()):
        if not image.startswith(registry + "/"):
            raise SystemExit(f"slot {slot} pulls {image}, outside recon:images.registry {registry}: "
                             "the program would pull an image this pipeline never pushed")
        if not any(remote == image for _, remote in pairs):
            missing.append(f"app {version} (slot {slot})")
    if missing:
        raise SystemExit("not built, nothing pushed: " + ", ".join(sorted(set(missing))) +
                         " (run fab images.build --stack STACK first)")
    return sorted(set(pairs))


def _run(argv: list[str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])}: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--dry-run", action="store_true", help="print the plan, push nothing")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from ops.tasks.shared import spec_of  # the project's own spec loading and validation

    spec = spec_of(args.stack)
    registry = spec.images.registry
    slots: dict[str, tuple[str, str]] = {str(name): (s.version, s.image) for name, s in spec.backend.slots.items()}
    fab = str(Path(sys.executable).parent / "fab")
    rows = json.loads(_run([fab, "images.list", "--stack", args.stack, "--json"]))
    pairs = plan(rows, registry, slots)
    for local, remote in pairs:
        print(f"{local} -> {remote}")
    if args.dry_run:
        return 0
    user, password = os.environ.get("REGISTRY_USERNAME", ""), os.environ.get("REGISTRY_PASSWORD", "")
    if user and password:
        _run(["docker", "login", registry.split("/")[0], "--username", user, "--password-stdin"], stdin=password)
    for local, remote in pairs:
        _run(["docker", "tag", local, remote])
        _run(["docker", "push", remote])
    print(f"pushed {len(pairs)} image(s) to {registry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
