"""A command detached on the host, so a dropped SSH connection does not kill it.

    job = HostJob.start(executor, jobs_dir, "backup-full", "pgbackrest ... backup", env=...)
    result = job.wait(timeout=3600)      # polls; reconnects when the connection drops

The command runs under ``setsid`` with its output in ``<jobs>/<id>.out`` and its exit code
written atomically to ``<jobs>/<id>.rc`` when it ends. ``wait`` polls that file; when the
executor loses its connection (:class:`ops.executors.ExecutorUnreachable`), it reconnects
and keeps polling, so a laptop that drops off Wi-Fi finds the backup finished, not killed.

Trap: ``env`` is exported into the job's shell; secrets there never reach argv or the log,
but they do live in the job's environment on the host for its lifetime (as with any daemon).
"""

from __future__ import annotations

import datetime as dt
import secrets
import shlex
import time
from dataclasses import dataclass

from ops.errors import HostJobLost
from ops.executors import Executor, ExecutorUnreachable, Result


@dataclass
class HostJob:
    executor: Executor
    jobs_dir: str
    id: str
    command: str
    env: dict | None = None
    pid: int | None = None

    @property
    def out(self) -> str:
        return f"{self.jobs_dir}/{self.id}.out"

    @property
    def rc(self) -> str:
        return f"{self.jobs_dir}/{self.id}.rc"

    @classmethod
    def start(cls, executor: Executor, jobs_dir: str, name: str, command: str,
              env: dict | None = None) -> "HostJob":
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        job = cls(executor, jobs_dir, f"{stamp}-{name}-{secrets.token_hex(3)}", command, env)
        inner = f"( {command} ) > {shlex.quote(job.out)} 2>&1; echo $? > {shlex.quote(job.rc)}.tmp && " \
                f"mv {shlex.quote(job.rc)}.tmp {shlex.quote(job.rc)}"
        launch = (f"mkdir -p {shlex.quote(jobs_dir)} && cd / && "
                  f"{{ setsid bash -c {shlex.quote(inner)} < /dev/null > /dev/null 2>&1 & echo $!; }}")
        res = executor.run(launch, env=env, timeout=60)
        job.pid = int(res.stdout.strip().splitlines()[-1])
        return job

    def poll(self) -> int | None:
        """The exit code, or None while the job runs."""
        res = self.executor.run(f"cat {shlex.quote(self.rc)} 2>/dev/null || echo running", timeout=30)
        text = res.stdout.strip()
        return None if text == "running" or not text else int(text)

    def wait(self, timeout: float, interval: float = 0.5, reconnect_for: float = 120) -> Result:
        t0 = time.monotonic()
        lost_since: float | None = None
        while True:
            try:
                code = self.poll()
                lost_since = None
            except ExecutorUnreachable as exc:
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > reconnect_for:
                    raise HostJobLost(f"lost the host for {reconnect_for:.0f}s while job {self.id} ran "
                                      f"(`{self.command}`); it keeps running there: its exit code will be "
                                      f"in {self.rc}, its output in {self.out}") from exc
                code = None
            if code is not None:
                out = self.executor.run(f"tail -c 20000 {shlex.quote(self.out)}", timeout=30, check=False)
                return Result(self.command, code, out.stdout, out.stdout if code else "",
                              time.monotonic() - t0, getattr(self.executor, "where", "localhost"))
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"job {self.id} (`{self.command}`) still running after {timeout:.0f}s; "
                                   f"output in {self.out}")
            time.sleep(interval)
