"""The offsite copy against a real S3 API: moto's server over HTTPS on loopback (pgBackRest 2.45's
S3 client needs HTTPS; boto3 gets the same endpoint), path-style, TLS verification off."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.backup import offsite

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
CREDS = {"AWS_ACCESS_KEY_ID": "testing-id", "AWS_SECRET_ACCESS_KEY": "testing-secret-value"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.skip("moto[server] is not installed (pip install -e '.[dev]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port), "--ssl"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    os.environ.update(CREDS)
    yield f"https://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def backup_root(tmp_path):
    root = tmp_path / "backup"
    for rel, data in {"pgbackrest/repo1/backup/recon/backup.info": b"info",
                      "pgbackrest/repo1/archive/recon/15-1/0000000100000000/000000010000000000000001.zst": b"w" * 5000,
                      "sets/20250101T000000Z-daily/logical.dump": b"dump"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    import hashlib
    (root / "sets/20250101T000000Z-daily/manifest.json").write_text(json.dumps(
        {"id": "20250101T000000Z-daily", "artifacts": {"logical.dump": {"size": 4, "sha256": hashlib.sha256(b"dump").hexdigest()}}}))
    return root


def bucket(endpoint: str, name: str) -> str:
    offsite._client(endpoint, "us-east-1", False).create_bucket(Bucket=name)
    return name


def test_push_from_the_host_then_pull_gives_identical_files(s3_endpoint, backup_root, tmp_path):
    b = bucket(s3_endpoint, "recon-offsite-a")
    cmd = [sys.executable, "-m", "ops.backup.offsite", "push", "--root", str(backup_root), "--endpoint", s3_endpoint,
           "--bucket", b, "--prefix", "recon/local", "--no-verify-tls"]
    res = subprocess.run(cmd, cwd=REPO, env={**os.environ, **CREDS}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"uploaded": 4, "unchanged": 0, "checked": 4}
    assert CREDS["AWS_SECRET_ACCESS_KEY"] not in res.stdout + res.stderr
    again = offsite.push(backup_root, s3_endpoint, b, "recon/local", verify_tls=False)
    assert again == {"uploaded": 0, "unchanged": 4, "checked": 4}
    dest = tmp_path / "fetched"
    assert offsite.pull(dest, s3_endpoint, b, "recon/local", verify_tls=False) == {"fetched": 4}
    for f in backup_root.rglob("*"):
        if f.is_file():
            assert (dest / f.relative_to(backup_root)).read_bytes() == f.read_bytes()


def test_a_changed_local_file_is_uploaded_again_and_checked(s3_endpoint, backup_root):
    b = bucket(s3_endpoint, "recon-offsite-b")
    offsite.push(backup_root, s3_endpoint, b, "p", verify_tls=False)
    (backup_root / "pgbackrest/repo1/backup/recon/backup.info").write_bytes(b"INFO")
    assert offsite.push(backup_root, s3_endpoint, b, "p", verify_tls=False)["uploaded"] == 1


def test_a_set_that_differs_from_its_manifest_is_refused(s3_endpoint, backup_root):
    b = bucket(s3_endpoint, "recon-offsite-c")
    (backup_root / "sets/20250101T000000Z-daily/logical.dump").write_bytes(b"dUmp")
    with pytest.raises(RuntimeError, match=r"differs after transfer.*logical.dump \(manifest\)"):
        offsite.push(backup_root, s3_endpoint, b, "p", verify_tls=False)


def test_a_corrupted_offsite_object_is_refused_on_pull(s3_endpoint, backup_root, tmp_path):
    b = bucket(s3_endpoint, "recon-offsite-d")
    offsite.push(backup_root, s3_endpoint, b, "p", verify_tls=False)
    s3 = offsite._client(s3_endpoint, "us-east-1", False)
    key = "p/sets/20250101T000000Z-daily/logical.dump"
    meta = s3.head_object(Bucket=b, Key=key)["Metadata"]
    s3.put_object(Bucket=b, Key=key, Body=b"evil", Metadata=meta)
    with pytest.raises(RuntimeError, match="does not match its sha256 after download"):
        offsite.pull(tmp_path / "x", s3_endpoint, b, "p", verify_tls=False)


def test_unreachable_endpoint_is_one_clear_line(backup_root):
    res = subprocess.run([sys.executable, "-m", "ops.backup.offsite", "push", "--root", str(backup_root),
                          "--endpoint", "https://127.0.0.1:1", "--bucket", "x-y-z", "--prefix", "p", "--no-verify-tls"],
                         cwd=REPO, env={**os.environ, **CREDS, "AWS_MAX_ATTEMPTS": "1"}, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines()[-1].startswith("error: offsite push failed: EndpointConnectionError")
