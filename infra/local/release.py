"""Runtime release and database-role state of a local stack: ``<state>/release.json``.

The spec *declares* a starting point (``backend.active_slot``, ``backend.canary_weight``,
``backend.slots[*].version``); the release tasks (``fab deploy/switch/canary/promote/rollback``)
and ``fab db.failover`` change the running stack. What they did is recorded here, per stack,
and :func:`effective_spec` lays it over the spec, so ``fab up``, ``fab status`` and the
rendered Nginx/Prometheus/supervisord configs all follow the last release action instead of
snapping back to the spec.

    release.json
    ├── active_slot, previous_slot, canary_weight
    ├── slots: {blue|green: {version, running}}
    ├── postgres: {primary: <process>, fenced: [<process>...]}
    └── updated_at, updated_by_task

Trap: when the file is absent the spec is the whole truth (a fresh stack). Delete the file
only with the stack stopped, or the running processes and the configs disagree.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from infra.local.errors import ReleaseStateError
from infra.spec import StackSpec

SlotName = Literal["blue", "green"]
FILE = "release.json"


class SlotState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str = Field(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")
    running: bool = False
    env: dict[str, str] = Field(default_factory=dict)
    """Extra RECON_* settings of this version (``fab deploy --env``); never secrets."""


class PostgresRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    primary: str = "postgres-primary"
    fenced: list[str] = Field(default_factory=list)
    """Former primaries stopped by a failover: never started again until rebuilt as replicas."""


class ReleaseState(BaseModel):
    model_config = ConfigDict(extra="forbid")
    active_slot: SlotName
    previous_slot: SlotName | None = None
    canary_weight: int = Field(0, ge=0, le=100)
    slots: dict[SlotName, SlotState]
    postgres: PostgresRoles = PostgresRoles()
    updated_at: str | None = None
    updated_by_task: str | None = None

    @property
    def idle_slot(self) -> SlotName:
        return "green" if self.active_slot == "blue" else "blue"

    def running_slots(self) -> list[str]:
        """Slots whose backend processes run: the active one always, others when deployed."""
        return [s for s in ("blue", "green") if s == self.active_slot or self.slots[s].running]

    @classmethod
    def from_spec(cls, spec: StackSpec) -> "ReleaseState":
        b = spec.backend
        slots = {s: SlotState(version=b.slots[s].version, running=(s == b.active_slot or
                                                                  (s == b.idle_slot and b.canary_weight > 0)))
                 for s in ("blue", "green")}
        return cls(active_slot=b.active_slot, canary_weight=b.canary_weight, slots=slots)


def path_of(spec: StackSpec) -> Path:
    return spec.state_path / FILE


def load(spec: StackSpec) -> ReleaseState:
    """The recorded state, or the spec's declared one when nothing was recorded yet."""
    p = path_of(spec)
    if not p.exists():
        return ReleaseState.from_spec(spec)
    try:
        return ReleaseState.model_validate_json(p.read_text())
    except ValueError as exc:
        raise ReleaseStateError(f"{p}: unreadable release state ({str(exc).splitlines()[0]}); "
                         "fix or remove it (with the stack stopped)") from exc


def save(spec: StackSpec, state: ReleaseState, task: str) -> None:
    """Write atomically (tmp + rename): a crash leaves the old or the new state, never half."""
    state.updated_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    state.updated_by_task = task
    p = path_of(spec)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n")
    os.replace(tmp, p)


def effective_spec(spec: StackSpec, state: ReleaseState | None = None) -> StackSpec:
    """``spec`` with the backend's active slot, canary weight and slot versions from ``state``."""
    state = state or load(spec)
    slots = {s: spec.backend.slots[s].model_copy(update={"version": state.slots[s].version})
             for s in ("blue", "green")}
    backend = spec.backend.model_copy(update={"active_slot": state.active_slot,
                                              "canary_weight": state.canary_weight, "slots": slots})
    return spec.model_copy(update={"backend": backend})


def summary(state: ReleaseState) -> dict:
    """What ``fab status`` shows: plain data, JSON-ready."""
    return json.loads(state.model_dump_json())
