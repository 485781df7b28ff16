"""The local target's release driver: apply a release state to the running stack.

    apply(state)   save release.json; render the Nginx and Prometheus configs from the spec as
                   the state overrides it; ``nginx -t`` (through the inventory's executor), then
                   reload Nginx and Prometheus with HUP (graceful: in-flight requests finish on
                   the old workers, new connections get the new upstreams); rewrite the
                   supervisord config and start/stop the slots' processes to match.
    migrate(slot)  ``python -m app migrate`` with that slot's environment, through the executor.
    traffic(...)   ask Nginx which slot answers, to confirm a reload took effect.

The docker and kubernetes targets express the same state as stack config
(``recon:backend.active_slot``, ``canary_weight``) applied by ``pulumi up``; this driver is
the local target's equivalent, and the only one that runs on this machine.

Trap: apply() writes release.json *first*. If a later step fails, the caller re-applies the
previous state (that is what "revert" means here), so the file and the stack agree again.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from infra.local.target import LocalTarget
from infra.render import write_all
from infra.services import binary
from infra.spec import REPO_ROOT, StackSpec
from ops.errors import ReleaseError
from ops.inventory import load_inventory
from ops.release import state as rstate

RELOADED = ("nginx/nginx.conf", "prometheus/prometheus.yml", "pgbackrest/pgbackrest.conf")
"""The configs a release or failover changes (paths as render_all names them); pgBackRest
reads its config at every call, so it follows the primary without a reload."""


class LocalRelease:
    def __init__(self, spec: StackSpec):
        self.spec = spec
        """The declared spec; the release state is laid over it by LocalTarget."""
        self.inventory = load_inventory(spec)

    # -- reading ---------------------------------------------------------------------------
    def state(self) -> rstate.ReleaseState:
        return rstate.load(self.spec)

    def target(self) -> LocalTarget:
        return LocalTarget(self.spec)

    def require_running(self) -> None:
        if not self.target().supervisor.running():
            raise ReleaseError(f"stack {self.spec.name!r} is not running (no supervisord at "
                               f"{self.target().supervisor.sock}); start it with `fab up`")

    # -- applying --------------------------------------------------------------------------
    def apply(self, st: rstate.ReleaseState, task: str, processes: bool = True) -> list[str]:
        """Make the running stack match ``st``. Returns what changed (config names, processes).

        Traffic moves first (Nginx reload); with ``processes=False`` the supervisord side (slots
        started or stopped, workers rolled onto the active version) is left to :meth:`sync_processes`,
        so a rollback does not wait for a worker to stop.
        """
        t = self.target().with_release(st)
        sup_conf = t.supervisor_config()
        sup_path = Path(t.layout.conf("supervisord.conf"))
        self._refuse_restarting_serving(t, st, sup_path, sup_conf)
        rstate.save(self.spec, st, task)
        conf_dir = t.root / "conf"
        wanted = t.render(only=RELOADED)  # two templates only: a rollback does not wait for the rest
        old_nginx = (conf_dir / "nginx/nginx.conf").read_text() if (conf_dir / "nginx/nginx.conf").exists() else None
        changed = write_all(wanted, conf_dir)
        if "nginx/nginx.conf" in changed:
            conf = t.layout.conf("nginx/nginx.conf")
            res = self.inventory.get("nginx").executor.run(
                [binary("nginx"), "-t", "-q", "-e", "stderr", "-c", conf], check=False, timeout=30)
            if not res.ok:
                if old_nginx is not None:
                    Path(conf).write_text(old_nginx)
                raise ReleaseError(f"nginx -t rejected the rendered config (kept the old one): "
                                   f"{(res.stderr or res.stdout).strip()[-800:]}")
        info = t.supervisor.info()
        for name in ("nginx", "prometheus"):
            rel = "nginx/nginx.conf" if name == "nginx" else "prometheus/prometheus.yml"
            if rel in changed and info.get(name, {}).get("statename") == "RUNNING":
                t.supervisor.signal(name, "HUP")
        if processes:
            changed += self.sync_processes(t, sup_path, sup_conf)
        return changed

    def sync_processes(self, t: LocalTarget | None = None, sup_path: Path | None = None,
                       sup_conf: str | None = None) -> list[str]:
        """Rewrite the supervisord config for the saved state; start/stop slots, roll workers."""
        changed: list[str] = []
        if t is None:
            t = self.target()
            sup_path = Path(t.layout.conf("supervisord.conf"))
            sup_conf = t.supervisor_config()
        procs = t.processes()
        restarted: list[str] = []
        if not sup_path.exists() or sup_path.read_text() != sup_conf:
            sup_path.write_text(sup_conf)
            # stops programs that left the plan, re-adds changed ones stopped (started again below)
            restarted = t.supervisor.reread()
            changed.append("supervisord.conf")
        info = t.supervisor.info()
        started = []
        for p in procs:
            if ((p.kind in ("backend", "worker") or p.name in restarted)
                    and info.get(p.name, {}).get("statename") != "RUNNING"):
                t.supervisor.start(p.name, wait=False)
                started.append(p.name)
        return changed + [f"started {n}" for n in started]

    def _refuse_restarting_serving(self, t: LocalTarget, st, sup_path: Path, new_conf: str) -> None:
        """A release never restarts a backend that serves traffic. If the supervisord config of a
        serving slot's replica changed for another reason (code or interpreter path, spec env),
        refuse: `fab up` rolls those first, outside the release."""
        import configparser
        if not sup_path.exists():
            return
        old, new = configparser.RawConfigParser(), configparser.RawConfigParser()
        old.read_string(sup_path.read_text())
        new.read_string(new_conf)
        before = self.state()
        serving = {before.active_slot, st.active_slot}
        serving |= {before.idle_slot} if before.canary_weight else set()
        serving |= {st.idle_slot} if st.canary_weight else set()
        running = t.supervisor.info()
        changed = []
        for slot in sorted(serving):
            for proc in t.layout.backends(slot):
                sec = f"program:{proc}"
                if (old.has_section(sec) and new.has_section(sec) and dict(old.items(sec)) != dict(new.items(sec))
                        and running.get(proc, {}).get("statename") == "RUNNING"):
                    changed.append(proc)
        if changed:
            raise ReleaseError(f"this change would restart {', '.join(changed)}, which serve traffic: their "
                               "supervisord config changed outside a release (code path, interpreter or spec "
                               "environment). Nothing was changed; run `fab up` to roll them, then retry")

    def migrate(self, slot: str) -> object:
        """Apply migrations with ``slot``'s environment (same code, the version it will run)."""
        t = self.target()
        env = t.migrate_env(slot)  # as the owner role: the service's own role cannot change the schema
        env.pop("PYTHONPATH", None)
        cmd = f"cd {shlex.quote(str(REPO_ROOT))} && {shlex.quote(sys.executable)} -m app migrate"
        return self.inventory.get(f"backend-{slot}-1").executor.run(
            cmd, env={**env, "PYTHONPATH": str(REPO_ROOT)}, timeout=300)

    def migrate_command(self, slot: str) -> str:
        """What migrate() runs, for the plan and the run record."""
        return f"cd {REPO_ROOT} && {sys.executable} -m app migrate   # env of slot {slot}"

    # -- observing -------------------------------------------------------------------------
    def backends(self, slot: str) -> list[str]:
        return self.target().layout.backends(slot)

    def prometheus_url(self) -> str:
        return f"http://{self.target().layout.endpoint('prometheus')}"

    def slot_health(self, slot: str, version: str, timeout_s: float):
        from infra.local.processes import http_get
        from ops.release.gates import slot_health
        layout = self.target().layout
        return slot_health(self.spec, layout.backends(slot), slot, version, timeout_s,
                           get=lambda proc, path: http_get(f"http://{layout.endpoint(proc)}{path}", timeout=3))

    def invariants(self, run, task: str) -> None:
        from ops import invariants
        invariants.step(run, self.target(), task)

    def edge_url(self) -> str:
        s = self.spec
        return f"https://{s.host}:{s.nginx.https_port}" if s.nginx.tls else f"http://{s.host}:{s.nginx.http_port}"

    @property
    def cafile(self) -> str:
        return str(self.spec.state_path / "tls" / "ca.crt")

    def confirm_edge(self, expect_only: str | None, timeout_s: float = 5.0, probes: int = 10) -> str:
        """Wait until Nginx answers through the upstream pool, ``probes`` times in a row, and (when
        ``expect_only``) every answer comes from that slot. Returns what it saw."""
        import ssl
        url = f"{self.edge_url()}/nginx/upstream-health"
        ctx = ssl.create_default_context(cafile=self.cafile) if url.startswith("https") else None
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while True:
            ok = 0
            seen = []
            for _ in range(probes):
                slot = _slot_of(url, ctx)
                seen.append(slot or "error")
                if slot and (expect_only is None or slot == expect_only):
                    ok += 1
            if ok == probes:
                return f"{probes}/{probes} probes through Nginx answered" + (f" by {expect_only}" if expect_only else "")
            if time.monotonic() >= deadline:
                raise ReleaseError(f"Nginx did not serve {'slot ' + expect_only if expect_only else 'the pool'} "
                                   f"within {timeout_s:.0f}s; last probes: {seen}")
            time.sleep(0.1)


def _slot_of(url: str, ctx) -> str | None:
    import urllib.request
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=2, context=ctx) as resp:
            return resp.headers.get("X-Recon-Slot") if resp.status == 200 else None
    except OSError:
        return None


__all__ = ["LocalRelease", "ReleaseError"]
