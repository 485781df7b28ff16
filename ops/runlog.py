"""Plans and the run log: every mutating task prints its plan with ``--dry-run``, needs
``--yes`` for destructive steps, and appends one JSON record per run to the run log
(operator, time, task, arguments, each step's command, exit code and duration, outcome).

    with Run(inventory.run_log, "restore", args, dry_run=..., yes=...) as run:
        run.step("stop the application", "supervisorctl stop backend-*", fn, destructive=True)

A step's ``command`` is what the operator reads in the plan and the log; ``fn`` does it and
returns an exit code or a :class:`ops.executors.Result`. Secrets never enter the record:
arguments whose name looks secret are masked.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from infra.services import is_secret_name
from ops.console import progress
from ops.errors import NeedsConfirmation, StepFailed


@dataclass
class Step:
    index: int
    title: str
    command: str
    destructive: bool = False
    exit_code: int | None = None
    duration_s: float | None = None
    detail: str | None = None
    started_at: str | None = None


@dataclass
class Run:
    log_path: Path
    task: str
    args: dict[str, Any]
    dry_run: bool = False
    yes: bool = False
    steps: list[Step] = field(default_factory=list)
    outcome: str = "running"
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.t0 = time.monotonic()
        self.started = dt.datetime.now(dt.timezone.utc).isoformat()

    def step(self, title: str, command: str, fn: Callable[[], Any] | None = None,
             destructive: bool = False) -> Any:
        s = Step(len(self.steps) + 1, title, command, destructive)
        self.steps.append(s)
        if self.dry_run:
            progress(f"plan {s.index}: {title}{' [destructive]' if destructive else ''}\n           $ {command}")
            return None
        if destructive and not self.yes:
            raise NeedsConfirmation(f"step {s.index} ({title}) is destructive: `{command}`; "
                                    "re-run with --yes to confirm (or --dry-run to see the whole plan)")
        progress(f"step {s.index}: {title}")
        s.started_at = dt.datetime.now(dt.timezone.utc).isoformat()
        t = time.monotonic()
        try:
            out = fn() if fn else None
        except BaseException as exc:
            s.duration_s = round(time.monotonic() - t, 3)
            s.exit_code = getattr(getattr(exc, "result", None), "exit_code", 1)
            s.detail = str(exc)[-2000:]
            raise StepFailed(s, exc) from exc
        s.duration_s = round(time.monotonic() - t, 3)
        code = getattr(out, "exit_code", out if isinstance(out, int) else 0)
        s.exit_code = code
        return out

    def record(self) -> dict[str, Any]:
        return {
            "operator": _operator(), "host": socket.gethostname(), "task": self.task,
            "args": {k: ("***" if is_secret_name(k) else v)
                     for k, v in self.args.items()},
            "started_at": self.started, "duration_s": round(time.monotonic() - self.t0, 3),
            "dry_run": self.dry_run, "outcome": self.outcome, "notes": self.notes,
            "steps": [asdict(s) for s in self.steps],
        }

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.outcome = "planned" if self.dry_run else "ok"
        elif isinstance(exc, NeedsConfirmation):
            self.outcome = "refused"
        else:
            self.outcome = f"failed: {str(exc).splitlines()[0][:300]}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as f:
            f.write(json.dumps(self.record(), default=str) + "\n")


def _operator() -> str:
    return os.environ.get("RECON_OPERATOR") or getpass.getuser()


def read_runs(log_path: Path, task: str | None = None) -> list[dict[str, Any]]:
    if not log_path.exists():
        return []
    runs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [r for r in runs if task is None or r["task"] == task]
