"""Redis users, the same on every target: one ACL user per consumer, the default user off.

    app          the service: GET/SET/DEL/EVAL/INCR/EXPIRE/PING on ``recon:*`` keys only
    replication  replicas' PSYNC to the master
    sentinel     what a Sentinel asks of the Redis nodes it watches (INFO, ROLE, REPLICAOF, ...)
    exporter     the Prometheus exporter's read-only commands
    ops          checks and backups: PING, INFO, ROLE, BGSAVE, LASTSAVE, CONFIG GET/SET

Passwords reach Redis only as SHA-256 hashes in the ACL file; the replicas' own login is an
include file (``masteruser``/``masterauth``). The Sentinels have a password of their own
(``requirepass``), asked of clients and of each other, plus an ``exporter`` user with
read-only SENTINEL subcommands for the metrics exporter. The local target writes these files
under ``<state>/secrets`` (infra/local/bootstrap.py); the containers get them as 0600 secret
files built from the stack secrets (infra/components/cache.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

USERS: dict[str, str] = {
    # consumer -> what it may do (Redis ACL rules); everything else, and the default user, is refused
    "app": "~recon:* resetchannels -@all +get +set +del +eval +incr +expire +ping",
    "replication": "resetkeys resetchannels -@all +psync +replconf +ping",
    "sentinel": "allchannels -@all +multi +slaveof +replicaof +ping +exec +subscribe +config|rewrite +role "
                "+publish +info +client|setname +client|kill +script|kill",
    "exporter": "allkeys resetchannels -@all +client +ping +info +config|get +cluster|info +slowlog +latency "
                "+memory +select +get +scan +xinfo +type +pfcount +strlen +llen +scard +zcard +hlen +xlen +eval",
    # config|set: a backup pauses AOF rewrites while it copies the files; acl|load: a password
    # rotation reloads the ACL file (which only the service user writes) on each node
    "ops": "resetkeys resetchannels -@all +ping +info +role +bgsave +lastsave +config|get +config|set +acl|load",
}


SENTINEL_EXPORTER = ("-@all +ping +info +client|setname +sentinel|masters +sentinel|sentinels +sentinel|slaves "
                     "+sentinel|replicas +sentinel|ckquorum")
"""What the exporter may ask a Sentinel (its ``exporter`` user there): read-only SENTINEL
subcommands; never SET, FAILOVER, RESET or REMOVE."""


def sentinel_exporter_user(password: str) -> str:
    """The Sentinel config line for the exporter's user (its password hashed)."""
    return f"user exporter on #{hashlib.sha256(password.encode()).hexdigest()} {SENTINEL_EXPORTER}\n"


def acl_file(passwords: Mapping[str, str | Sequence[str]]) -> str:
    """The ACL file: ``passwords`` maps each of :data:`USERS` to its password, or to several
    while a rotation is under way (each accepted; hashed here)."""
    def hashes(pw: str | Sequence[str]) -> str:
        return " ".join(f"#{hashlib.sha256(p.encode()).hexdigest()}" for p in ([pw] if isinstance(pw, str) else pw))
    lines = ["user default off"] + [f"user {name} on {hashes(passwords[name])} {rules}" for name, rules in USERS.items()]
    return "\n".join(lines) + "\n"


def replication_include(password: str) -> str:
    """What a replica adds to its config to log in to its master as the replication user."""
    return f'masteruser replication\nmasterauth "{password}"\n'
