"""Stack secrets: read from Pulumi config secrets, generated when absent, never plaintext.

    pulumi config set --secret recon:postgres_password '...'

| config key (recon:)      | used for                                   | when absent            |
|--------------------------|--------------------------------------------|------------------------|
| superuser_password       | PostgreSQL's superuser (postgres)          | generated (RandomPassword) |
| exporter_password        | the metrics exporter's database role      | generated              |
| postgres_password        | the service's runtime role (DML only)      | generated              |
| owner_password           | the owner role migrations run as           | generated              |
| reader_password          | the read-only role (replica reads, dumps)  | generated              |
| replication_password     | streaming replication user                 | generated              |
| redis_password           | the service's Redis user (``app``)         | generated              |
| redis_<user>_password    | the other Redis users: replication, sentinel, exporter, ops (infra/redisacl.py) | generated |
| sentinel_password        | the Sentinels' own password (``requirepass``) | generated           |
| grafana_admin_password   | Grafana's admin user                       | generated              |
| backup_cipher_pass       | backup repository encryption               | generated              |
| alertmanager_web         | Alertmanager's basic auth (Prometheus, ops) | generated             |
| tls_cert / tls_key       | Nginx TLS on the Docker target (PEM)       | self-signed (pulumi_tls), staging only |

Precedence: the config secret, then the spec's own SecretStr (``RECON_POSTGRES__PASSWORD``
in the environment), then a generated value. A generated value lives in the stack state,
encrypted with the stack's secrets provider, and is stable across ``pulumi up`` runs.

Trap: flat keys, not ``--path recon:postgres.password``. ``load_spec`` skips top-level secure
keys, so the spec and the secrets never collide; a nested secure key would turn the whole
``recon:postgres`` object into a secret and hide its numbers from ``load_spec``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote

import pulumi

from infra import redisacl
from infra.spec import StackSpec
from infra.webauth import web_config

GENERATED_LENGTH = 32

SECRET_KEYS: tuple[str, ...] = (
    "superuser_password",
    "exporter_password",
    "postgres_password",
    "owner_password",
    "reader_password",
    "replication_password",
    "redis_password",
    "redis_replication_password",
    "redis_sentinel_password",
    "redis_exporter_password",
    "redis_ops_password",
    "sentinel_password",
    "grafana_admin_password",
    "backup_cipher_pass",
    "alertmanager_web",
)


def _from_spec(spec: StackSpec) -> dict[str, object]:
    return {
        "superuser_password": None,
        "exporter_password": None,
        "postgres_password": spec.postgres.password,
        "owner_password": None,
        "reader_password": None,
        "replication_password": spec.postgres.replication_password,
        "redis_password": spec.redis.password,
        "redis_replication_password": None,
        "redis_sentinel_password": None,
        "redis_exporter_password": None,
        "redis_ops_password": None,
        "sentinel_password": None,
        "grafana_admin_password": spec.grafana.admin_password,
        "backup_cipher_pass": spec.backup.cipher_pass,
        "alertmanager_web": None,
    }


@dataclass
class StackSecrets:
    """Every secret of the stack as a secret ``pulumi.Output[str]``, by name.

    ``values`` holds the base secrets and the ones derived from them (DSNs, pgpass), so a
    Workload refers to any of them by name and the platform puts them in a Kubernetes
    Secret or a Docker container's environment, marked secret.
    """

    values: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    generated: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> pulumi.Output[str]:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"unknown stack secret {name!r}; known: {sorted(self.values)}") from None

    @classmethod
    def resolve(cls, spec: StackSpec, lookup: Callable[[str], pulumi.Output[str] | None],
                parent: pulumi.Resource | None = None) -> "StackSecrets":
        """Secrets from ``lookup`` (e.g. ``pulumi.Config("recon").get_secret``), else generated."""
        import pulumi_random as random

        out = cls()
        spec_values = _from_spec(spec)
        for key in SECRET_KEYS:
            value = lookup(key)
            if value is None and spec_values[key] is not None:
                value = pulumi.Output.secret(spec_values[key].get_secret_value())  # type: ignore[union-attr]
            if value is None:
                gen = random.RandomPassword(
                    key.replace("_", "-"), length=GENERATED_LENGTH, special=False,
                    opts=pulumi.ResourceOptions(parent=parent))
                value = gen.result
                out.generated.append(key)
            out.values[key] = pulumi.Output.secret(value)
        for key in ("tls_cert", "tls_key"):
            value = lookup(key)
            if value is not None:
                out.values[key] = pulumi.Output.secret(value)
        return out

    def derive(self, spec: StackSpec, primary_host: str, replica_hosts: list[str], redis_nodes: list[str],
               pg_query: str = "") -> None:
        """Add the secrets built from others: DSNs (one per role: the service's runtime role,
        the owner that migrations run as, the read-only reader; ``pg_query``: the target's TLS
        parameters), the replication pgpass file."""
        pg = spec.postgres
        query = f"?{pg_query}" if pg_query else ""

        def dsn(host: str, user: str, secret: str) -> pulumi.Output[str]:
            return pulumi.Output.secret(self[secret].apply(
                lambda pw: f"postgresql://{user}:{quote(pw, safe='')}@{host}:{pg.port}/{pg.database}{query}"))

        self.values["database_url"] = dsn(primary_host, pg.user, "postgres_password")
        self.values["migrate_database_url"] = dsn(primary_host, pg.owner_user, "owner_password")
        self.values["database_replica_url"] = dsn(replica_hosts[0] if replica_hosts else primary_host,
                                                  pg.reader_user, "reader_password")
        self.values["alertmanager_web_config"] = pulumi.Output.secret(self["alertmanager_web"].apply(web_config))
        users = {name: self["redis_password" if name == "app" else f"redis_{name}_password"] for name in redisacl.USERS}
        self.values["redis_acl"] = pulumi.Output.secret(pulumi.Output.all(**users).apply(redisacl.acl_file))
        self.values["redis_exporter_json"] = pulumi.Output.secret(self["redis_exporter_password"].apply(
            lambda pw: json.dumps({f"redis://{node}": pw for node in redis_nodes})))  # the exporter's, every node
        self.values["redis_replication_conf"] = pulumi.Output.secret(
            self["redis_replication_password"].apply(redisacl.replication_include))
        self.values["pgpass"] = pulumi.Output.secret(self["replication_password"].apply(
            lambda pw: f"*:*:*:{pg.replication_user}:{_pgpass_escape(pw)}\n"))


    def derive_backup(self, spec: StackSpec, layout) -> None:
        """pgBackRest's two secret files, where the target runs it in the database containers:
        the repositories' cipher pass and the superuser's socket login (infra/pgbackrest.py)."""
        from infra import pgbackrest
        self.values["pgbackrest_cipher_conf"] = pulumi.Output.secret(self["backup_cipher_pass"].apply(
            lambda key: pgbackrest.cipher_conf(spec, key)))
        self.values["pgbackrest_pgpass"] = pulumi.Output.secret(self["superuser_password"].apply(
            lambda pw: pgbackrest.pgpass(layout, pw)))


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
