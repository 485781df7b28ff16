"""Fixtures for the service tests: real PostgreSQL 15, Redis, Sentinel, app and worker processes.

Session-scoped servers come from :mod:`testing.servers` (also used by ``benchmarks/bench_api.py``).
Nothing is mocked: the API runs in-process through ``TestClient`` against the real servers,
workers and the ``serve`` command run as real subprocesses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from app import auth
from app.settings import Settings
from testing.servers import PG_BIN, ThrowawayStack, free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def _have_servers() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL 15 binaries not found in {PG_BIN}"
    for binary in ("redis-server", "redis-sentinel"):
        if shutil.which(binary) is None and not Path(f"/usr/bin/{binary}").exists():
            return f"{binary} is not installed (apt-get install redis-server redis-sentinel)"
    return None


@pytest.fixture(scope="session")
def stack() -> Iterator[ThrowawayStack]:
    reason = _have_servers()
    if reason:
        pytest.skip(reason)
    s = ThrowawayStack().start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="session")
def settings(stack: ThrowawayStack) -> Settings:
    env = stack.env()
    return Settings(database_url=env["RECON_DATABASE_URL"], redis_sentinels=env["RECON_REDIS_SENTINELS"],
                    redis_master_name=env["RECON_REDIS_MASTER_NAME"], slot="test", version="0.0.0-test",
                    max_upload_bytes=2 * 1024 * 1024, rate_limit_per_minute=100_000, job_lease_seconds=2.0,
                    job_poll_seconds=0.2)


@pytest.fixture(scope="session")
def dsn(stack: ThrowawayStack) -> str:
    assert stack.pg is not None
    return stack.pg.dsn()


@pytest.fixture()
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """A direct autocommit connection for asserting what the service stored."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def tokens(dsn: str) -> dict[str, str]:
    """One token per role: ``{"admin": "rk_...", "operator": ..., "viewer": ...}``."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for role in auth.ROLES:
            _, out[role] = auth.create_token(conn, name=f"test-{role}", role=role)
        conn.commit()
    return out


@pytest.fixture(scope="session")
def app_client(settings: Settings) -> Iterator[TestClient]:
    from app.web import create_app

    with TestClient(create_app(settings)) as client:
        yield client


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def as_operator(tokens: dict[str, str]) -> dict[str, str]:
    return headers(tokens["operator"])


@pytest.fixture(scope="session")
def as_viewer(tokens: dict[str, str]) -> dict[str, str]:
    return headers(tokens["viewer"])


@pytest.fixture(scope="session")
def as_admin(tokens: dict[str, str]) -> dict[str, str]:
    return headers(tokens["admin"])


class Proc:
    """A ``python -m app ...`` subprocess with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.popen = subprocess.Popen([PYTHON, "-m", "app", *args], cwd=ROOT, env=env, stdout=self._fh,
                                      stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: str = "term") -> int:
        if self.popen.poll() is None:
            self.popen.terminate() if sig == "term" else self.popen.kill()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._fh.close()
        return self.popen.returncode


@pytest.fixture(scope="session")
def service_env(stack: ThrowawayStack) -> dict[str, str]:
    return stack.env(RECON_JOB_LEASE_SECONDS="2", RECON_JOB_POLL_SECONDS="0.2", RECON_LOG_LEVEL="INFO",
                     PYTHONPATH=str(ROOT), RECON_MAX_UPLOAD_BYTES=str(2 * 1024 * 1024))


@pytest.fixture(scope="session")
def spawn(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    """Start ``python -m app <args>`` subprocesses; all are stopped at session end."""
    procs: list[Proc] = []
    logdir = tmp_path_factory.mktemp("procs")

    def _spawn(*args: str, env: dict[str, str] | None = None) -> Proc:
        p = Proc(list(args), {**service_env, **(env or {})}, logdir / f"{len(procs)}-{args[0]}.log")
        procs.append(p)
        return p

    yield _spawn
    for p in procs:
        p.stop()


class Workers:
    """The worker processes of the session. Jobs are global, so a test that needs to know which
    worker takes a job stops the others first; :meth:`ensure` brings one back afterwards."""

    def __init__(self, spawn) -> None:  # type: ignore[no-untyped-def]
        self._spawn = spawn
        self.procs: dict[str, Proc] = {}
        self._n = 0

    def start(self, env: dict[str, str] | None = None) -> tuple[str, Proc]:
        self._n += 1
        name = f"w{self._n}"
        self.procs[name] = self._spawn("worker", "--name", name, env=env)
        return name, self.procs[name]

    def alive(self) -> dict[str, Proc]:
        return {n: p for n, p in self.procs.items() if p.popen.poll() is None}

    def ensure(self) -> None:
        if not self.alive():
            self.start()

    def stop_all(self) -> None:
        for proc in self.alive().values():
            proc.stop()


@pytest.fixture(scope="session")
def workers(spawn) -> Workers:  # type: ignore[no-untyped-def]
    return Workers(spawn)


@pytest.fixture()
def worker(workers: Workers) -> Workers:
    """At least one default worker is running."""
    workers.ensure()
    return workers


@pytest.fixture(scope="session")
def server_proc(spawn) -> tuple[str, Proc]:  # type: ignore[no-untyped-def]
    """A real ``python -m app serve`` (slot green, version 9.9.9) on a free port: (base URL, process)."""
    port = free_port()
    proc = spawn("serve", "--host", "127.0.0.1", "--port", str(port), env={"RECON_SLOT": "green",
                                                                          "RECON_VERSION": "9.9.9"})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=0.5).status_code == 200:
                return base, proc
        except httpx.HTTPError:
            pass
        if proc.popen.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"serve did not start:\n{proc.output()}")


@pytest.fixture(scope="session")
def server(server_proc: tuple[str, Proc]) -> str:
    return server_proc[0]


def _wait_run(client: TestClient, run_id: int, hdrs: dict[str, str], timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    body: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/runs/{run_id}", headers=hdrs).json()
        if body.get("status") in ("succeeded", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout}s: {body}")



@pytest.fixture(scope="session")
def wait_run():  # type: ignore[no-untyped-def]
    """``wait_run(client, run_id, headers)``: poll a run until it leaves queued/running."""
    return _wait_run
