"""redis.conf and sentinel.conf: a real primary, a replica and three Sentinels on free ports.

One scenario, in the order a target starts them (each step needs the previous one): the
primary with the rendered settings, the replica replicating from it, and three Sentinels that
name the primary as master and reach quorum. All are stopped at teardown.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from infra.layout import ContainerLayout


def test_primary_replica_and_sentinels(render_local, free_ports, find_tool, processes, poll):
    base, sentinel_base = free_ports(2), free_ports(3)
    r = render_local(overrides={"redis": {
        "port": base, "replicas": 1, "maxmemory_mib": 48, "appendonly": True,
        "sentinel": {"port": sentinel_base, "count": 3, "quorum": 2, "master_name": "recon-test",
                     "down_after_ms": 1000}}})
    layout, log_dir, ports = r.layout, r.spec.state_path / "log", r.spec.local_ports()
    pw = _write_redis_secrets(Path(layout.secret("")))

    def client(proc: str, user: str = "ops") -> redis.Redis:
        auth = {} if proc.startswith("sentinel") else {"username": user, "password": pw[user]}
        return redis.Redis(host="127.0.0.1", port=ports[proc], socket_timeout=2, decode_responses=True, **auth)

    def answers(c: redis.Redis) -> bool:
        processes.assert_running()
        return c.ping()

    # -- the primary, with the rendered settings in effect
    processes.start("redis-primary", [find_tool("redis-server"), str(r.path("redis/redis-primary.conf"))],
                    log_dir)
    primary = client("redis-primary")
    poll(lambda: answers(primary), 10, "the primary to answer PING")
    assert primary.config_get("maxmemory") == {"maxmemory": str(48 * 1024 * 1024)}
    assert primary.config_get("appendonly") == {"appendonly": "yes"}
    assert primary.config_get("dir")["dir"] == layout.data("redis-primary")
    # Test speed only: the rendered default waits 5 s for more replicas before a diskless sync.
    primary.config_set("repl-diskless-sync-delay", 0)

    # -- the replica replicates from the primary and refuses writes
    processes.start("redis-replica-1", [find_tool("redis-server"),
                                        str(r.path("redis/redis-replica-1.conf"))], log_dir)
    replica = client("redis-replica-1")
    poll(lambda: answers(replica) and replica.info("replication")["master_link_status"] == "up", 10,
         "the replica to link to the primary")
    assert replica.info("replication")["master_port"] == base
    app_primary, app_replica = client("redis-primary", "app"), client("redis-replica-1", "app")
    app_primary.set("recon:marker", "from-primary")
    poll(lambda: app_replica.get("recon:marker") == "from-primary", 5, "the marker to replicate")
    with pytest.raises(redis.ReadOnlyError):
        app_replica.set("recon:x", "1")
    with pytest.raises(redis.AuthenticationError):  # the default user is off
        redis.Redis(host="127.0.0.1", port=base, socket_timeout=2).ping()

    # -- three Sentinels agree on the master and can reach quorum
    for proc in layout.sentinels():
        # Sentinel rewrites its config: it runs from a copy in its data directory, as the
        # targets do (see the template's header).
        own = Path(layout.data(proc)) / "sentinel.conf"
        shutil.copy(r.path(f"redis/{proc}.conf"), own)
        with own.open("a") as f:  # what the targets add at start: the Sentinel's Redis login
            f.write(f"sentinel auth-user recon-test sentinel\nsentinel auth-pass recon-test {pw['sentinel']}\n")
        processes.start(proc, [find_tool("redis-sentinel"), str(own)], log_dir)
    sentinels = [client(proc) for proc in layout.sentinels()]
    assert len(sentinels) == 3
    name = "recon-test"
    for s in sentinels:
        poll(lambda: answers(s), 10, "a Sentinel to answer PING")
        assert s.sentinel_get_master_addr_by_name(name) == ("127.0.0.1", base)
        master = s.sentinel_master(name)
        assert master["quorum"] == 2 and master["down-after-milliseconds"] == 1000
    # Sentinels find each other through the master's hello channel (every 2 s).
    poll(lambda: all(len(s.sentinel_sentinels(name)) == 2 for s in sentinels), 15,
         "each Sentinel to see the two others")
    poll(lambda: all(len(s.sentinel_slaves(name)) == 1 for s in sentinels), 15,
         "each Sentinel to know the replica")
    # Raw reply: redis-py's sentinel_ckquorum compares the whole reply to "OK" and says False.
    reply = sentinels[0].execute_command("SENTINEL", "CKQUORUM", name)
    assert reply.startswith("OK 3 usable Sentinels"), reply
    for c in [primary, replica, app_primary, app_replica, *sentinels]:
        c.close()


def _write_redis_secrets(secrets: Path) -> dict[str, str]:
    """The ACL file and the replication include the configs name, as the targets write them."""
    from infra import redisacl
    pw = {name: f"test-{name}-password" for name in redisacl.USERS}
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "redis-users.acl").write_text(redisacl.acl_file(pw))
    (secrets / "redis-replication.conf").write_text(redisacl.replication_include(pw["replication"]))
    return pw


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_container_redis_configs(stack, render_stack):
    """Container configs name the primary by host name; Sentinel must resolve host names."""
    r = render_stack(stack)
    layout: ContainerLayout = r.layout
    replica = r.text("redis/redis-replica-1.conf")
    assert f"replicaof redis-primary {r.spec.redis.port}\n" in replica
    assert "replica-announce-ip redis-replica-1\n" in replica
    s = r.spec.redis.sentinel
    sentinel = r.text("redis/sentinel-1.conf")
    lines = sentinel.splitlines()
    monitor = f"sentinel monitor {s.master_name} redis-primary {r.spec.redis.port} {s.quorum}"
    # resolve-hostnames must come before the monitor line, or Sentinel rejects the host name
    assert lines.index("sentinel resolve-hostnames yes") < lines.index(monitor)
    assert len(layout.sentinels()) == s.count


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_container_redis_server_accepts_its_config(stack, render_stack, tmp_path, free_ports,
                                                  find_tool, processes, poll):
    """redis-server loads the container replica config; only where it listens and writes is
    changed (command-line arguments win over the file). Its primary, ``redis-primary``, does
    not resolve here: the replica keeps retrying, which is not a config error. Sentinel cannot
    be checked this way offline: with resolve-hostnames it refuses an unresolvable master."""
    r = render_stack(stack)
    port = free_ports(1)
    # Redis changes to ``dir`` while reading the file, before command-line overrides apply:
    # the container volume /data is swapped for a scratch directory in a copy.
    text = r.text("redis/redis-replica-1.conf")
    assert "\ndir /data\n" in text
    secrets = r.layout.secret("redis-users.acl").removesuffix("redis-users.acl")
    assert f"aclfile {secrets}redis-users.acl\n" in text  # the secret files the platforms deliver
    pw = _write_redis_secrets(tmp_path / "secrets")
    conf = tmp_path / "redis-replica-1.conf"
    conf.write_text(text.replace("\ndir /data\n", f"\ndir {tmp_path}\n").replace(secrets, f"{tmp_path}/secrets/"))
    processes.start("redis", [find_tool("redis-server"), str(conf),
                              "--bind", "127.0.0.1", "--port", str(port),
                              "--pidfile", str(tmp_path / "redis.pid")], tmp_path)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True,
                         username="ops", password=pw["ops"])

    def up() -> bool:
        processes.assert_running()
        return client.ping()

    poll(up, 10, "redis-server with the container config")
    assert client.config_get("replica-announce-ip") == {"replica-announce-ip": "redis-replica-1"}
    assert client.info("replication")["master_host"] == "redis-primary"
    client.close()
