"""supervisord for the local target: its config, its daemon, and an XML-RPC client.

supervisord listens on a unix socket under ``<state>/run`` (0700). Each call here opens a
fresh connection, so a restarted supervisord is picked up transparently.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import xmlrpc.client  # nosec B411: supervisord's own unix socket (0700 in <state>/run), no untrusted XML
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

from infra.layout import LocalLayout
from infra.local.errors import SupervisorError
from infra.render import environment


def render_config(spec, layout: LocalLayout, processes, run_as: str | None) -> str:
    return environment().get_template("supervisor/supervisord.conf.j2").render(
        spec=spec, layout=layout, processes=processes, run_as=run_as)


class Supervisor:
    def __init__(self, layout: LocalLayout):
        self.layout = layout
        self.conf = Path(layout.conf("supervisord.conf"))
        self.sock = Path(layout.run("supervisor.sock"))

    @property
    def rpc(self):
        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def running(self) -> bool:
        if not self.sock.exists():
            return False
        try:
            return self.rpc.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start_daemon(self, timeout: float = 10) -> None:
        supervisord = Path(sys.executable).parent / "supervisord"
        cmd = [str(supervisord) if supervisord.exists() else "supervisord", "-c", str(self.conf)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise SupervisorError(f"supervisord did not start ({shlex.join(cmd)}): "
                                  f"{(res.stderr or res.stdout).strip()[-500:]}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running():
                return
            time.sleep(0.1)
        raise SupervisorError(f"supervisord did not answer on {self.sock} within {timeout:.0f}s; "
                              f"see {self.layout.log('supervisord.log')}")

    def reread(self) -> list[str]:
        """Load a changed config: add new programs, drop removed ones (stopping them); a changed
        program is stopped and re-added stopped. Returns the changed programs' names."""
        added, changed, removed = self.rpc.reloadConfig()[0]
        for name in removed:
            try:
                self.rpc.stopProcess(name, True)
            except xmlrpc.client.Fault:
                pass
            self.rpc.removeProcessGroup(name)
        for name in changed:
            try:
                self.rpc.stopProcess(name, True)
            except xmlrpc.client.Fault:
                pass
            self.rpc.removeProcessGroup(name)
            self.rpc.addProcessGroup(name)
        for name in added:
            self.rpc.addProcessGroup(name)
        return list(changed)

    def info(self) -> dict[str, dict]:
        if not self.running():
            return {}
        return {p["name"]: p for p in self.rpc.getAllProcessInfo()}

    def start(self, name: str, wait: bool = True) -> None:
        """Start ``name``; with ``wait=False`` return at once (health checks do the waiting)."""
        try:
            self.rpc.startProcess(name, wait)
        except xmlrpc.client.Fault as exc:
            if "ALREADY_STARTED" in exc.faultString:
                return
            raise SupervisorError(f"{name} did not start ({exc.faultString}); last lines of "
                                  f"{self.layout.log(name + '.log')}:\n{self.tail(name)}") from None

    def stop(self, name: str) -> None:
        try:
            self.rpc.stopProcess(name, True)
        except xmlrpc.client.Fault as exc:
            if "NOT_RUNNING" not in exc.faultString:
                raise SupervisorError(f"{name} did not stop: {exc.faultString}") from None

    def signal(self, name: str, sig: str) -> None:
        self.rpc.signalProcess(name, sig)

    def tail(self, name: str, lines: int = 15) -> str:
        path = Path(self.layout.log(name + ".log"))
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def shutdown(self, timeout: float = 60) -> None:
        if not self.running():
            return
        try:
            self.rpc.stopAllProcesses(True)
        finally:
            try:
                self.rpc.shutdown()
            except (OSError, xmlrpc.client.Error):
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.sock.exists() and self.running():
            time.sleep(0.1)
