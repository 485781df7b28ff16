"""Where the CPU went during a run: the load generator, the stack under test, everything else.

    before = snapshot(stack_pids(root))
    ... run the load generator as a child process, wait for it ...
    usage = before.until(snapshot(stack_pids(root)))   # cores used on average

Linux only (/proc). Processes that started and ended inside the window are not seen one by
one, so "other" is the machine's busy time (/proc/stat) minus the load generator and the
stack: other jobs on the box, and short-lived processes.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def tree(pid: int | None) -> list[int]:
    """``pid`` and all its descendants."""
    if not pid:
        return []
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def stack_pids(root: Path) -> list[int]:
    """Every process of the stack whose state directory is ``root`` (its supervisord's tree)."""
    conf = str(root / "conf" / "supervisord.conf")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "supervisord" in cmd and conf in cmd:
            return tree(int(entry.name))
    return []


def _busy() -> tuple[float, float]:
    """(busy seconds, total seconds) summed over every CPU, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    total = sum(parts[:8])
    return (total - idle) / TICK, total / TICK


def _group(pid: int) -> str:
    """What a stack process is: backend, worker, postgres, nginx, redis, or other."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "other"
    for key, group in (("app serve", "backend"), ("app worker", "worker"), ("postgres", "postgres"),
                       ("nginx", "nginx"), ("redis", "redis")):
        if key in cmd:
            return group
    return "other"


@dataclass
class Snapshot:
    at: float
    busy: float
    locust: float
    stack: float
    loadavg: tuple[float, float, float]
    groups: dict[str, float] = field(default_factory=dict)

    def until(self, later: Snapshot) -> dict[str, float]:
        wall = max(later.at - self.at, 1e-9)
        busy = (later.busy - self.busy) / wall
        gen = max(later.locust - self.locust, 0.0) / wall
        stack = max(later.stack - self.stack, 0.0) / wall
        groups = {g: round(max(later.groups.get(g, 0.0) - self.groups.get(g, 0.0), 0.0) / wall, 2)
                  for g in sorted(set(later.groups) | set(self.groups))}
        return {"cpus": os.cpu_count() or 1, "wall_s": round(wall, 1), "busy_cores": round(busy, 2),
                "load_generator_cores": round(gen, 2), "stack_cores": round(stack, 2),
                "other_cores": round(max(busy - gen - stack, 0.0), 2), "stack_by_group": groups,
                "loadavg_1m_before": self.loadavg[0], "loadavg_1m_after": later.loadavg[0]}


def snapshot(stack: list[int]) -> Snapshot:
    """Now. The load generator is this process's reaped children (run it as a child and wait)."""
    busy, _ = _busy()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    groups: dict[str, float] = {}
    for pid in stack:
        groups[_group(pid)] = groups.get(_group(pid), 0.0) + _proc_cpu(pid)
    return Snapshot(at=time.monotonic(), busy=busy, locust=kids.ru_utime + kids.ru_stime,
                    stack=sum(groups.values()), loadavg=os.getloadavg(), groups=groups)


def describe(usage: dict[str, float]) -> str:
    groups = ", ".join(f"{k} {v:.2f}" for k, v in usage.get("stack_by_group", {}).items() if v >= 0.01)
    return (f"machine: {usage['cpus']} CPUs, {usage['busy_cores']:.2f} cores busy on average over "
            f"{usage['wall_s']:.0f} s: load generator {usage['load_generator_cores']:.2f}, stack "
            f"{usage['stack_cores']:.2f} ({groups}), other jobs {usage['other_cores']:.2f}; load average "
            f"{usage['loadavg_1m_before']:.2f} before, {usage['loadavg_1m_after']:.2f} after")
