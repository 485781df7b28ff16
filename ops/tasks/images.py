"""``fab images.build``, ``fab images.list``: the docker and kubernetes targets' images, built here.

    fab images.build [--stack staging] [--only NAME] [--force]   base, wheels, every image (docs/images.md)
    fab images.list  [--stack staging] [--json]                  each image, its content tag, built or not
"""

from __future__ import annotations

import json as jsonlib

from invoke import Collection, task

from ops.console import progress, table
from ops.tasks.shared import STACK_HELP, reported, spec_of


@task(name="build", default=True,
      help={"stack": STACK_HELP + " (default staging)", "only": "build only this image (fab images.list)",
            "force": "rebuild even when the content tag exists"})
def build(c, stack="staging", only=None, force=False):
    """Build every image the stack's Pulumi program declares, on this machine's Docker engine."""
    from ops import images
    spec = spec_of(stack)
    with reported():
        report = images.build_all(spec, progress, only=only, force=force)
    built = [k for k, v in report.items() if isinstance(v, dict) and v.get("seconds") and not v.get("reused")]
    progress(f"images ready after {report['total_s']}s; built: {', '.join(built) or 'nothing (all up to date)'}")
    print(jsonlib.dumps(report, indent=1))


@task(name="list", help={"stack": STACK_HELP + " (default staging)", "json": "machine-readable output"})
def list_(c, stack="staging", json=False):
    """Each image the stack declares: name, content tag, whether this engine has it."""
    from infra import images as defs
    from ops import images
    spec = spec_of(stack)
    with reported():
        rows = [{"image": k, "ref": d.ref, "built": images.exists(d.ref)} for k, d in images.definitions(spec).items()]
        rows.insert(0, {"image": "base", "ref": defs.base_ref(spec), "built": images.exists(defs.base_ref(spec))})
        rows += [{"image": k, "ref": ref, "built": "not run here (no Debian package)"} for k, ref in defs.UPSTREAM.items()]
    print(jsonlib.dumps(rows, indent=1) if json else table(rows, ["image", "ref", "built"]))


images_ns = Collection("images", build, list_)
