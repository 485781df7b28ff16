"""The docker target's release driver: traffic between the slots of a running staging stack.

Both slots' backends run as containers all the time (the program declares them); a release
on this target moves *traffic*, as on the local target:

    apply(state)   save ``<state>/release.json``; render nginx.conf and prometheus.yml for the
                   spec as the state overrides it; put each into its container's config volume
                   beside the live one, ``nginx -t`` on it, move it into place, then HUP (Nginx:
                   graceful, in-flight requests finish on the old workers; Prometheus: reload)
    confirm_edge   ask Nginx (the published port) which slot answers
    slot_health    /health and /ready of each replica, inside its container
    invariants     the container invariants (ops/invariants.py)

What it does not do: put a new version in a slot. There a slot's version is its image, declared
in the stack config (``recon:backend.slots``) and rolled out by ``pulumi up``; ``fab deploy``
says so. The recorded state lives beside the inventory and wins over the declared active slot
until the next ``pulumi up`` declares it (docs/releases.md).
"""

from __future__ import annotations

import base64
import shlex
import ssl
import time

from infra.docker.platform import DockerPlatform
from infra.layout import ContainerLayout
from infra.render import render_all
from infra.spec import StackSpec
from ops.containers import ContainerStatus
from ops.errors import ReleaseError
from ops.executors import executor
from ops.inventory import load_inventory
from ops.release import state as rstate
from ops.release.gates import GateResult

RELOADED = {"nginx/nginx.conf": "nginx", "prometheus/prometheus.yml": "prometheus"}
"""The configs a release changes, and the container that reads each."""


class DockerRelease:
    def __init__(self, spec: StackSpec):
        self.spec = spec
        self.inventory = load_inventory(spec)
        self.layout = ContainerLayout(spec, "docker")

    # -- reading ---------------------------------------------------------------------------
    def state(self) -> rstate.ReleaseState:
        """The recorded state; a slot counts as running when all its backend containers run."""
        st = rstate.load(self.spec)
        status = ContainerStatus(self.spec, self.inventory)
        for slot in st.slots:
            st.slots[slot].running = all(status.state(self.inventory.get(b))[0] == "RUNNING"
                                         for b in self.backends(slot))
        return st

    def backends(self, slot: str) -> list[str]:
        return self.layout.backends(slot)

    def require_running(self) -> None:
        status = ContainerStatus(self.spec, self.inventory)
        down = [n for n in ("nginx", "prometheus") if status.state(self.inventory.get(n))[0] != "RUNNING"]
        if down:
            raise ReleaseError(f"stack {self.spec.name!r}: {', '.join(down)} not running; deploy it with "
                               f"`pulumi up -s {self.spec.name}`")

    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.spec.prometheus.port}"  # published on the host's loopback

    # -- applying --------------------------------------------------------------------------
    def apply(self, st: rstate.ReleaseState, task: str, processes: bool = True) -> list[str]:
        """Make the running stack's traffic match ``st``; returns the configs that changed."""
        rstate.save(self.spec, st, task)
        spec = rstate.effective_spec(self.spec, st)  # the layout too: it knows which slots serve
        wanted = render_all(spec, ContainerLayout(spec, "docker"), DockerPlatform.render_context(spec), only=RELOADED)
        changed = []
        for rel, name in RELOADED.items():
            ex = self.inventory.get(name).executor
            path = self.layout.conf(rel)
            current = ex.run(f"cat {shlex.quote(path)}", check=False).stdout
            if current == wanted[rel].content:
                continue
            blob = base64.b64encode(wanted[rel].content.encode()).decode()
            new = shlex.quote(path + ".new")
            ex.run(f"printf %s {blob} | base64 -d > {new}", timeout=30)
            if name == "nginx":
                res = ex.run(f"nginx -t -q -e stderr -c {new}", check=False, timeout=30)
                if not res.ok:
                    ex.run(f"rm -f {new}", check=False)
                    raise ReleaseError(f"nginx -t rejected the rendered config (kept the old one): "
                                       f"{(res.stderr or res.stdout).strip()[-800:]}")
            ex.run(f"mv {new} {shlex.quote(path)}", timeout=30)
            container = self.inventory.get(name).extra.get("container", name)
            executor("local").run(["docker", "kill", "--signal", "HUP", container], timeout=30)
            changed.append(rel)
        return changed

    def sync_processes(self) -> list[str]:
        """Nothing to start or stop: both slots' containers run all the time on this target."""
        return []

    def migrate(self, slot: str) -> object:  # pragma: no cover - deploy refuses this target first
        raise ReleaseError("migrations on the docker target run as the program's migration job (`pulumi up`)")

    def migrate_command(self, slot: str) -> str:
        return "the program's migration job (pulumi up)"

    # -- observing -------------------------------------------------------------------------
    def _get(self, proc: str, path: str) -> tuple[int, bytes]:
        """GET ``path`` from a backend replica, inside its container (its port is not published)."""
        svc = self.inventory.get(proc)
        script = ("import sys, urllib.request as u, urllib.error as e\n"
                  "try:\n"
                  f"    r = u.urlopen('http://127.0.0.1:{svc.port}{path}', timeout=3); print(r.status); "
                  "sys.stdout.write(r.read(160).decode(errors='replace'))\n"
                  "except e.HTTPError as x:\n"
                  "    print(x.code); sys.stdout.write(x.read(160).decode(errors='replace'))\n")
        res = svc.executor.run(f"python -c {shlex.quote(script)}", check=False, timeout=15)
        if not res.ok:
            raise OSError((res.stderr or res.stdout).strip()[-160:] or f"exit {res.exit_code}")
        code, _, body = res.stdout.partition("\n")
        return int(code), body.encode()

    def slot_health(self, slot: str, version: str, timeout_s: float) -> GateResult:
        from ops.release.gates import slot_health
        return slot_health(self.spec, self.backends(slot), slot, version, timeout_s, get=self._get)

    def edge_url(self) -> str:
        n = self.spec.nginx
        host = "127.0.0.1" if n.publish_address == "0.0.0.0" else n.publish_address
        return f"https://{host}:{n.https_port}" if n.tls else f"http://{host}:{n.http_port}"

    def confirm_edge(self, expect_only: str | None, timeout_s: float = 5.0, probes: int = 10) -> str:
        from ops.release.local import _slot_of
        url = f"{self.edge_url()}/nginx/upstream-health"
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the program's self-signed staging certificate
        deadline = time.monotonic() + timeout_s
        while True:
            seen = [_slot_of(url, ctx) or "error" for _ in range(probes)]
            if all(s != "error" and (expect_only is None or s == expect_only) for s in seen):
                return f"{probes}/{probes} probes through Nginx answered" + (f" by {expect_only}" if expect_only else "")
            if time.monotonic() >= deadline:
                raise ReleaseError(f"Nginx did not serve {'slot ' + expect_only if expect_only else 'the pool'} "
                                   f"within {timeout_s:.0f}s; last probes: {seen}")
            time.sleep(0.1)

    def invariants(self, run, task: str) -> None:
        from ops import invariants
        invariants.step(run, ContainerStatus(self.spec, self.inventory), task, which=invariants.CONTAINERS)
