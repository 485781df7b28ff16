"""PostgreSQL: a primary and ``postgres.replicas`` streaming replicas with physical slots.

The primary initialises itself with the official image's entrypoint, which runs
``initdb/10-replication.sql.sh`` once: the replication role and one slot per replica. A
replica whose data directory is empty clones the primary with ``pg_basebackup`` through its
slot, then starts as a hot standby with the rendered ``primary_conninfo``.

Trap: the application user is the database owner created by the image (a superuser in the
official image). A separate superuser and an unprivileged application role are a follow-up.
"""

from __future__ import annotations

from infra.components.base import Concern
from infra.components.images import IMAGES, UIDS
from infra.components.model import Edge, File, Port, Probe, Workload
from infra.components.sizing import resources_for

PGDATA = "/var/lib/postgresql/data/pgdata"

INIT_REPLICATION = r"""#!/bin/sh
# Run once by the official entrypoint after initdb: the replication role and its slots.
set -eu
psql -v ON_ERROR_STOP=1 -v role="$RECON_REPLICATION_USER" -v pw="$RECON_REPLICATION_PASSWORD" \
     --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE :"role" WITH REPLICATION LOGIN PASSWORD :'pw';
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL
for slot in $RECON_REPLICA_SLOTS; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
       -c "SELECT pg_create_physical_replication_slot('$slot')"
done
"""

PRIMARY = """set -eu
cp /etc/recon/postgres/initdb/*.sh /docker-entrypoint-initdb.d/
exec docker-entrypoint.sh postgres -c config_file=/etc/recon/postgres/primary/postgresql.conf
"""

REPLICA = """set -eu
n="${RECON_MEMBER##*-}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -q -h "$RECON_PRIMARY_HOST" -p "$RECON_PRIMARY_PORT"; do sleep 2; done
  PGPASSFILE=/etc/recon/postgres/pgpass pg_basebackup --no-password -h "$RECON_PRIMARY_HOST" \\
    -p "$RECON_PRIMARY_PORT" -U "$RECON_REPLICATION_USER" -D "$PGDATA" -X stream -S "replica_$n"
  touch "$PGDATA/standby.signal"
  chmod 0700 "$PGDATA"
fi
exec postgres -c config_file="/etc/recon/postgres/replica-$n/postgresql.conf"
"""


class Database(Concern):
    TYPE = "recon:components:Database"

    def describe(self) -> list[Workload]:
        pg = self.spec.postgres
        lay = self.layout
        primary = lay.endpoint("postgres-primary")
        ready = Probe(command=("pg_isready", "-q", "-h", "127.0.0.1", "-p", str(pg.port)),
                      initial_delay_s=10, period_s=10)
        common = dict(
            component="database", role="postgres", image=IMAGES["postgres"], kind="stateful",
            tier=("data",), user=UIDS["postgres"], storage_gib=pg.storage_gib,
            data_path=lay.data("postgres-primary"), resources=resources_for(self.spec, "postgres"),
            writable=["/tmp", "/var/run/postgresql", "/docker-entrypoint-initdb.d"],
            ports=[Port("postgres", pg.port)], liveness=ready, readiness=ready,
            peers=[Edge("backend", pg.port), Edge("worker", pg.port), Edge("migrate", pg.port),
                   Edge("postgres", pg.port), Edge("postgres-exporter", pg.port), Edge("backup", pg.port)],
            http_client=None,
        )
        env = {"PGDATA": PGDATA, "RECON_REPLICATION_USER": pg.replication_user}
        out = [Workload(
            name="postgres-primary", members=["postgres-primary"], script=PRIMARY,
            env={**env, "POSTGRES_USER": pg.user, "POSTGRES_DB": pg.database,
                 "RECON_REPLICA_SLOTS": " ".join(f"replica_{i}" for i in range(1, pg.replicas + 1))},
            secret_env={"POSTGRES_PASSWORD": "postgres_password",
                        "RECON_REPLICATION_PASSWORD": "replication_password"},
            files=[self.conf("postgres/primary/postgresql.conf"), self.conf("postgres/pg_hba.conf"),
                   File(lay.conf("postgres/initdb/10-replication.sh"), INIT_REPLICATION, 0o755)],
            **common)]
        if pg.replicas:
            out.append(Workload(
                name="postgres-replica", members=lay.postgres_replicas(), script=REPLICA,
                env={**env, "RECON_PRIMARY_HOST": primary.host, "RECON_PRIMARY_PORT": str(primary.port)},
                files=[self.conf("postgres/pg_hba.conf")],
                member_files={m: [self.conf(f"postgres/{m.removeprefix('postgres-')}/postgresql.conf")]
                              for m in lay.postgres_replicas()},
                secret_files={lay.conf("postgres/pgpass"): "pgpass"},
                **common))
        return out

    def outputs(self):
        return {**super().outputs(), "primary": str(self.layout.endpoint("postgres-primary")),
                "replicas": [str(self.layout.endpoint(p)) for p in self.layout.postgres_replicas()]}
