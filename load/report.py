"""Turn the locustfile's recorded requests into the report: per phase, beside the
specification's ``ensure`` block and its Performance Metrics table; and the read burst beside
our own target. Pure Python (the runner and the tests import it).

Definitions (the same for every row):

* **requests** of a phase: every request of the virtual users that *arrived* in that phase
  (a user's later requests belong to the phase that sent it in, as its load does);
* **req/s** of a phase: requests *sent* inside the phase's time window / its duration;
* **achieved arrival rate**: virtual users that *started* inside the window / its duration;
  **start lag** is how late a user started after its scheduled arrival;
* **errors**: transport errors and timeouts, 5xx, 429, and any status a scenario did not
  expect; a 409 on a review action (another reviewer acted first) is a *conflict*, not an
  error. **error rate** = errors / requests;
* **availability** = requests served / requests, where not served = transport error, 5xx or
  429 (the definition of testing/loadgen.py);
* percentiles are nearest-rank over every request's latency (send to last body byte), errors
  and timeouts included (Artillery leaves failed requests out; this is the stricter reading).

Artillery's ``ensure`` applies to the whole run (every request); so does the Performance
Metrics table, except throughput, which is judged on the phase with the highest arrival rate
(the specification's profile reaches 100 req/s there or nowhere).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from load.phases import Metric, Profile, ReadBurstTarget

REQ_T, REQ_PHASE, REQ_NAME, REQ_MS, REQ_STATUS, REQ_OUTCOME, REQ_ERROR, REQ_SETUP_MS, REQ_TCP_TLS_MS = range(9)
VU_INDEX, VU_PHASE, VU_SCHEDULED, VU_START, VU_END, VU_FLOW, VU_OK, VU_CUT = range(8)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _unserved(req: list[Any]) -> bool:
    status = req[REQ_STATUS]
    return req[REQ_OUTCOME] == "error" and (status == 0 or status == 429 or status >= 500)


@dataclass
class Row:
    name: str
    window_s: tuple[float, float]
    target_rate: str
    vus_scheduled: int
    vus_started: int
    arrival_rate: float | None
    start_lag_p95_ms: float | None
    vus_failed: int
    vus_cut: int
    requests: int
    rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: int
    error_rate_pct: float | None
    availability_pct: float | None
    conflicts: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    connections: int = 0
    """requests that opened a connection (a new virtual user's first)"""
    connect_p50_ms: float | None = None
    """resolve + TCP connect + TLS handshake, inside those requests' latency"""
    connect_p95_ms: float | None = None
    connect_p99_ms: float | None = None
    tcp_tls_p95_ms: float | None = None
    cpu_busy_cores: float | None = None
    """the whole machine's busy CPUs on average over the phase's window (every process)"""


def _row(name: str, window: tuple[float, float], target_rate: str, scheduled: int,
         reqs: list[list[Any]], sent_in_window: int, vus: list[list[Any]], started_in_window: int) -> Row:
    span = window[1] - window[0]
    lat = [r[REQ_MS] for r in reqs if not str(r[REQ_NAME]).startswith("(")]  # not a scenario's own failure
    errors = [r for r in reqs if r[REQ_OUTCOME] == "error"]
    n = len(reqs)
    lags = [max(0.0, (v[VU_START] - v[VU_SCHEDULED]) * 1000) for v in vus]
    setup = [r[REQ_SETUP_MS] for r in reqs if len(r) > REQ_SETUP_MS and r[REQ_SETUP_MS] is not None]
    tcp_tls = [r[REQ_TCP_TLS_MS] for r in reqs if len(r) > REQ_TCP_TLS_MS and r[REQ_TCP_TLS_MS] is not None]
    return Row(
        name=name, window_s=(round(window[0], 2), round(window[1], 2)), target_rate=target_rate,
        vus_scheduled=scheduled, vus_started=len(vus),
        arrival_rate=round(started_in_window / span, 2) if span > 0 else None,
        start_lag_p95_ms=percentile(lags, 95),
        vus_failed=sum(1 for v in vus if not v[VU_OK] and not _cut(v)), vus_cut=sum(1 for v in vus if _cut(v)),
        requests=n, rps=round(sent_in_window / span, 1) if span > 0 else None,
        p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), p99_ms=percentile(lat, 99),
        errors=len(errors), error_rate_pct=round(100 * len(errors) / n, 3) if n else None,
        availability_pct=round(100 * (n - sum(_unserved(r) for r in reqs)) / n, 3) if n else None,
        conflicts=sum(1 for r in reqs if r[REQ_OUTCOME] == "conflict"),
        error_kinds=dict(Counter(r[REQ_ERROR] for r in errors).most_common(8)),
        connections=len(setup), connect_p50_ms=percentile(setup, 50), connect_p95_ms=percentile(setup, 95),
        connect_p99_ms=percentile(setup, 99), tcp_tls_p95_ms=percentile(tcp_tls, 95))


def _cut(vu: list[Any]) -> bool:
    return len(vu) > VU_CUT and bool(vu[VU_CUT])


def _rate_text(p) -> str:  # type: ignore[no-untyped-def]
    return f"{p.arrival_rate:g}" if p.ramp_to is None else f"{p.arrival_rate:g}->{p.ramp_to:g}"


@dataclass
class Verdict:
    what: str
    value: float | None
    bound: str
    met: bool | None
    critical: str = ""
    critical_met: bool | None = None


@dataclass
class ProfileReport:
    scale: float
    duration_s: float
    phases: list[Row]
    total: Row
    ensure: list[Verdict]
    metrics: list[Verdict]
    flows: dict[str, int]
    runs: dict[str, Any]
    reviews_skipped: int
    tickets_unstarted: int
    stopped_at_cap: bool
    stopped_by_watchdog: bool = False
    pool: dict[str, Any] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ensure_ok(self) -> bool:
        return all(v.met for v in self.ensure)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"ensure_ok": self.ensure_ok}


def _busy_cores(timeline: list[list[Any]], start: float, end: float) -> float | None:
    """Average busy CPUs between the shape ticks that bracket [start, end]."""
    ticks = [r for r in timeline if len(r) > 7 and r[7]]
    inside = [r for r in ticks if start <= r[0] <= end]
    before = [r for r in ticks if r[0] < start]
    after = [r for r in ticks if r[0] > end]
    first = before[-1] if before else (inside[0] if inside else None)
    last = after[0] if after else (inside[-1] if inside else None)
    if first is None or last is None or last[0] <= first[0]:
        return None
    return round((last[7] - first[7]) / (last[0] - first[0]), 2)


def profile_report(profile: Profile, results: dict[str, Any]) -> ProfileReport:
    reqs: list[list[Any]] = results["requests"]
    vus: list[list[Any]] = results["vus"]
    scheduled = profile.arrivals_per_phase()
    rows = []
    for i, p in enumerate(profile.phases):
        window = (p.start, p.end)
        mine = [r for r in reqs if r[REQ_PHASE] == i]
        sent = sum(1 for r in reqs if p.start <= r[REQ_T] < p.end)
        my_vus = [v for v in vus if v[VU_PHASE] == i]
        started = sum(1 for v in vus if p.start <= v[VU_START] < p.end)
        rows.append(_row(p.name, window, _rate_text(p), scheduled[i], mine, sent, my_vus, started))
        rows[-1].cpu_busy_cores = _busy_cores(results.get("timeline") or [], p.start, p.end)
    total = _row("All", (0.0, profile.duration), "", sum(scheduled), reqs,
                 sum(1 for r in reqs if r[REQ_T] < profile.duration), vus,
                 sum(1 for v in vus if v[VU_START] < profile.duration))
    total.cpu_busy_cores = _busy_cores(results.get("timeline") or [], 0.0, profile.duration)
    e = profile.ensure
    ensure = [
        Verdict("p95 (ms)", total.p95_ms, f"<= {e.p95_ms:g}", None if total.p95_ms is None else total.p95_ms <= e.p95_ms),
        Verdict("p99 (ms)", total.p99_ms, f"<= {e.p99_ms:g}", None if total.p99_ms is None else total.p99_ms <= e.p99_ms),
        Verdict("error rate (%)", total.error_rate_pct, f"<= {e.max_error_rate_pct:g}",
                None if total.error_rate_pct is None else total.error_rate_pct <= e.max_error_rate_pct),
    ]
    peak = max(range(len(profile.phases)),
               key=lambda i: (max(profile.phases[i].arrival_rate, profile.phases[i].end_rate), i))
    values = {"p95_ms": total.p95_ms, "p99_ms": total.p99_ms, "error_rate_pct": total.error_rate_pct,
              "throughput_rps": rows[peak].rps, "availability_pct": total.availability_pct}
    metrics = [_metric(m, values.get(m.key), rows[peak].name if m.key == "throughput_rps" else "")
               for m in profile.metrics]
    runs = results.get("runs") or []
    done = [r[1] for r in runs if r[1] is not None]
    return ProfileReport(
        scale=profile.scale, duration_s=profile.duration, phases=rows, total=total, ensure=ensure,
        metrics=metrics, flows=dict(Counter(v[VU_FLOW] for v in vus)),
        runs={"started": len(runs), "succeeded": len(done), "statuses": dict(Counter(r[2] for r in runs)),
              "p50_s": percentile(done, 50), "p95_s": percentile(done, 95)},
        reviews_skipped=int(results.get("reviews_skipped", 0)),
        tickets_unstarted=int(results.get("tickets_unstarted", 0)),
        stopped_at_cap=bool(results.get("stopped_at_cap")),
        stopped_by_watchdog=bool(results.get("stopped_by_watchdog")),
        pool=_pool(results.get("timeline") or []), endpoints=_endpoints(reqs))


def _endpoints(reqs: list[list[Any]]) -> dict[str, dict[str, Any]]:
    """Latency and errors per endpoint over the run, busiest first."""
    by: dict[str, list[list[Any]]] = {}
    for r in reqs:
        by.setdefault(r[REQ_NAME], []).append(r)
    out = {}
    for name, rs in sorted(by.items(), key=lambda kv: -len(kv[1])):
        lat = [r[REQ_MS] for r in rs]
        out[name] = {"requests": len(rs), "p50_ms": percentile(lat, 50), "p95_ms": percentile(lat, 95),
                     "p99_ms": percentile(lat, 99), "errors": sum(1 for r in rs if r[REQ_OUTCOME] == "error")}
    return out


def _pool(timeline: list[list[Any]]) -> dict[str, Any]:
    """The Locust pool over the run, from the shape's ticks: (t, asked, running, tickets not taken,
    users in a scenario, greenlets waiting for a ticket, Locust's CPU seconds so far)."""
    if not timeline:
        return {}
    running = [r for r in timeline if r[2] > 0]
    cpu = [(b[6] - a[6]) / (b[0] - a[0]) for a, b in itertools.pairwise(timeline)
           if len(a) > 6 and len(b) > 6 and b[0] > a[0]]
    return {"max_users": max(r[2] for r in timeline), "max_in_scenario": max(r[4] for r in timeline),
            "min_idle": min(((r[5] if len(r) > 5 else r[2] - r[4]) for r in running), default=0),
            "max_waiting_arrivals": max(r[3] for r in timeline),
            "generator_peak_cpu_pct": round(100 * max(cpu), 1) if cpu else None}


def _metric(m: Metric, value: float | None, where: str) -> Verdict:
    name = m.metric + (f" [{where}]" if where else "")
    return Verdict(name, value, f"{m.op} {m.target:g}", m.holds(value, m.target),
                   f"{m.op} {m.critical:g}", m.holds(value, m.critical))


@dataclass
class BurstReport:
    offered_rps: float
    users: int
    duration_s: float
    requests: int
    rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    errors: int
    error_kinds: dict[str, int]
    per_endpoint: dict[str, dict[str, Any]]
    target: dict[str, float]
    met_rate: bool
    met_p99: bool

    @property
    def met(self) -> bool:
        return self.met_rate and self.met_p99 and self.errors == 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met}


def burst_report(target: ReadBurstTarget, results: dict[str, Any], offered_rps: float, users: int,
                 warmup_s: float = 1.0) -> BurstReport:
    """Rate and latency over the burst after its first ``warmup_s`` (clients connecting)."""
    reqs = [r for r in results["requests"] if r[REQ_T] >= warmup_s]
    span = (max(r[REQ_T] for r in reqs) - warmup_s) if reqs else 0.0
    lat = [r[REQ_MS] for r in reqs]
    errors = [r for r in reqs if r[REQ_OUTCOME] == "error"]
    per: dict[str, dict[str, Any]] = {}
    for name in sorted({r[REQ_NAME] for r in reqs}):
        mine = [r[REQ_MS] for r in reqs if r[REQ_NAME] == name]
        per[name] = {"requests": len(mine), "p50_ms": percentile(mine, 50), "p99_ms": percentile(mine, 99)}
    rps = round(len(reqs) / span, 1) if span > 0 else None
    p99 = percentile(lat, 99)
    return BurstReport(offered_rps=offered_rps, users=users, duration_s=round(span, 2), requests=len(reqs),
                       rps=rps, p50_ms=percentile(lat, 50), p95_ms=percentile(lat, 95), p99_ms=p99,
                       errors=len(errors), error_kinds=dict(Counter(r[REQ_ERROR] for r in errors).most_common(8)),
                       per_endpoint=per, target={"rps": target.target_rps, "p99_ms": target.p99_ms},
                       met_rate=rps is not None and rps >= target.target_rps,
                       met_p99=p99 is not None and p99 < target.p99_ms)


# -- text ------------------------------------------------------------------------------------------
def _f(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def _yes(v: bool | None) -> str:
    return "n/a" if v is None else ("met" if v else "MISSED")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def format_profile(rep: ProfileReport) -> str:
    head = ["phase", "window s", "target/s", "achieved/s", "lag p95 ms", "VUs", "requests", "req/s",
            "p50 ms", "p95 ms", "p99 ms", "errors", "error %", "avail %", "connect p95 ms", "CPUs busy"]
    rows = []
    for r in [*rep.phases, rep.total]:
        rows.append([r.name, f"{r.window_s[0]:.1f}-{r.window_s[1]:.1f}", r.target_rate or "-",
                     _f(r.arrival_rate, 2), _f(r.start_lag_p95_ms), f"{r.vus_started}/{r.vus_scheduled}",
                     f"{r.requests:,}", _f(r.rps, 1), _f(r.p50_ms), _f(r.p95_ms), _f(r.p99_ms), str(r.errors),
                     _f(r.error_rate_pct, 2), _f(r.availability_pct, 3), _f(r.connect_p95_ms),
                     _f(r.cpu_busy_cores, 2)])
    out = [f"Load profile (specification's Artillery phases, durations / {rep.scale:g}: {rep.duration_s:.0f} s)",
           _table(head, rows), ""]
    out.append("Ensure (Artillery, whole run; exit 1 if any is missed):")
    out.append(_table(["check", "measured", "bound", "verdict"],
                      [[v.what, _f(v.value, 2), v.bound, _yes(v.met)] for v in rep.ensure]))
    out.append("")
    out.append("Performance Metrics (specification's table):")
    out.append(_table(["metric", "measured", "target", "verdict", "critical", "verdict"],
                      [[v.what, _f(v.value, 3), v.bound, _yes(v.met), v.critical, _yes(v.critical_met)]
                       for v in rep.metrics]))
    out.append("")
    flows = ", ".join(f"{k} {v}" for k, v in sorted(rep.flows.items()))
    out.append(f"scenarios: {flows}; VUs failed: {rep.total.vus_failed}; VUs still in a scenario when the "
               f"drain ended (stopped): {rep.total.vus_cut}; review conflicts (409): "
               f"{rep.total.conflicts}; reviews with nothing to review: {rep.reviews_skipped}")
    t = rep.total
    if t.connections:
        out.append(f"new connections (each virtual user's first request): {t.connections:,}; resolve + TCP + TLS "
                   f"handshake p50 {_f(t.connect_p50_ms, 1)} ms, p95 {_f(t.connect_p95_ms, 1)} ms, p99 "
                   f"{_f(t.connect_p99_ms, 1)} ms (TCP + TLS alone p95 {_f(t.tcp_tls_p95_ms, 1)} ms), inside the "
                   f"latencies above")
    runs = rep.runs
    out.append(f"runs started by uploads: {runs['started']}, succeeded {runs['succeeded']} "
               f"(queued->succeeded p50 {_f(runs['p50_s'], 2)} s, p95 {_f(runs['p95_s'], 2)} s); "
               f"statuses {runs['statuses']}")
    if rep.pool:
        p = rep.pool
        out.append(f"Locust pool: up to {p['max_users']} user greenlets, at most {p['max_in_scenario']} in a "
                   f"scenario at once, never fewer than {p['min_idle']} idle at a shape tick (0: the pool ran "
                   f"dry); arrivals not yet taken at a tick: at most {p['max_waiting_arrivals']}; Locust's "
                   f"busiest second: {_f(p.get('generator_peak_cpu_pct'))} % of a core")
    if rep.total.error_kinds:
        out.append(f"errors: {rep.total.error_kinds}")
    if rep.tickets_unstarted:
        out.append(f"arrivals never started (pool exhausted or run stopped): {rep.tickets_unstarted}")
    if rep.stopped_at_cap:
        out.append("stopped at the request cap: the profile did not run to its end")
    if rep.stopped_by_watchdog:
        out.append("stopped by the watchdog (the profile's end + drain + 10 s): the shape did not stop in time")
    if rep.endpoints:
        out.append("")
        out.append("Per endpoint, whole run:")
        out.append(_table(["endpoint", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"],
                          [[k, f"{v['requests']:,}", _f(v["p50_ms"]), _f(v["p95_ms"]), _f(v["p99_ms"]),
                            str(v["errors"])] for k, v in rep.endpoints.items()]))
    out.append(f"ensure: {'PASSED' if rep.ensure_ok else 'FAILED'}")
    return "\n".join(out)


def format_burst(rep: BurstReport) -> str:
    out = [(f"Read burst (ours: >= {rep.target['rps']:g} req/s on read endpoints over TLS, p99 < "
            f"{rep.target['p99_ms']:g} ms): {rep.users} keep-alive clients offered {rep.offered_rps:g} req/s "
            f"for {rep.duration_s:.1f} s")]
    out.append(_table(["endpoint", "requests", "p50 ms", "p99 ms"],
                      [[k, f"{v['requests']:,}", _f(v["p50_ms"], 1), _f(v["p99_ms"], 1)]
                       for k, v in rep.per_endpoint.items()]))
    out.append(f"achieved {_f(rep.rps, 1)} req/s ({_yes(rep.met_rate)}), p50 {_f(rep.p50_ms, 1)} ms, "
               f"p95 {_f(rep.p95_ms, 1)} ms, p99 {_f(rep.p99_ms, 1)} ms ({_yes(rep.met_p99)}), "
               f"errors {rep.errors}{' ' + str(rep.error_kinds) if rep.errors else ''}")
    out.append(f"read target: {'MET' if rep.met else 'NOT MET'}")
    return "\n".join(out)
