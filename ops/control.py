"""Start, stop and inspect a stack's processes, whatever runs them.

    Control
    ├── LocalControl    supervisord on the stack's host (``supervisorctl``, via the executor)
    └── DockerControl   one container per process (``docker start/stop/inspect`` on the engine)

What a task needs beyond "start" and "stop":

``states()``      every process and its state in supervisord's words (RUNNING, STOPPED, ...)
``data_ex(name)`` an executor that reaches a process's data *while it is stopped*: on the local
                  target the host itself; on Docker a throwaway container of the same image with
                  the stopped container's volumes (``docker run --rm --volumes-from``), no
                  network, as the service user. That is how a restore rewrites a data directory
                  whose server is, in a container, the container's main process.
``logs(name)``    the process's recent output (PostgreSQL's own reason when it does not start)
``plan(verb, names)`` the command line shown in the run log and ``--dry-run``
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ops.errors import PreflightFailed
from ops.executors import Executor, executor

if TYPE_CHECKING:
    from ops.backup.site import Site

DOCKER_STATES = {"running": "RUNNING", "restarting": "STARTING", "created": "STOPPED", "exited": "EXITED",
                 "paused": "STOPPED", "dead": "FATAL"}


class Control:
    def __init__(self, site: "Site"):
        self.site = site

    def states(self) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def state(self, name: str) -> tuple[str, int]:
        """(state, restarts) of one process."""
        return self.states().get(name, "MISSING"), 0

    def stop(self, names: list[str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def start(self, names: list[str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def data_ex(self, name: str) -> Executor:  # pragma: no cover - abstract
        raise NotImplementedError

    def logs(self, name: str, lines: int = 300) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def plan(self, verb: str, *names: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class LocalControl(Control):
    def _ctl(self, *args: str) -> str:
        ctl = Path(__import__("sys").executable).parent / "supervisorctl"
        return shlex.join([str(ctl), "-c", self.site.layout.conf("supervisord.conf"), *args])

    def plan(self, verb: str, *names: str) -> str:
        return self._ctl(verb, *names)

    def states(self) -> dict[str, str]:
        res = self.site.ex.run(self._ctl("status"), user=self.site.admin_user, check=False)
        out = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = parts[1]
        if not out:
            raise PreflightFailed(f"supervisord of stack {self.site.spec.name!r} does not answer "
                                  f"({(res.stderr or res.stdout).strip()[:200]}); start it with `fab up`")
        return out

    def stop(self, names: list[str]) -> None:
        if names:
            self.site.ex.run(self._ctl("stop", *names), user=self.site.admin_user, timeout=180)

    def start(self, names: list[str]) -> None:
        if names:
            self.site.ex.run(self._ctl("start", *names), user=self.site.admin_user, timeout=180)

    def data_ex(self, name: str) -> Executor:
        return self.site.ex

    def logs(self, name: str, lines: int = 300) -> str:
        log = self.site.layout.log(name + ".log")
        return self.site.ex.run(f"tail -n {lines} {shlex.quote(log)}", check=False).stdout


class DockerControl(Control):
    """The containers the inventory names, on the engine ``docker`` reaches (``DOCKER_HOST``)."""

    def container(self, name: str) -> str:
        return self.site.inventory.get(name).extra.get("container", name)

    def _docker(self, *args: str, timeout: float = 180, check: bool = True):
        return executor("local").run(["docker", *args], timeout=timeout, check=check)

    def plan(self, verb: str, *names: str) -> str:
        return shlex.join(["docker", verb, *(self.container(n) for n in names)])

    def states(self) -> dict[str, str]:
        names = [n for n, s in self.site.inventory.services.items()
                 if s.extra.get("workload_kind") not in ("job", "cronjob")]
        res = self._docker("inspect", "--format", "{{json .State.Status}}",
                           *(self.container(n) for n in names), check=False)
        found = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
        if len(found) != len(names):  # one missing container: ask one by one, so each is named
            found = []
            for n in names:
                one = self._docker("inspect", "--format", "{{json .State.Status}}", self.container(n), check=False)
                found.append(json.loads(one.stdout) if one.ok else "missing")
        return {n: DOCKER_STATES.get(st, "MISSING") for n, st in zip(names, found)}

    def stop(self, names: list[str]) -> None:
        if names:  # PostgreSQL's fast shutdown on SIGINT would be kinder; docker stop sends the image's STOPSIGNAL
            self._docker("stop", "-t", "60", *(self.container(n) for n in names), timeout=300)

    def start(self, names: list[str]) -> None:
        if names:
            self._docker("start", *(self.container(n) for n in names), timeout=300)

    def state(self, name: str) -> tuple[str, int]:
        """(state, restart count) of one container."""
        res = self._docker("inspect", "--format", "{{json .State.Status}} {{.RestartCount}}", self.container(name),
                           check=False)
        if not res.ok:
            return "MISSING", 0
        status, count = res.stdout.split()
        return DOCKER_STATES.get(json.loads(status), "MISSING"), int(count)

    def restarts(self, name: str) -> int:
        return self.state(name)[1]

    def data_ex(self, name: str) -> Executor:
        c = self.container(name)
        image = self._docker("inspect", "--format", "{{.Config.Image}}", c).stdout.strip()
        user = self._docker("inspect", "--format", "{{.Config.User}}", c).stdout.strip() or None
        return executor("docker-volumes", options={"container": c, "image": image, "user": user})

    def logs(self, name: str, lines: int = 300) -> str:
        res = self._docker("logs", "--tail", str(lines), self.container(name), check=False)
        return res.stdout + res.stderr

    def wait_healthy(self, names: list[str], timeout: float = 180) -> dict[str, float]:
        """Until every container named runs and is healthy: its declared healthcheck passes, or,
        while the engine has not run that check yet (its first runs one interval after the
        start), the same real check ``fab status`` makes (ops/containers.py) passes. The seconds
        each took; raises naming the ones that did not, with their last log lines."""
        from ops.containers import CHECKED_KINDS, ContainerStatus
        status = ContainerStatus(self.site.spec, self.site.inventory)
        t0, ready = time.monotonic(), {}
        pending = list(names)
        while pending:
            for n in list(pending):
                res = self._docker("inspect", "--format", "{{json .State}}", self.container(n), check=False)
                st = json.loads(res.stdout) if res.ok else {}
                health = (st.get("Health") or {}).get("Status")
                svc = self.site.inventory.get(n)
                if health == "starting" and svc.kind in CHECKED_KINDS and status.check(svc)[0]:
                    health = "healthy"
                if st.get("Status") == "running" and health in (None, "healthy"):
                    ready[n] = round(time.monotonic() - t0, 1)
                    pending.remove(n)
            if pending and time.monotonic() - t0 > timeout:
                tails = "; ".join(f"{n}: {' / '.join(self.logs(n, 5).strip().splitlines()[-2:])}" for n in pending)
                raise TimeoutError(f"not healthy after {timeout:.0f}s: {', '.join(pending)} ({tails})")
            if pending:
                time.sleep(0.5)
        return ready


def control(site: "Site") -> Control:
    if site.spec.target == "local":
        return LocalControl(site)
    if site.spec.target == "docker":
        return DockerControl(site)
    raise PreflightFailed(f"stack {site.spec.name!r} has target {site.spec.target!r}: starting and stopping its "
                          "processes is the cluster's job (kubectl); this task drives the local and docker targets")
