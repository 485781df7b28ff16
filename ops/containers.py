"""``fab status`` for the container targets: each service's container or pod, and real checks.

The inventory (the Pulumi program's ``inventory`` output, saved as
``<state>/inventory.json``) names each service's container (docker) or pod (kubernetes) and
the executor that reaches it. The checks run where the service lives, through that executor,
and judge what the local target's checks judge:

    postgres   the recorded primary is not in recovery and counts its streaming replicas; a
               replica is in recovery with its WAL receiver streaming
    redis      a replica's link to its master is up; a master is the one the Sentinels name
    sentinel   names a master and reaches its quorum (SENTINEL CKQUORUM)
    backend    GET /health answers 200 inside its container
    nginx      /health and the upstream pool through the published port (TLS)
    others     the container runs and its declared healthcheck passes

Services the target declares but this machine cannot run (Grafana, Jaeger: no Debian package,
no registry) are NOT_AVAILABLE with the reason, as on the local target.
"""

from __future__ import annotations

import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor

from infra import images, services
from infra.local.target import ServiceStatus
from infra.spec import StackSpec
from ops.errors import ExecutorUnreachable, InventoryError
from ops.executors import executor
from ops.inventory import Inventory, Service, load_inventory

PSQL = "PGPASSWORD=\"$RECON_SUPERUSER_PASSWORD\" psql -X -At -h /tmp -U postgres -d postgres -c"
REDIS_CLI = 'REDISCLI_AUTH="$REDIS_OPS_PASSWORD" redis-cli --no-auth-warning --user ops'
SENTINEL_CLI = 'REDISCLI_AUTH="$SENTINEL_PASSWORD" redis-cli --no-auth-warning'
"""In a Redis container: the ops ACL user; in a Sentinel's: the Sentinels' own password (infra/redisacl.py)."""


CHECKED_KINDS = ("postgres", "redis", "sentinel", "backend", "nginx")
"""Kinds whose readiness :meth:`ContainerStatus.check` judges itself (the others: the engine's healthcheck)."""


class ContainerStatus:
    def __init__(self, spec: StackSpec, inventory: Inventory | None = None):
        self.spec = spec
        self.inventory = inventory or load_inventory(spec)
        self.doc = json.loads((spec.state_path / "inventory.json").read_text())

    # -- where ---------------------------------------------------------------------------------
    def state(self, svc: Service) -> tuple[str, str | None, int | None]:
        """(state, docker health, uptime seconds) of a service's container."""
        if self.spec.target != "docker":
            return "RUNNING", None, None  # kubectl: the pod answering the exec is the evidence
        name = svc.extra.get("container", svc.name)
        res = executor("local").run(["docker", "inspect", "--format", "{{json .State}}", name], check=False)
        if not res.ok:
            return "MISSING", None, None
        st = json.loads(res.stdout)
        started = st.get("StartedAt", "")
        uptime = None
        if started and not started.startswith("0001"):
            import datetime as dt
            t = dt.datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00")
            uptime = int(time.time() - t.timestamp())
        return st["Status"].upper(), (st.get("Health") or {}).get("Status"), uptime

    def sh(self, svc: Service, script: str, timeout: float = 15) -> str:
        import subprocess
        try:
            res = svc.executor.run(script, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"no answer within {timeout:.0f}s") from None
        if not res.ok:
            raise RuntimeError((res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.exit_code}"])
        return res.stdout.strip()

    # -- checks --------------------------------------------------------------------------------
    def check(self, svc: Service) -> tuple[bool, str]:
        kind = svc.kind
        try:
            if kind == "postgres":
                return self._postgres(svc)
            if kind == "redis":
                return self._redis(svc)
            if kind == "sentinel":
                return self._sentinel(svc)
            if kind == "backend":
                code = self.sh(svc, "python -c \"import urllib.request as u; "
                                    f"print(u.urlopen('http://127.0.0.1:{svc.port}/health', timeout=3).status)\"")
                return code == "200", f"/health {code}"
            if kind == "nginx":
                return self._nginx()
        except (RuntimeError, ExecutorUnreachable) as exc:
            return False, str(exc)[:200]
        return True, "declared healthcheck passes"

    def _postgres(self, svc: Service) -> tuple[bool, str]:
        out = self.sh(svc, f"{PSQL} \"SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_stat_replication "
                           f"WHERE state = 'streaming'), (SELECT status FROM pg_stat_wal_receiver)\"")
        in_recovery, streaming, receiver = (out.split("|") + ["", ""])[:3]
        if svc.name == services.PG_PRIMARY:  # the docker target records no failover yet
            if in_recovery == "t":
                return False, "in recovery (expected a primary)"
            return True, f"primary, {streaming} replica(s) streaming"
        if in_recovery != "t":
            return False, "not in recovery (expected a replica)"
        return receiver == "streaming", f"replica, wal receiver {receiver or 'absent'}"

    def _redis(self, svc: Service) -> tuple[bool, str]:
        info = dict(line.split(":", 1) for line in self.sh(svc, f"{REDIS_CLI} INFO replication").splitlines()
                    if ":" in line)
        if info.get("role") == "slave":
            link = info.get("master_link_status", "?").strip()
            return link == "up", f"replica of {info.get('master_host', '?').strip()}, link {link}"
        named = self.sentinels_master()
        if named and named[0] != svc.host:
            return False, f"master, but the Sentinels name {named[0]}: a stale master awaiting demotion"
        return True, f"master, {info.get('connected_slaves', '0').strip()} replica(s)"

    def _sentinel(self, svc: Service) -> tuple[bool, str]:
        name = shlex.quote(self.spec.redis.sentinel.master_name)
        port = svc.port
        addr = self.sh(svc, f"{SENTINEL_CLI} -p {port} SENTINEL get-master-addr-by-name {name}").split()
        quorum = self.sh(svc, f"{SENTINEL_CLI} -p {port} SENTINEL ckquorum {name}")
        ok = quorum.startswith("OK")
        return ok, f"master {':'.join(addr) or 'none'}, " + ("quorum reachable" if ok else f"quorum: {quorum}")

    def sentinels_master(self) -> tuple[str, int] | None:
        for svc in self.inventory.of_kind("sentinel"):
            try:
                addr = self.sh(svc, f"{SENTINEL_CLI} -p {svc.port} SENTINEL get-master-addr-by-name "
                                    f"{shlex.quote(self.spec.redis.sentinel.master_name)}").split()
            except (RuntimeError, ExecutorUnreachable):
                continue
            if len(addr) == 2:
                return addr[0], int(addr[1])
        return None

    def _nginx(self) -> tuple[bool, str]:
        import ssl
        import urllib.request
        n = self.spec.nginx
        host = "127.0.0.1" if n.publish_address == "0.0.0.0" else n.publish_address
        url = f"https://{host}:{n.https_port}" if n.tls else f"http://{host}:{n.http_port}"
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # staging's self-signed cert: the check is reachability
        codes = []
        for path in ("/health", "/nginx/upstream-health"):
            try:
                with urllib.request.urlopen(url + path, timeout=3, context=ctx if n.tls else None) as resp:
                    codes.append(resp.status)
            except OSError as exc:
                codes.append(getattr(exc, "code", 0) or 0)
        return codes == [200, 200], f"/health {codes[0]}, backend via nginx {codes[1]}"

    # -- rows ----------------------------------------------------------------------------------
    def row(self, svc: Service) -> ServiceStatus:
        state, health, uptime = self.state(svc)
        if state != "RUNNING":
            return ServiceStatus(svc.name, svc.kind, state, None, svc.port, False,
                                 "no such container: deploy with `pulumi up`" if state == "MISSING" else state.lower())
        if health == "unhealthy":
            return ServiceStatus(svc.name, svc.kind, state, None, svc.port, False, "its declared healthcheck fails",
                                 uptime)
        ok, detail = self.check(svc)
        return ServiceStatus(svc.name, svc.kind, state, None, svc.port, ok, detail, uptime)

    def rows(self) -> list[ServiceStatus]:
        declared = [s for s in self.inventory.services.values()
                    if s.kind not in ("job",) and not s.name.startswith(("migrate-", "backup-"))]
        # upstream images (no Debian package) need a registry this machine cannot reach
        unavailable = [name for name in images.UPSTREAM if name in self.inventory.services]
        here = [s for s in declared if s.name not in unavailable]
        with ThreadPoolExecutor(max_workers=8) as pool:
            rows = list(pool.map(self.row, here))
        for name in unavailable:
            rows.append(ServiceStatus(name, services.service(name).kind, "NOT_AVAILABLE", None, None, None,
                                      f"declared, not run on this machine: {images.UPSTREAM[name]} is an upstream "
                                      "image (no Debian package) and no registry is reachable here"))
        return rows


def status(spec: StackSpec) -> list[ServiceStatus]:
    if spec.target == "kubernetes":
        res = executor("local").run("kubectl config current-context", check=False, timeout=20)
        if not res.ok:
            raise InventoryError(f"stack {spec.name!r} runs on Kubernetes and no cluster context is configured "
                                 f"(`kubectl config current-context`: {(res.stderr or res.stdout).strip()[:200] or 'kubectl missing'}); "
                                 "set one with `kubectl config use-context NAME`")
    if not (spec.state_path / "inventory.json").exists():
        raise InventoryError(f"no inventory for stack {spec.name!r} at {spec.state_path / 'inventory.json'}; after "
                             f"`pulumi up -s {spec.name}` run `pulumi stack output -s {spec.name} --json "
                             f"--show-secrets inventory > {spec.state_path / 'inventory.json'}`")
    return ContainerStatus(spec).rows()
