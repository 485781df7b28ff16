"""Basic authentication for the Prometheus-family web servers (Alertmanager's silences API).

Alertmanager reads ``--web.config.file``: a YAML file of users and bcrypt hashes. The hash is
made with a salt derived from the password itself, so the same password always gives the same
file: no needless rewrite at every ``fab up``, no container replaced at every ``pulumi up``.

Trap: the file holds a hash, not the password, and still lives with the secrets (0600);
Prometheus, which must log in, reads the password from its own 0600 file.
"""

from __future__ import annotations

import base64
import hashlib

USER = "recon"
"""The one user: Prometheus (sending alerts, scraping) and operators (silences, fab checks)."""

_BCRYPT_B64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_STD_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def bcrypt_hash(password: str, rounds: int = 10) -> str:
    import bcrypt
    raw = hashlib.sha256(b"recon-web-config:" + password.encode()).digest()[:16]
    salt22 = base64.b64encode(raw).decode().rstrip("=").translate(str.maketrans(_STD_B64, _BCRYPT_B64))[:22]
    return bcrypt.hashpw(password.encode(), f"$2b${rounds:02d}${salt22}".encode()).decode()


def web_config(password: str) -> str:
    return f"# Alertmanager web config (infra/webauth.py): basic auth, bcrypt.\nbasic_auth_users:\n  {USER}: {bcrypt_hash(password)}\n"
