"""The manifest of a backup set: one JSON file, ``<set>/manifest.json``, written last.

    {"format": 1, "id": "20250101T013000Z-daily", "stack": "local", "tier": "daily",
     "started_at": ..., "finished_at": ...,
     "components": {"postgres": {label, type, repo, lsn_start, lsn_stop, wal_start, wal_stop,
                                 size, repo_size, timestamp_start, timestamp_stop},
                    "logical": {...}, "redis": {lastsave, ...}, "files": {...}},
     "artifacts": {"logical.dump": {"size": 123, "sha256": "..."}, ...},
     "versions": {"pgbackrest": ..., "postgres": ..., "redis": ...},
     "verified": {"at": ..., "ok": true, "detail": ...}}

``artifacts`` lists every file of the set with its size and sha256, computed on the host;
:func:`check` recomputes them after every transfer (offsite copy, restore) and names each
difference. The pgBackRest repository carries its own per-file checksums (``verify``).

A set directory without ``manifest.json`` is an unfinished backup: ``fab backups`` shows it
as incomplete and ``fab restore`` refuses it.
"""

from __future__ import annotations

import base64
import json
import shlex
from typing import Any

from infra.pgbackrest import BackupPaths
from ops.errors import BackupError, BadInput, ChecksumMismatch
from ops.executors import Executor

FORMAT = 1
TIERS = ("daily", "weekly", "incr", "archive")


def artifacts(ex: Executor, set_dir: str) -> dict[str, dict[str, Any]]:
    """Every file of the set (but the manifest) with its size and sha256, computed on the host."""
    q = shlex.quote
    res = ex.run(f"cd {q(set_dir)} && find . -type f ! -name manifest.json ! -name '*.partial' -printf '%s %P\\n' "
                 f"| sort -k2 && echo --- && find . -type f ! -name manifest.json ! -name '*.partial' -print0 "
                 f"| sort -z | xargs -0 -r sha256sum", timeout=1800)
    sizes_part, _, sums_part = res.stdout.partition("---\n")
    out: dict[str, dict[str, Any]] = {}
    for line in sizes_part.splitlines():
        size, _, name = line.partition(" ")
        out[name] = {"size": int(size)}
    for line in sums_part.splitlines():
        digest, _, name = line.partition("  ")
        out[name.removeprefix("./")]["sha256"] = digest
    return out


def write(ex: Executor, set_dir: str, manifest: dict) -> None:
    blob = base64.b64encode(json.dumps(manifest, indent=1, sort_keys=True).encode()).decode()
    path = f"{set_dir}/manifest.json"
    ex.run(f"printf %s {blob} | base64 -d > {shlex.quote(path + '.tmp')} && mv {shlex.quote(path + '.tmp')} "
           f"{shlex.quote(path)}")


def read(ex: Executor, set_dir: str) -> dict:
    res = ex.run(f"cat {shlex.quote(set_dir + '/manifest.json')}", check=False)
    if not res.ok:
        raise BackupError(f"no manifest in {set_dir}: the backup set is incomplete")
    return json.loads(res.stdout)


def list_sets(ex: Executor, paths: BackupPaths) -> list[dict]:
    """Every set on the host, oldest first; incomplete ones as ``{"id":..., "incomplete": True}``."""
    q = shlex.quote
    res = ex.run(f"cd {q(paths.sets)} 2>/dev/null && for d in */; do d=${{d%/}}; "
                 f"if [ -f \"$d/manifest.json\" ]; then printf '%s\\t' \"$d\"; base64 -w0 \"$d/manifest.json\"; echo; "
                 f"else printf '%s\\t-\\n' \"$d\"; fi; done", check=False)
    out = []
    for line in res.stdout.splitlines():
        name, _, blob = line.partition("\t")
        if name == "*" or not name:
            continue
        out.append(json.loads(base64.b64decode(blob)) if blob != "-" else {"id": name, "incomplete": True})
    return sorted(out, key=lambda m: m["id"])


def find(sets: list[dict], set_id: str) -> dict:
    for m in sets:
        if m["id"] == set_id:
            if m.get("incomplete"):
                raise BadInput(f"backup {set_id!r} is incomplete (no manifest): it cannot be restored")
            return m
    known = [m["id"] for m in sets if not m.get("incomplete")]
    raise BadInput(f"unknown backup id {set_id!r}; known backups: {', '.join(known) or 'none (run fab backup)'}")


def check(ex: Executor, set_dir: str, manifest: dict) -> list[str]:
    """Differences between the set on the host and its manifest (empty: all good)."""
    actual = artifacts(ex, set_dir)
    problems = []
    for name, want in manifest["artifacts"].items():
        got = actual.get(name)
        if got is None:
            problems.append(f"{name}: missing")
        elif got != want:
            problems.append(f"{name}: size/sha256 {got.get('size')}/{got.get('sha256', '')[:12]} "
                            f"!= manifest {want['size']}/{want['sha256'][:12]}")
    return problems


def require_intact(ex: Executor, set_dir: str, manifest: dict) -> None:
    problems = check(ex, set_dir, manifest)
    if problems:
        raise ChecksumMismatch(f"backup {manifest['id']} does not match its manifest: " + "; ".join(problems))
