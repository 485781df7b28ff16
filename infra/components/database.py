"""PostgreSQL: a primary and ``postgres.replicas`` streaming replicas with physical slots.

The image is Debian's postgresql-15 with pgBackRest (infra/images.py: recon-postgres). The
primary initialises an empty data volume itself, as the local target's bootstrap does: initdb
with the superuser's password from a 0600 file, then, on a server listening on its socket
only, the roles (the owner, the service's runtime role, the reader, replication, the exporter
with pg_monitor; infra/pgroles.py), the database (owned by the owner role), their privileges,
pg_stat_statements and one slot per replica; then it stops and starts for real.
A replica whose data directory is empty clones the primary with ``pg_basebackup`` through its
slot and starts as a hot standby with the rendered ``primary_conninfo``.

Trap: the rendered config puts the socket in the layout's run directory (/tmp), so every
local connection in these scripts names it (``-h /tmp``); the Debian default
(/var/run/postgresql) is not where the server listens.
"""

from __future__ import annotations

from infra import images, pgroles
from infra.components.base import Concern
from infra.components.model import Edge, Port, Probe, Workload
from infra.components.sizing import resources_for
from infra.pgbackrest import BackupPaths, base_argv
from infra.render import RenderContext
from infra.services import PG_PRIMARY, replica_slot

PRIMARY = r"""set -eu
umask 077
sock=/tmp
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  printf '%s' "$RECON_SUPERUSER_PASSWORD" > /tmp/pw
  initdb -D "$PGDATA" -U postgres --pwfile=/tmp/pw --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 --data-checksums
  rm -f /tmp/pw
  postgres -D "$PGDATA" -c config_file="$RECON_CONFIG" -c listen_addresses='' &
  pid=$!
  until pg_isready -q -h "$sock"; do sleep 0.2; done
  export PGPASSWORD="$RECON_SUPERUSER_PASSWORD"
  psql -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d postgres \
    -v owner="$RECON_OWNER_USER" -v owner_pw="$RECON_OWNER_PASSWORD" \
    -v app="$RECON_APP_USER" -v app_pw="$RECON_APP_PASSWORD" -v db="$RECON_DATABASE" \
    -v reader="$RECON_READER_USER" -v reader_pw="$RECON_READER_PASSWORD" \
    -v repl="$RECON_REPLICATION_USER" -v repl_pw="$RECON_REPLICATION_PASSWORD" \
    -v exp_pw="$RECON_EXPORTER_PASSWORD" <<'SQL'
CREATE ROLE :"owner" WITH LOGIN PASSWORD :'owner_pw';
CREATE ROLE :"app" WITH LOGIN PASSWORD :'app_pw';
CREATE ROLE :"reader" WITH LOGIN PASSWORD :'reader_pw';
CREATE ROLE :"repl" WITH LOGIN REPLICATION PASSWORD :'repl_pw';
CREATE ROLE exporter WITH LOGIN PASSWORD :'exp_pw';
GRANT pg_monitor TO exporter;
CREATE DATABASE :"db" OWNER :"owner";
SQL
  psql -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d "$RECON_DATABASE" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
  psql -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d "$RECON_DATABASE" -c "$RECON_PRIVILEGES_SQL"
  for slot in $RECON_REPLICA_SLOTS; do
    psql -v ON_ERROR_STOP=1 -h "$sock" -U postgres -d postgres -c "SELECT pg_create_physical_replication_slot('$slot')"
  done
  if [ -n "${RECON_PGBACKREST:-}" ]; then
    # the repository lives on the volume the database containers share: WAL archiving starts now
    mkdir -p "$RECON_BACKUP_ROOT/pgbackrest/log" "$RECON_BACKUP_ROOT/pgbackrest/lock" "$RECON_BACKUP_ROOT/pgbackrest/spool"
    $RECON_PGBACKREST stanza-create
  fi
  unset PGPASSWORD
  kill -INT "$pid"
  wait "$pid"
fi
exec postgres -D "$PGDATA" -c config_file="$RECON_CONFIG"
"""

REPLICA = """set -eu
umask 077
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -q -h "$RECON_PRIMARY_HOST" -p "$RECON_PRIMARY_PORT"; do sleep 2; done
  PGSSLMODE="${RECON_PG_SSLMODE:-prefer}" PGSSLROOTCERT="${RECON_PG_SSLROOTCERT:-}" \
  PGPASSFILE="$RECON_PGPASS" pg_basebackup --no-password -h "$RECON_PRIMARY_HOST" \
    -p "$RECON_PRIMARY_PORT" -U "$RECON_REPLICATION_USER" -D "$PGDATA" -X stream -S "replica_${RECON_MEMBER##*-}"
  touch "$PGDATA/standby.signal"
  chmod 0700 "$PGDATA"
fi
exec postgres -D "$PGDATA" -c config_file="/etc/recon/postgres/${RECON_MEMBER#postgres-}/postgresql.conf"
"""


class Database(Concern):
    TYPE = "recon:components:Database"

    def describe(self) -> list[Workload]:
        pg = self.spec.postgres
        lay = self.layout
        primary = lay.endpoint(PG_PRIMARY)
        ready = Probe(command=("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(pg.port)),
                      initial_delay_s=10, period_s=10)
        common = dict(
            component="database", role="postgres", image=self.platform.image("postgres", parent=self),
            kind="stateful", tier=("data",), user=images.UID, storage_gib=pg.storage_gib,
            data_path=lay.data(PG_PRIMARY), resources=resources_for(self.spec, "postgres"),
            writable=["/tmp"], ports=[Port("postgres", pg.port)], liveness=ready, readiness=ready,
            http_client=None,
        )
        env = {"PGDATA": lay.pgdata(PG_PRIMARY), "RECON_REPLICATION_USER": pg.replication_user}
        backup = self.backup()
        # TLS where the target has a certificate for the nodes (docker): the server's own pair at the
        # rendered config's ssl_cert_file / ssl_key_file; pg_basebackup verifies the primary with it
        tls_files = ({RenderContext.tls_cert: "postgres_tls_cert", RenderContext.tls_key: "postgres_tls_key"}
                     if lay.pg_tls() else {})
        # (for pg_basebackup only: the container's own health check connects to 127.0.0.1)
        tls_env = ({"RECON_PG_SSLMODE": lay.pg_tls()["sslmode"], "RECON_PG_SSLROOTCERT": lay.pg_tls()["sslrootcert"]}
                   if lay.pg_tls() else {})
        out = [Workload(
            name=PG_PRIMARY, members=[PG_PRIMARY], script=PRIMARY,
            env={**env, "RECON_APP_USER": pg.user, "RECON_OWNER_USER": pg.owner_user,
                 "RECON_READER_USER": pg.reader_user, "RECON_DATABASE": pg.database,
                 "RECON_PRIVILEGES_SQL": pgroles.privileges_sql(pg),
                 "RECON_CONFIG": lay.conf("postgres/primary/postgresql.conf"),
                 "RECON_REPLICA_SLOTS": " ".join(replica_slot(r) for r in lay.postgres_replicas()),
                 **backup.get("env", {})},
            secret_env={"RECON_SUPERUSER_PASSWORD": "superuser_password", "RECON_APP_PASSWORD": "postgres_password",
                        "RECON_OWNER_PASSWORD": "owner_password", "RECON_READER_PASSWORD": "reader_password",  # pragma: allowlist secret (names)
                        "RECON_REPLICATION_PASSWORD": "replication_password",
                        "RECON_EXPORTER_PASSWORD": "exporter_password"},
            files=[self.conf("postgres/primary/postgresql.conf"), self.conf("postgres/pg_hba.conf"),
                   *backup.get("files", [])],
            secret_files={**backup.get("secret_files", {}), **tls_files}, shared=backup.get("shared", {}),
            # the logical backup reads a replica when there is one
            peers=[Edge("backend", pg.port), Edge("worker", pg.port), Edge("migrate", pg.port),
                   Edge("postgres", pg.port), Edge("postgres-exporter", pg.port)]
            + ([] if pg.replicas else [Edge("backup", pg.port)]),
            **common)]
        if pg.replicas:
            out.append(Workload(
                name="postgres-replica", members=lay.postgres_replicas(), script=REPLICA,
                env={**env, **tls_env, "RECON_PRIMARY_HOST": primary.host, "RECON_PRIMARY_PORT": str(primary.port),
                     "RECON_PGPASS": lay.secret("pgpass-replication")},
                files=[self.conf("postgres/pg_hba.conf"), *backup.get("files", [])],
                shared=backup.get("shared", {}),
                member_files={m: [self.conf(f"postgres/{m.removeprefix('postgres-')}/postgresql.conf")]
                              for m in lay.postgres_replicas()},
                secret_files={lay.secret("pgpass-replication"): "pgpass", **backup.get("secret_files", {}), **tls_files},
                # ops/ checks and repairs a replica as the superuser, through the socket
                secret_env={"RECON_SUPERUSER_PASSWORD": "superuser_password"},
                peers=[Edge("backend", pg.port), Edge("worker", pg.port), Edge("postgres", pg.port),
                       Edge("backup", pg.port)],
                **common))
        return out

    def backup(self) -> dict:
        """What the database containers need to run pgBackRest themselves, where the platform
        gives them a shared volume for its repository (one Docker host): the rendered
        pgbackrest.conf, the cipher pass and socket login (0600), the repository and the
        node-exporter textfile directory (``fab backup`` publishes the BackupTooOld metrics
        there). Elsewhere, nothing: archive_mode stays off (docs/backups.md)."""
        if not self.platform.backs_up_in_place(self.spec):
            return {}
        lay = self.layout
        paths = BackupPaths.of(lay)
        return {
            "files": [self.conf("pgbackrest/pgbackrest.conf")],
            "secret_files": {f"{paths.include}/cipher.conf": "pgbackrest_cipher_conf",
                             paths.pgpass: "pgbackrest_pgpass"},
            "shared": {"backup": paths.root, "node-textfile": lay.data("node-exporter")},
            "env": {"RECON_BACKUP_ROOT": paths.root,
                    "RECON_PGBACKREST": " ".join(base_argv(paths, self.spec.backup.stanza))},
        }

    def outputs(self):
        return {**super().outputs(), "primary": str(self.layout.endpoint(PG_PRIMARY)),
                "replicas": [str(self.layout.endpoint(p)) for p in self.layout.postgres_replicas()]}
