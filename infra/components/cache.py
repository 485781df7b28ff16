"""Redis: a primary, ``redis.replicas`` replicas, and a group of Sentinels watching them.

Redis holds what can be rebuilt (cache, progress, rate limits); jobs live in PostgreSQL.

Traps handled here:

* After a failover the process called ``redis-primary`` is a replica. On start, every Redis
  asks the Sentinels who the master is and follows it (``--replicaof``) instead of trusting
  its rendered role, so a restarted old primary never comes back as a second master.
* Passwords never enter a rendered file: Redis reads its users (hashed) and its replication
  login from 0600 secret files (infra/redisacl.py); each Sentinel appends its own password and
  its Redis login to its own copy of its config, which it owns from then on (Sentinel rewrites
  its config file).
"""

from __future__ import annotations

from infra.components.base import Concern
from infra import images, redisacl
from infra.components.model import Edge, Port, Probe, Workload
from infra.components.sizing import SENTINEL_STORAGE_GIB, resources_for

REDIS = """set -eu
umask 077
follow=""
for s in $RECON_SENTINELS; do
  reply=$(REDISCLI_AUTH="$SENTINEL_PASSWORD" timeout 3 redis-cli --no-auth-warning -h "${s%:*}" -p "${s##*:}" \\
          SENTINEL get-master-addr-by-name "$RECON_MASTER_NAME" 2>/dev/null | tr '\\n' ' ') || reply=""
  set -- $reply
  if [ "$#" -eq 2 ]; then
    if [ "$1" = "$RECON_MEMBER_HOST" ]; then follow="no one"; else follow="$1 $2"; fi
    break
  fi
done
if [ -n "$follow" ]; then
  exec redis-server "/etc/recon/redis/$RECON_MEMBER.conf" --replicaof $follow
fi
exec redis-server "/etc/recon/redis/$RECON_MEMBER.conf"
"""

SENTINEL = """set -eu
umask 077
conf=/data/sentinel.conf
[ -s "$conf" ] || cp "/etc/recon/redis/$RECON_MEMBER.conf" "$conf"
grep -v -e '^sentinel auth-pass ' -e '^sentinel auth-user ' -e '^requirepass ' -e '^sentinel sentinel-pass ' \\
  -e '^user exporter ' "$conf" > "$conf.new" || true
printf 'requirepass "%s"\\nsentinel sentinel-pass "%s"\\nsentinel auth-user %s sentinel\\nsentinel auth-pass %s "%s"\\n' \\
  "$SENTINEL_PASSWORD" "$SENTINEL_PASSWORD" "$RECON_MASTER_NAME" "$RECON_MASTER_NAME" "$REDIS_SENTINEL_PASSWORD" >> "$conf.new"
printf 'user exporter on >%s %s\\n' "$REDIS_EXPORTER_PASSWORD" "$RECON_SENTINEL_EXPORTER_RULES" >> "$conf.new"
mv "$conf.new" "$conf"
exec redis-server "$conf" --sentinel
"""

class Cache(Concern):
    TYPE = "recon:components:Cache"

    def sentinel_addresses(self) -> str:
        return ",".join(str(self.layout.endpoint(s)) for s in self.layout.sentinels())

    def describe(self) -> list[Workload]:
        r = self.spec.redis
        lay = self.layout
        sentinels = " ".join(str(lay.endpoint(s)) for s in lay.sentinels())
        ping = Probe(command=("sh", "-c", f'REDISCLI_AUTH="$REDIS_OPS_PASSWORD" redis-cli --no-auth-warning --user ops '
                                          f'-p {r.port} ping | grep -q PONG'))
        env = {"RECON_SENTINELS": sentinels, "RECON_MASTER_NAME": r.sentinel.master_name}
        common = dict(
            component="cache", role="redis", image=self.platform.image("redis", parent=self), kind="stateful",
            tier=("data",), user=images.UID, storage_gib=r.storage_gib, data_path=lay.data("redis-primary"),
            resources=resources_for(self.spec, "redis"), ports=[Port("redis", r.port)],
            liveness=ping, readiness=ping, script=REDIS, env=env,
            secret_env={"REDIS_OPS_PASSWORD": "redis_ops_password", "SENTINEL_PASSWORD": "sentinel_password"},  # pragma: allowlist secret
            secret_files={lay.secret("redis-users.acl"): "redis_acl",
                          lay.secret("redis-replication.conf"): "redis_replication_conf"},
            http_client=None,
            # `fab backup` copies the master's RDB/AOF into the backup set on the shared repository
            shared=({"backup": lay.data("backup")} if self.platform.backs_up_in_place(self.spec) else {}),
        )
        peers = [Edge("backend", r.port), Edge("worker", r.port), Edge("redis", r.port), Edge("sentinel", r.port)]
        # the exporter reads every node (Prometheus's redis-nodes job: which one is master)
        peers.append(Edge("redis-exporter", r.port))
        out = [Workload(name="redis-primary", members=["redis-primary"],
                        member_files={"redis-primary": [self.conf("redis/redis-primary.conf")]},
                        peers=peers, **common)]
        if r.replicas:
            out.append(Workload(name="redis-replica", members=lay.redis_replicas(),
                                member_files={m: [self.conf(f"redis/{m}.conf")] for m in lay.redis_replicas()},
                                peers=peers, **common))
        if lay.sentinels():
            s = r.sentinel
            sping = Probe(command=("sh", "-c", f'REDISCLI_AUTH="$SENTINEL_PASSWORD" redis-cli --no-auth-warning '
                                               f'-p {s.port} ping | grep -q PONG'))
            out.append(Workload(
                name="sentinel", component="cache", role="sentinel", image=self.platform.image("redis", parent=self),
                members=lay.sentinels(), kind="stateful", tier=("data",), user=images.UID,
                storage_gib=SENTINEL_STORAGE_GIB, data_path=lay.data("sentinel-1"),
                resources=resources_for(self.spec, "sentinel"), ports=[Port("sentinel", s.port)],
                liveness=sping, readiness=sping, script=SENTINEL,
                env={"RECON_MASTER_NAME": s.master_name, "RECON_SENTINEL_EXPORTER_RULES": redisacl.SENTINEL_EXPORTER},
                secret_env={"SENTINEL_PASSWORD": "sentinel_password", "REDIS_SENTINEL_PASSWORD": "redis_sentinel_password",  # pragma: allowlist secret
                            "REDIS_EXPORTER_PASSWORD": "redis_exporter_password"},  # pragma: allowlist secret
                http_client=None, member_files={m: [self.conf(f"redis/{m}.conf")] for m in lay.sentinels()},
                peers=[Edge("backend", s.port), Edge("worker", s.port), Edge("redis", s.port),
                       Edge("sentinel", s.port), Edge("redis-exporter", s.port)]))
        return out

    def outputs(self):
        return {**super().outputs(), "sentinels": self.sentinel_addresses(),
                "master_name": self.spec.redis.sentinel.master_name}
