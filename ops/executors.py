"""Executors: run a command where a service lives. One registry, imported lazily.

    Executor
    ├── LocalExecutor     this machine (subprocess), optionally as another user (runuser)
    ├── SshExecutor       a host over SSH (Fabric/paramiko)
    ├── DockerExecutor    ``docker exec`` into a container (staging)
    │   └── DockerVolumesExecutor  a stopped container's volumes, in a throwaway one
    └── KubectlExecutor   ``kubectl exec`` into a pod (production)

Every executor returns a :class:`Result` and raises :class:`CommandFailed` (command, exit
code, the tail of its output) when ``check`` is set. Secrets must not be on argv: pass them
through ``env`` (never logged) or a file on the host.
"""

from __future__ import annotations

import importlib
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from ops.errors import CommandFailed, ExecutorUnreachable

REGISTRY = {
    "local": "ops.executors:LocalExecutor",
    "ssh": "ops.executors:SshExecutor",
    "docker": "ops.executors:DockerExecutor",
    "docker-volumes": "ops.executors:DockerVolumesExecutor",
    "kubectl": "ops.executors:KubectlExecutor",
}


@dataclass
class Result:
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    where: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def _cmdline(cmd: str | list[str]) -> str:
    return cmd if isinstance(cmd, str) else shlex.join(cmd)


@dataclass
class Executor:
    name: str = "local"
    user: str | None = None
    """Run as this OS user on the far side (None: as whoever the executor logs in as)."""
    options: dict[str, Any] = field(default_factory=dict)

    def run(self, cmd: str | list[str], *, env: dict[str, str] | None = None, timeout: float = 600,
            check: bool = True, user: str | None = None) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, res: Result, check: bool) -> Result:
        if check and not res.ok:
            raise CommandFailed(res)
        return res


@dataclass
class LocalExecutor(Executor):
    def run(self, cmd, *, env=None, timeout=600, check=True, user=None) -> Result:
        import os
        line = _cmdline(cmd)
        argv = ["bash", "-c", f"umask 077; {line}"]  # what a task creates is the service user's alone
        who = user or self.user
        if who and who != _current_user():
            argv = ["runuser", "-u", who, "--", *argv]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, **(env or {})})
        return self._finish(Result(line, p.returncode, p.stdout, p.stderr, time.monotonic() - t0,
                                   "localhost"), check)


@dataclass
class SshExecutor(Executor):
    """``options``: host, port (22), login (the SSH user), key_filename, connect_timeout."""

    _conn: Any = None

    @property
    def where(self) -> str:
        return f"{self.options.get('login', '')}@{self.options['host']}:{self.options.get('port', 22)}"

    def connection(self):
        if self._conn is None:
            from fabric import Connection
            o = self.options
            self._conn = Connection(o["host"], user=o.get("login"), port=int(o.get("port", 22)),
                                    connect_timeout=int(o.get("connect_timeout", 10)),
                                    connect_kwargs=({"key_filename": o["key_filename"],
                                                     "look_for_keys": False, "allow_agent": False}
                                                    if o.get("key_filename") else {}))
        return self._conn

    def run(self, cmd, *, env=None, timeout=600, check=True, user=None) -> Result:
        import socket

        import paramiko
        line = _cmdline(cmd)
        who = user or self.user
        remote = f"umask 077; {line}"
        if env:
            # exported inside the remote shell, so values never appear in a process list as argv
            exports = "; ".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
            remote = f"{exports}; {line}"
        if who:
            remote = f"runuser -u {shlex.quote(who)} -- bash -c {shlex.quote(remote)}"
        t0 = time.monotonic()
        for attempt in (1, 2):  # a dropped or refused session (sshd's MaxStartups under load) gets one retry
            try:
                r = self.connection().run(remote, hide=True, warn=True, timeout=timeout, in_stream=False)
                break
            except (socket.error, paramiko.SSHException, EOFError) as exc:
                self._conn = None
                if attempt == 2 or isinstance(exc, ConnectionRefusedError):
                    raise ExecutorUnreachable(f"cannot reach {self.where} over SSH: {exc}") from exc
                time.sleep(0.5)
        return self._finish(Result(line, r.exited, r.stdout, r.stderr, time.monotonic() - t0, self.where),
                            check)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class DockerExecutor(Executor):
    """``options``: container (name), docker (binary, default ``docker``)."""

    def run(self, cmd, *, env=None, timeout=600, check=True, user=None) -> Result:
        line = _cmdline(cmd)
        argv = [self.options.get("docker", "docker"), "exec"]
        for k in (env or {}):
            argv += ["-e", k]  # value taken from our environment, not from argv
        if user or self.user:
            argv += ["-u", user or self.user]
        argv += [self.options["container"], "sh", "-c", line]
        return self._exec(argv, line, env, timeout, check, f"docker:{self.options['container']}")

    def _exec(self, argv, line, env, timeout, check, where) -> Result:
        import os
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, **(env or {})})
        except FileNotFoundError as exc:
            raise ExecutorUnreachable(f"{argv[0]} is not installed on this machine") from exc
        return self._finish(Result(line, p.returncode, p.stdout, p.stderr, time.monotonic() - t0, where),
                            check)


@dataclass
class DockerVolumesExecutor(DockerExecutor):
    """A stopped container's data: ``docker run --rm --volumes-from <container>`` of ``image``,
    as ``user``, without a network, read-only root; only its volumes (and /tmp) are writable.

    ``options``: container, image, user (``uid:gid``)."""

    def run(self, cmd, *, env=None, timeout=600, check=True, user=None) -> Result:
        line = _cmdline(cmd)
        o = self.options
        argv = [o.get("docker", "docker"), "run", "--rm", "--volumes-from", o["container"], "--network", "none",
                "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                "--entrypoint", "sh"]
        for k in (env or {}):
            argv += ["-e", k]
        if user or o.get("user"):
            argv += ["-u", user or o["user"]]
        argv += [o["image"], "-c", f"umask 077; {line}"]
        return self._exec(argv, line, env, timeout, check, f"docker-volumes:{o['container']}")


@dataclass
class KubectlExecutor(DockerExecutor):
    """``options``: namespace, pod or selector (a Deployment's pods: the first Running one
    is used), container (optional), context (optional)."""

    def _kubectl(self) -> list[str]:
        o = self.options
        return [o.get("kubectl", "kubectl")] + (["--context", o["context"]] if o.get("context") else [])

    def pod(self) -> str:
        o = self.options
        if o.get("pod"):
            return o["pod"]
        argv = self._kubectl() + ["get", "pods", "-n", o["namespace"], "-l", o["selector"],
                                  "--field-selector", "status.phase=Running",
                                  "-o", "jsonpath={.items[*].metadata.name}"]
        res = self._exec(argv, shlex.join(argv), None, 30, True, f"k8s:{o['namespace']}")
        names = sorted(res.stdout.split())
        if not names:
            raise ExecutorUnreachable(f"no Running pod in namespace {o['namespace']!r} matches "
                                      f"selector {o['selector']!r}")
        return names[0]

    def run(self, cmd, *, env=None, timeout=600, check=True, user=None) -> Result:
        line = _cmdline(cmd)
        o = self.options
        argv = self._kubectl()
        argv += ["exec", "-n", o["namespace"], self.pod()] + (["-c", o["container"]] if o.get("container") else [])
        if env:
            exports = "; ".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
            line_remote = f"{exports}; {line}"
            argv += ["-i", "--", "sh", "-s"]
            return self._stdin(argv, line, line_remote, timeout, check, f"k8s:{o['namespace']}/{argv[argv.index('exec') + 3]}")
        argv += ["--", "sh", "-c", line]
        return self._exec(argv, line, None, timeout, check, f"k8s:{o['namespace']}/{argv[argv.index('exec') + 3]}")

    def _stdin(self, argv, line, script, timeout, check, where) -> Result:
        t0 = time.monotonic()
        try:
            p = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise ExecutorUnreachable(f"{argv[0]} is not installed on this machine") from exc
        return self._finish(Result(line, p.returncode, p.stdout, p.stderr, time.monotonic() - t0, where),
                            check)


def _current_user() -> str:
    import getpass
    return getpass.getuser()


def executor(kind: str, **kwargs) -> Executor:
    """An executor by name: ``executor("ssh", options={"host": ...})``."""
    try:
        module, _, cls = REGISTRY[kind].partition(":")
    except KeyError:
        raise ValueError(f"unknown executor {kind!r}; one of {sorted(REGISTRY)}") from None
    return getattr(importlib.import_module(module), cls)(name=kind, **kwargs)
