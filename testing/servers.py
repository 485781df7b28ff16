"""Throwaway PostgreSQL 15, Redis and Redis Sentinel on loopback, and free ports, for tests.

Used by ``tests/app/conftest.py`` (session fixtures), ``tests/templates/conftest.py`` and
``tests/fix_sshd.py`` (free ports) and ``benchmarks/bench_api.py``. Everything listens on
127.0.0.1 on free ports and lives in a temporary directory removed on ``stop()``.

Traps:

* PostgreSQL refuses to run as root. When ``os.geteuid() == 0`` the data directory is
  chowned to ``postgres`` and ``initdb``/``pg_ctl`` run through ``runuser -u postgres``.
* The PostgreSQL instance is tuned for speed, not safety (``fsync=off``): never point it at
  data you want to keep.
* A session killed before teardown leaves its postmaster running (pg_ctl daemonises it);
  :func:`reap_orphans` (called by :meth:`ThrowawayStack.start`) stops those whose owner
  process is gone. Redis servers are started with PR_SET_PDEATHSIG and die with the process
  that started them.
* A free port found by binding port 0 can in theory be taken by someone else before the
  server binds it; start-up then fails with the server's log in the exception.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("RECON_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_SERVER = os.environ.get("RECON_REDIS_SERVER", "/usr/bin/redis-server")
REDIS_SENTINEL = os.environ.get("RECON_REDIS_SENTINEL", "/usr/bin/redis-sentinel")


class ServerStartError(RuntimeError):
    """A throwaway server did not come up; the message carries the tail of its log."""


OWNER_FILE = "owner.pid"


def _mark_owner(root: Path) -> None:
    (root / OWNER_FILE).write_text(str(os.getpid()))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(tmp: Path | None = None) -> list[Path]:
    """Stop and remove throwaway PostgreSQL clusters whose owning process is gone.

    A test session killed before its teardown (timeout, SIGKILL) leaves a daemonised
    postmaster behind. Each cluster records its owner's pid in ``owner.pid``; clusters whose
    owner is alive (another session running now) are left alone. Returns the removed roots.
    """
    removed = []
    for root in sorted(Path(tmp or tempfile.gettempdir()).glob("recon-pg-*")):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours to judge (no owner recorded)
        if _alive(owner):
            continue
        server = PostgresServer(root=root)
        server.stop()
        removed.append(root)
    return removed


def _die_with_parent() -> None:
    """``preexec_fn``: ask Linux to SIGTERM this child when its parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass  # not Linux/glibc: teardown or reap_orphans still cleans up


def free_port(count: int = 1) -> int:
    """A TCP port free on 127.0.0.1 right now; with `count`, the first of that many in a row.

    Free now, not reserved: see the last trap above. A block (``count > 1``) is for configs
    that derive ports from a base (replica n on base + n).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if count == 1:
            return base
        if base + count <= 65535 and all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free ports on 127.0.0.1 found in 100 tries")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerStartError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s:\n{_tail(log)}")


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temp dir. ``dsn`` points at database ``recon`` as ``postgres``."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="recon-pg-")))
    dbname: str = "recon"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname or self.dbname}"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        # pg_ctl start/restart must get -l: a postmaster inheriting our pipes would keep them open
        # and this call would never return (hence the timeout as a backstop).
        return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=self.root, timeout=120)

    def start(self) -> PostgresServer:
        if not (PG_BIN / "initdb").exists():
            raise ServerStartError(f"PostgreSQL binaries not found in {PG_BIN} (set RECON_PG_BIN)")
        _mark_owner(self.root)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        res = self._run(str(PG_BIN / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--locale=C", "--no-sync")
        if res.returncode != 0:
            raise ServerStartError(f"initdb failed ({res.returncode}): {res.stderr.strip()}")
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 "
                "-c shared_buffers=128MB -c max_wal_size=2GB -c checkpoint_timeout=30min")
        res = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l", str(self.log),
                        "-w", "-t", "30", "start")
        if res.returncode != 0:
            raise ServerStartError(f"pg_ctl start failed: {res.stderr.strip()}\n{_tail(self.log)}")
        res = self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        self.dbname)
        if res.returncode != 0:
            raise ServerStartError(f"createdb failed: {res.stderr.strip()}")
        return self

    def restart(self) -> None:
        """Fast restart (every client connection is cut), as a failover looks to clients."""
        res = self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), "-m", "fast", "-w",
                        "-t", "30", "restart")
        if res.returncode != 0:
            raise ServerStartError(f"pg_ctl restart failed: {res.stderr.strip()}\n{_tail(self.log)}")

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """One redis-server (optionally a replica of ``replica_of``) in a temp dir, no persistence."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="recon-redis-")))
    replica_of: int | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    def start(self) -> RedisServer:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--logfile", str(self.log), "--daemonize", "no"]
        if self.replica_of:
            argv += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        _wait_port(self.port, 10, "redis-server", self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc, self.root)


def _stop(proc: subprocess.Popen[bytes] | None, root: Path) -> None:
    """Terminate a throwaway server (kill after 5 s) and remove its directory."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(root, ignore_errors=True)


@dataclass
class SentinelServer:
    """One redis-sentinel monitoring ``master_port`` as ``master_name`` with quorum 1."""

    master_port: int
    master_name: str = "mymaster"
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="recon-sentinel-")))
    down_after_ms: int = 1000
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "sentinel.log"

    def start(self) -> SentinelServer:
        conf = self.root / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.root}\nlogfile {self.log}\n"
            f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} 5000\n"
            f"sentinel parallel-syncs {self.master_name} 1\n"
        )
        self.proc = subprocess.Popen([REDIS_SENTINEL, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        _wait_port(self.port, 10, "redis-sentinel", self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc, self.root)


@dataclass
class ThrowawayStack:
    """PostgreSQL + Redis master + replica + one Sentinel, migrated, with ``env()`` for processes."""

    with_replica: bool = True
    pg: PostgresServer | None = None
    redis: RedisServer | None = None
    replica: RedisServer | None = None
    sentinel: SentinelServer | None = None

    def start(self) -> ThrowawayStack:
        reap_orphans()
        try:
            self.pg = PostgresServer().start()
            self.redis = RedisServer().start()
            if self.with_replica:
                self.replica = RedisServer(replica_of=self.redis.port).start()
            self.sentinel = SentinelServer(master_port=self.redis.port).start()
            self.migrate()
        except BaseException:
            self.stop()
            raise
        return self

    def migrate(self) -> None:
        import psycopg

        from app.db.migrate import migrate

        assert self.pg is not None
        with psycopg.connect(self.pg.dsn()) as conn:
            migrate(conn)

    def env(self, **extra: str) -> dict[str, str]:
        """``RECON_*`` variables pointing at these servers (merged over ``os.environ``)."""
        assert self.pg and self.sentinel
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECON_")}
        env.update({
            "RECON_DATABASE_URL": self.pg.dsn(),
            "RECON_REDIS_SENTINELS": f"127.0.0.1:{self.sentinel.port}",
            "RECON_REDIS_MASTER_NAME": self.sentinel.master_name,
            "RECON_SLOT": "test",
            "RECON_VERSION": "0.0.0-test",
            "RECON_LOG_LEVEL": "INFO",
        })
        env.update(extra)
        return env

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.redis, self.pg):
            if server is not None:
                try:
                    server.stop()
                except Exception:  # noqa: BLE001 - tear down the rest regardless
                    pass
