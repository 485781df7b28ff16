"""Files: the stack's rendered configs and logs, into ``files.tar.gz`` with a sha256 list.

Uploads live in PostgreSQL (the service stores them there), so the database backup covers
them; this archive holds what is not in a database: ``conf/`` (rendered configs) and ``log/``.
Secrets are never archived (they are regenerated or come from the operator's secret store).

The files are first copied to a staging directory, so the sha256 list and the archive describe
the same bytes even while logs keep growing; ``files.sha256`` is stored next to the archive and
inside it, and ``sha256sum -c`` checks it after extraction.

Restore extracts into ``<state>/restored/<set id>/`` and reports which configs differ from the
ones in place: configs are re-rendered from the spec by ``fab up`` (the spec is the source of
truth), so the archived copies serve to show drift, not to overwrite the spec's output.
"""

from __future__ import annotations

import shlex

from ops.executors import Executor

INCLUDE = ("conf", "log")


def archive(ex: Executor, state_dir: str, set_dir: str, include: tuple[str, ...] = INCLUDE) -> dict:
    """The directories ``include`` of ``state_dir`` (on the database host) into the set."""
    q = shlex.quote
    stage = f"{set_dir}/.files-staging"
    present = " ".join(q(d) for d in include)
    ex.run(f"set -e; rm -rf {q(stage)}; mkdir -p {q(stage)}; cd {q(state_dir)}; "
           f"for d in {present}; do [ -d \"$d\" ] && cp -a \"$d\" {q(stage)}/; done; "
           f"cd {q(stage)}; find . -type f ! -name files.sha256 -print0 | sort -z | xargs -0 -r sha256sum > files.sha256; "
           f"tar -czf {q(set_dir + '/files.tar.gz.partial')} .; cp files.sha256 {q(set_dir + '/files.sha256')}; "
           f"cd /; rm -rf {q(stage)}; mv {q(set_dir + '/files.tar.gz.partial')} {q(set_dir + '/files.tar.gz')}",
           timeout=1800)
    count = ex.run(f"wc -l < {q(set_dir + '/files.sha256')}").stdout.strip()
    return {"archive": "files.tar.gz", "sha256_list": "files.sha256", "entries": int(count or 0),
            "includes": list(include)}


def restore(ex: Executor, set_dir: str, dest: str, root: str, include: tuple[str, ...] = INCLUDE) -> dict:
    """Extract into ``dest``, check every file against the sha256 list, list the drift of each
    archived config directory from the one in place under ``root`` (logs are not compared)."""
    q = shlex.quote
    ex.run(f"rm -rf {q(dest)} && mkdir -p {q(dest)} && tar -xzf {q(set_dir + '/files.tar.gz')} -C {q(dest)} "
           f"&& cd {q(dest)} && sha256sum --quiet -c files.sha256", timeout=1800)
    drift: list[str] = []
    for d in include:
        if d != "log":
            diff = ex.run(f"[ -d {q(dest + '/' + d)} ] && diff -rq {q(dest + '/' + d)} {q(root.rstrip('/') + '/' + d)} "
                          "|| true").stdout
            drift += [ln for ln in diff.splitlines() if ln.strip()]
    return {"restored_to": dest, "config_drift": drift}
