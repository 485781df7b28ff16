"""Helpers for the disaster-recovery drill: a throwaway stack driven through `fab` over SSH,
marker rows written through the service, pg_dumpall, and a fingerprint of the running stack."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from infra.services import PG_BIN

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def fab(env: dict, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run([FAB, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"`fab {' '.join(args)}` exited {res.returncode}:\n{res.stderr[-4000:]}")
    return res


def spec_of(env: dict):
    from infra.spec import load_spec
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_spec()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def as_service_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "recon", "--", *argv] if os.geteuid() == 0 else argv


def psql(spec, sql: str, db: str | None = None) -> str:
    root = spec.state_path
    res = subprocess.run(as_service_user([f"{PG_BIN}/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                                          "-h", str(root / "run"), "-p", str(spec.postgres.port), "-U", "postgres",
                                          "-d", db or spec.postgres.database, "-c", sql]),
                         capture_output=True, text=True, env={**os.environ, "PGPASSFILE": str(
                             root / "secrets" / "pgbackrest" / "pgpass")}, timeout=60)
    if res.returncode != 0:
        raise AssertionError(f"psql failed: {res.stderr}")
    return res.stdout.strip()


def pg_dumpall(spec) -> str:
    root = spec.state_path
    res = subprocess.run(as_service_user([f"{PG_BIN}/pg_dumpall", "-h", str(root / "run"), "-p",
                                          str(spec.postgres.port), "-U", "postgres"]),
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PGPASSFILE": str(root / "secrets" / "pgbackrest" / "pgpass")})
    assert res.returncode == 0, res.stderr
    # PostgreSQL 15.14+ wraps the dump in \restrict/\unrestrict with a random key per run
    # and `fab up` re-sets role passwords after a restore (same password, new SCRAM salt):
    # verifiers are masked, so the comparison is of data and schema, and no verifier is printed.
    import re
    text = "".join(ln for ln in res.stdout.splitlines(keepends=True)
                   if not ln.startswith(("\\restrict ", "\\unrestrict ")))
    return re.sub(r"PASSWORD 'SCRAM-SHA-256\$[^']*'", "PASSWORD '<scram verifier>'", text)


def fingerprint(env: dict) -> dict[str, object]:
    """Each service's supervisor state and pid: equal before and after means nothing was touched."""
    rows = json.loads(fab(env, "status", "--json", check=False).stdout)
    return {r["service"]: (r["state"], r["pid"]) for r in rows if r["service"] != "release"}


def api_token(spec) -> str:
    from infra.layout import LocalLayout
    from infra.local.processes import app_env
    env = {**os.environ, **app_env(spec, LocalLayout(spec), spec.backend.active_slot)}
    res = subprocess.run([sys.executable, "-m", "app", "token", "create", "--name", "drill", "--role", "operator"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


class MarkerWriter:
    """Writes a marker (a reconciliation named ``marker-<n>``) through the service every
    ``interval`` seconds and records when each write was acknowledged (HTTP 201)."""

    def __init__(self, url: str, token: str, interval: float = 0.1, context=None):
        self.url, self.token, self.interval, self.context = url, token, interval, context
        self.acked: list[tuple[str, float]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._pause = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._n = 0

    def _loop(self):
        while not self._stop.is_set():
            if self._pause.is_set():
                time.sleep(0.02)
                continue
            self._n += 1
            name = f"marker-{self._n:06d}"
            req = urllib.request.Request(self.url, data=json.dumps({"name": name}).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5, context=self.context) as resp:
                    if resp.status == 201:
                        self.acked.append((name, time.time()))
            except Exception:
                self.errors += 1
            time.sleep(self.interval)

    def start(self):
        self._thread.start()
        return self

    def pause(self):
        self._pause.set()
        time.sleep(0.5)

    def resume(self):
        self._pause.clear()

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)


def markers_in_db(spec) -> set[str]:
    out = psql(spec, "SELECT name FROM reconciliations WHERE name LIKE 'marker-%'")
    return set(out.split()) if out else set()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()
