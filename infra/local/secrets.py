"""Per-stack secrets for the local target, generated once, kept in ``<state>/secrets``.

The directory is 0700 and owned by the service user; files are 0600. Values from the spec
(set through ``RECON_...`` environment variables) win over generated ones. Nothing here is
ever printed: callers get ``SecretStr``.
"""

from __future__ import annotations

import json
import secrets as _secrets
from pathlib import Path

from pydantic import SecretStr

from infra.spec import StackSpec

NAMES = ("postgres_superuser", "postgres_app", "postgres_owner", "postgres_reader", "postgres_replication",
         "postgres_exporter",
         "backup_cipher", "grafana_admin",
         # one Redis ACL user per consumer (infra/redisacl.py), and the Sentinels' password
         "redis_app", "redis_replication", "redis_sentinel", "redis_exporter", "redis_ops", "sentinel_auth",
         "alertmanager_web")


def _from_spec(spec: StackSpec) -> dict[str, SecretStr | None]:
    return {
        "postgres_app": spec.postgres.password,
        "postgres_replication": spec.postgres.replication_password,
        "backup_cipher": spec.backup.cipher_pass,
        "grafana_admin": spec.grafana.admin_password,
    }


def load_or_create(spec: StackSpec, secrets_dir: Path) -> dict[str, SecretStr]:
    secrets_dir.mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    path = secrets_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    changed = False
    for name in NAMES:
        if name not in stored:
            stored[name] = _secrets.token_urlsafe(24)
            changed = True
    for name, value in _from_spec(spec).items():
        if value is not None and stored.get(name) != value.get_secret_value():
            stored[name] = value.get_secret_value()
            changed = True
    if changed:
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(stored, indent=1))
        tmp.replace(path)
    return {k: SecretStr(v) for k, v in stored.items()}


def store(secrets_dir: Path, name: str, value: str) -> None:
    """Replace one stored secret (``fab secrets.rotate``), atomically, keeping the file 0600."""
    path = secrets_dir / "secrets.json"
    stored: dict[str, str] = json.loads(path.read_text())
    if name not in stored:
        raise KeyError(f"no stored secret {name!r}; known: {sorted(stored)}")
    stored[name] = value
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps(stored, indent=1))
    tmp.replace(path)


def write_secret_file(path: Path, content: str) -> bool:
    """Write a 0600 file; returns True when its content changed."""
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    tmp.touch(mode=0o600)
    tmp.write_text(content)
    tmp.replace(path)
    return True
