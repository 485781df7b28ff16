"""The specification's Artillery load profile as data, its arrival schedule, and the Locust
shape's schedule, all pure Python (no Locust, no gevent): the unit tests and the runner import
this, the locustfile delegates to it.

    profile = load_profile()                 # load/phases.yaml, validated
    ci = profile.scaled(profile.ci_scale)    # every duration / 11: 660 s -> 60 s; rates unchanged
    ci.arrival_times()                       # [(t, phase index), ...]: when each virtual user arrives
    PoolSchedule(ci).tick(t, active=...)     # what the Locust shape asks for at run time t

Artillery's meaning, kept: ``arrivalRate`` is *new virtual users per second*, each running one
scenario and leaving (an open model: arrivals do not wait for earlier users to finish);
``rampTo`` moves the rate linearly from ``arrivalRate`` to ``rampTo`` over the phase.

Traps:

* Arrival times here are deterministic: the k-th arrival of a phase is where the integral of
  the rate reaches k (constant rate r: k/r). Artillery spaces a constant phase the same way; in
  a ramp it steps the rate once a second and draws arrivals at random within a step, which has
  the same expected count (duration x (arrivalRate + rampTo) / 2) and more noise.
* Scaling divides durations and never rates: `make load` reaches the same 50 users/s peak as
  the full profile, for 16 s instead of 180 s. Think times inside a scenario are not scaled.
* The Locust pool is not the arrival rate. Locust runs a fixed set of user greenlets; the
  locustfile turns them into Artillery users by handing out one arrival "ticket" at each time
  of :meth:`Profile.arrival_times`. :class:`PoolSchedule` only keeps enough idle greenlets
  ready (Little's law: rate x time a user stays, with headroom); the report measures how late
  each user started, so a pool that ran dry shows as a lower achieved arrival rate, not a
  hidden one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

PHASES_FILE = Path(__file__).with_name("phases.yaml")

_PHASE_KEYS = {"duration", "arrivalRate", "rampTo", "name"}


class ProfileError(ValueError):
    """The phase file is not a profile this runner implements; the message names the key."""


@dataclass(frozen=True)
class Phase:
    name: str
    duration: float
    """seconds"""
    arrival_rate: float
    """new virtual users per second at the start of the phase"""
    ramp_to: float | None = None
    """rate at the end of the phase (linear ramp); None: constant"""
    start: float = 0.0
    """seconds from the start of the run"""

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def end_rate(self) -> float:
        return self.arrival_rate if self.ramp_to is None else self.ramp_to

    def rate_at(self, tau: float) -> float:
        """Arrival rate ``tau`` seconds into the phase."""
        if self.ramp_to is None or self.duration <= 0:
            return self.arrival_rate
        tau = min(max(tau, 0.0), self.duration)
        return self.arrival_rate + (self.ramp_to - self.arrival_rate) * tau / self.duration

    def expected_arrivals(self) -> float:
        """The integral of the rate over the phase (what Artillery's phase sends on average)."""
        return self.duration * (self.arrival_rate + self.end_rate) / 2

    def arrival_offsets(self) -> list[float]:
        """Seconds into the phase at which each virtual user arrives (the first at 0)."""
        a, b, d = self.arrival_rate, self.end_rate, self.duration
        total = self.expected_arrivals()
        out: list[float] = []
        k = 0
        while k < total - 1e-9:
            if abs(b - a) < 1e-12:
                tau = k / a
            else:
                slope = (b - a) / d  # rate(tau) = a + slope * tau; N(tau) = a tau + slope tau^2 / 2
                tau = (-a + math.sqrt(max(a * a + 2 * slope * k, 0.0))) / slope
            if tau >= d:
                break
            out.append(tau)
            k += 1
        return out


@dataclass(frozen=True)
class Ensure:
    """Artillery's ``ensure`` block: the run fails when any of these is exceeded."""
    p95_ms: float
    p99_ms: float
    max_error_rate_pct: float


@dataclass(frozen=True)
class Metric:
    """One row of the specification's Performance Metrics table."""
    metric: str
    key: str
    op: str
    target: float
    critical: float

    def holds(self, value: float | None, bound: float) -> bool | None:
        if value is None:
            return None
        return value < bound if self.op == "<" else value > bound


@dataclass(frozen=True)
class ReadBurstTarget:
    target_rps: float
    p99_ms: float


@dataclass(frozen=True)
class Profile:
    target: str
    phases: tuple[Phase, ...]
    ensure: Ensure
    metrics: tuple[Metric, ...]
    read_burst: ReadBurstTarget
    ci_scale: float
    scale: float = 1.0
    """the factor every duration was divided by (1: the specification's profile)"""
    source: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def duration(self) -> float:
        return self.phases[-1].end if self.phases else 0.0

    @property
    def peak_rate(self) -> float:
        return max(max(p.arrival_rate, p.end_rate) for p in self.phases)

    def scaled(self, factor: float) -> Profile:
        """The same profile with every duration divided by ``factor`` (rates unchanged)."""
        if not factor > 0:
            raise ProfileError(f"scale factor: got {factor!r}; a number > 0")
        phases, start = [], 0.0
        for p in self.phases:
            q = replace(p, duration=p.duration / factor, start=start)
            phases.append(q)
            start = q.end
        return replace(self, phases=tuple(phases), scale=self.scale * factor)

    def phase_index_at(self, t: float) -> int | None:
        """The phase running at ``t`` (None before 0 and from the end on)."""
        for i, p in enumerate(self.phases):
            if p.start <= t < p.end:
                return i
        return None

    def rate_at(self, t: float) -> float:
        i = self.phase_index_at(t)
        return 0.0 if i is None else self.phases[i].rate_at(t - self.phases[i].start)

    def max_rate_until(self, t: float) -> float:
        """The highest arrival rate of any moment in [0, t]."""
        best = 0.0
        for p in self.phases:
            if p.start > t:
                break
            best = max(best, p.arrival_rate, p.rate_at(min(t, p.end) - p.start))
        return best

    def arrival_times(self) -> list[tuple[float, int]]:
        """Every virtual user's arrival: (seconds from the start, phase index), in order."""
        out: list[tuple[float, int]] = []
        for i, p in enumerate(self.phases):
            out.extend((p.start + tau, i) for tau in p.arrival_offsets())
        return out

    def arrivals_per_phase(self) -> list[int]:
        counts = [0] * len(self.phases)
        for _, i in self.arrival_times():
            counts[i] += 1
        return counts


def _number(raw: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise ProfileError(f"{where}: got {raw!r}; a number")
    if raw < 0 or (positive and raw == 0):
        raise ProfileError(f"{where}: got {raw!r}; a number {'> 0' if positive else '>= 0'}")
    return float(raw)


def parse_profile(doc: dict[str, Any]) -> Profile:
    """Validate a parsed phase file; every problem names its key."""
    config = doc.get("config") or {}
    raw_phases = config.get("phases")
    if not isinstance(raw_phases, list) or not raw_phases:
        raise ProfileError("config.phases: a non-empty list of phases")
    phases, start = [], 0.0
    for n, raw in enumerate(raw_phases):
        where = f"config.phases[{n}]"
        if not isinstance(raw, dict):
            raise ProfileError(f"{where}: a mapping")
        unknown = set(raw) - _PHASE_KEYS
        if unknown:
            raise ProfileError(f"{where}: {sorted(unknown)} not implemented here; keys: {sorted(_PHASE_KEYS)}")
        duration = _number(raw.get("duration"), f"{where}.duration", positive=True)
        rate = _number(raw.get("arrivalRate"), f"{where}.arrivalRate")
        ramp = raw.get("rampTo")
        ramp_to = None if ramp is None else _number(ramp, f"{where}.rampTo")
        if rate == 0 and not ramp_to:
            raise ProfileError(f"{where}: arrivalRate 0 without rampTo sends nobody")
        phases.append(Phase(str(raw.get("name") or f"phase {n + 1}"), duration, rate, ramp_to, start))
        start += duration
    ens = config.get("ensure") or {}
    ensure = Ensure(_number(ens.get("p95"), "config.ensure.p95", positive=True),
                    _number(ens.get("p99"), "config.ensure.p99", positive=True),
                    _number(ens.get("maxErrorRate"), "config.ensure.maxErrorRate"))
    metrics = []
    for n, row in enumerate(doc.get("metrics") or []):
        if row.get("op") not in ("<", ">"):
            raise ProfileError(f"metrics[{n}].op: got {row.get('op')!r}; '<' or '>'")
        metrics.append(Metric(str(row["metric"]), str(row["key"]), row["op"],
                              _number(row.get("target"), f"metrics[{n}].target"),
                              _number(row.get("critical"), f"metrics[{n}].critical")))
    rb = doc.get("read_burst") or {}
    read_burst = ReadBurstTarget(_number(rb.get("target_rps"), "read_burst.target_rps", positive=True),
                                 _number(rb.get("p99_ms"), "read_burst.p99_ms", positive=True))
    return Profile(target=str(config.get("target", "")), phases=tuple(phases), ensure=ensure,
                   metrics=tuple(metrics), read_burst=read_burst,
                   ci_scale=_number(doc.get("ci_scale", 1), "ci_scale", positive=True), source=doc)


def load_profile(path: Path | str = PHASES_FILE) -> Profile:
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        raise ProfileError(f"{path}: a YAML mapping with a `config` block")
    return parse_profile(doc)


@dataclass(frozen=True)
class PoolSchedule:
    """What the Locust shape asks for: ``tick(t, active, current)`` -> (users, spawn rate) or None.

    The pool follows the phases: at ``t`` it holds enough user greenlets for the highest
    arrival rate of [0, t + lead_s], each expected to stay ``vu_seconds`` (a scenario's think
    times and requests, with headroom), grown ahead of a rising rate. When the service slows
    down, users stay longer than that: the pool then also grows with demand (users in a
    scenario or waiting to start, plus ``idle_s`` of arrivals), up to ``max_users``. It never
    shrinks (Locust would stop users mid-scenario). After the last arrival it keeps the pool
    while users are still in a scenario, at most ``drain_s``, then stops.
    """

    profile: Profile
    vu_seconds: float = 12.0
    lead_s: float = 2.0
    idle_s: float = 4.0
    spawn_rate: float = 1000.0  # spawning is cheap (a user's connection opens on its arrival), and
    # Locust's shape worker waits for each spawn to finish before its next tick
    min_users: int = 4
    max_users: int = 1500
    drain_s: float = 30.0

    def users_at(self, t: float) -> int:
        """The pool the schedule alone asks for at ``t``."""
        horizon = min(t + self.lead_s, self.profile.duration)
        need = math.ceil(self.profile.max_rate_until(horizon) * self.vu_seconds)
        return max(self.min_users, min(self.max_users, need))

    def headroom(self, t: float) -> int:
        """Idle users wanted beside the busy ones: ``idle_s`` of arrivals at the rate of ``t`` (the
        shape adjusts once a second, and a slow service keeps users longer than planned)."""
        return self.min_users + math.ceil(self.profile.rate_at(t) * self.idle_s)

    @property
    def end(self) -> float:
        """The latest time the shape runs: the profile plus the drain."""
        return self.profile.duration + self.drain_s

    def tick(self, t: float, active: int = 0, current: int = 0) -> tuple[int, float] | None:
        """``active``: users in a scenario or arrivals not started yet (the locustfile counts);
        ``current``: what the shape asked for so far."""
        duration = self.profile.duration
        if t >= duration and (t >= self.end or active <= 0):
            return None
        demand = active + self.headroom(t) if t < duration else 0
        return max(current, self.users_at(min(t, duration)), min(demand, self.max_users)), self.spawn_rate


@dataclass(frozen=True)
class BurstSchedule:
    """The read burst: ``users`` keep-alive clients, each paced to ``rate / users`` requests a
    second (constant throughput), for ``duration_s``; never more than ``max_requests``."""

    rate: float
    duration_s: float
    users: int = 64
    max_requests: int = 60_000
    spawn_rate: float = 500.0

    @property
    def per_user_rate(self) -> float:
        return self.rate / self.users

    def tick(self, t: float, active: int = 0) -> tuple[int, float] | None:
        return (self.users, self.spawn_rate) if t < self.duration_s else None
