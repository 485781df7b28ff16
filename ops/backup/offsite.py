"""The offsite copy: the pgBackRest repositories and the backup sets, to S3 through boto3.

Runs ON the database host (``python -m ops.backup.offsite push``, started through the
executor), so the data flows from the host to the bucket, never through the operator's
laptop. Endpoint, bucket, prefix, region and TLS verification come from ``backup.s3``; the
credentials reach the process through its environment only (``AWS_ACCESS_KEY_ID`` ...).

Objects are keyed ``<prefix>/<stack>/<path under the backup root>`` and carry their sha256
in metadata. A file already present with the same size and sha256 is skipped. After the
transfer every object is read back (HEAD: size and sha256 metadata) and compared with the
local file; backup sets are also compared with their manifest. Nothing is deleted offsite:
expiry there is the bucket's lifecycle policy, so wiping a local repository never wipes the
copy.

``pull`` does the reverse (a lost machine: fetch the repositories and sets, then
``fab restore``), checking every file's sha256 against the object's metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

TREES = ("pgbackrest/repo1", "pgbackrest/repo2", "sets")


def _client(endpoint: str, region: str, verify_tls: bool):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, verify=verify_tls,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _remote(s3, bucket: str, prefix: str) -> dict[str, tuple[int, str | None]]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = (obj["Size"], None)
    return out


def push(root: Path, endpoint: str, bucket: str, prefix: str, region: str = "us-east-1",
         verify_tls: bool = True) -> dict:
    s3 = _client(endpoint, region, verify_tls)
    remote = _remote(s3, bucket, prefix)
    uploaded = unchanged = 0
    local: dict[str, tuple[int, str]] = {}
    for tree in TREES:
        base = root / tree
        if not base.exists():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if rel.endswith((".partial", ".tmp")) or "/.files-staging/" in rel:
                continue
            key = f"{prefix}/{rel}"
            size, digest = path.stat().st_size, _sha256(path)
            local[key] = (size, digest)
            if key in remote and remote[key][0] == size:
                head = s3.head_object(Bucket=bucket, Key=key)
                if head.get("Metadata", {}).get("sha256") == digest:
                    unchanged += 1
                    continue
            s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
            uploaded += 1
    problems = []
    for key, (size, digest) in local.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] != size or head.get("Metadata", {}).get("sha256") != digest:
            problems.append(key)
    for mpath in sorted((root / "sets").glob("*/manifest.json")) if (root / "sets").exists() else []:
        doc = json.loads(mpath.read_text())
        for name, want in doc.get("artifacts", {}).items():
            key = f"{prefix}/sets/{doc['id']}/{name}"
            got = local.get(key)
            if got is None or got != (want["size"], want["sha256"]):
                problems.append(f"{key} (manifest)")
    if problems:
        raise RuntimeError(f"offsite copy differs after transfer for {len(problems)} object(s): {problems[:5]}")
    return {"uploaded": uploaded, "unchanged": unchanged, "checked": len(local)}


def pull(root: Path, endpoint: str, bucket: str, prefix: str, region: str = "us-east-1",
         verify_tls: bool = True) -> dict:
    s3 = _client(endpoint, region, verify_tls)
    fetched = 0
    for key in sorted(_remote(s3, bucket, prefix)):
        rel = key[len(prefix) + 1:]
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        s3.download_file(bucket, key, str(tmp))
        want = s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
        if want and _sha256(tmp) != want:
            tmp.unlink()
            raise RuntimeError(f"offsite object {key} does not match its sha256 after download")
        tmp.replace(dest)
        fetched += 1
    return {"fetched": fetched}


def push_via_host(site) -> dict:
    """Start ``push`` on the database host through the executor; credentials in its environment."""
    s3 = site.spec.backup.s3
    env = {}
    if s3.access_key_id:
        env["AWS_ACCESS_KEY_ID"] = s3.access_key_id.get_secret_value()
    if s3.secret_access_key:
        env["AWS_SECRET_ACCESS_KEY"] = s3.secret_access_key.get_secret_value()
    repo = Path(__file__).resolve().parent.parent.parent
    cmd = shlex.join([sys.executable, "-m", "ops.backup.offsite", "push", "--root", site.paths.root,
                      "--endpoint", s3.endpoint, "--bucket", s3.bucket,
                      "--prefix", f"{s3.prefix}/{site.spec.name}", "--region", s3.region]
                     + ([] if s3.verify_tls else ["--no-verify-tls"]))
    res = site.ex.run(f"cd {shlex.quote(str(repo))} && {cmd}", env=env, timeout=6 * 3600)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ops.backup.offsite", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["push", "pull"])
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--no-verify-tls", action="store_true")
    a = ap.parse_args(argv)
    if not (os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY")):
        print("warning: no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment", file=sys.stderr)
    fn = push if a.action == "push" else pull
    try:
        out = fn(a.root, a.endpoint, a.bucket, a.prefix, a.region, not a.no_verify_tls)
    except Exception as exc:  # the operator reads one line; boto's tracebacks carry no secret but no help
        print(f"error: offsite {a.action} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
