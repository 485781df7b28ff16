"""Gates that guard a switch or a canary step (as Argo Rollouts' analysis and Flagger's checks).

    slot_health     every replica of a slot answers /health and /ready with 200 (before traffic)
    metrics         once traffic flows: error rate and p95 latency of that slot's version, from
                    Prometheus, against spec.release.max_error_rate / max_p95_seconds

A gate returns a :class:`GateResult` with a verdict:

- ``pass``;
- ``fail``: a threshold is broken or a replica is unhealthy: the caller reverts;
- ``inconclusive``: no request reached the slot in the window, so nothing can be judged: the
  caller keeps what it has but refuses to go further (no weight increase, no promotion).

Trap: the metrics gate counts requests the *slot's processes* served (``http_requests_total``
scraped per replica, labelled slot and version by the Prometheus config), not what Nginx saw;
probe paths (/health, /metrics) are left out so health checks cannot dilute the error rate.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass

from infra.local.processes import http_get
from infra.spec import StackSpec
from ops.errors import PrometheusError

PROBES = "/health|/metrics"


@dataclass
class GateResult:
    gate: str
    slot: str
    version: str
    verdict: str
    """pass, fail or inconclusive"""
    detail: str
    value: float | None = None
    threshold: float | None = None
    query: str | None = None
    at: float = 0.0

    def record(self) -> dict:
        return asdict(self)


class Prometheus:
    def __init__(self, base_url: str, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def scalar(self, expr: str) -> float | None:
        """The sum of an instant query's samples; None when the result is empty."""
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            code, body = http_get(url, timeout=self.timeout)
        except OSError as exc:
            raise PrometheusError(f"Prometheus at {self.base_url} unreachable: {exc}") from exc
        if code != 200:
            raise PrometheusError(f"Prometheus query failed (HTTP {code}): {expr}: {body[:300]!r}")
        doc = json.loads(body)
        result = doc.get("data", {}).get("result", [])
        values = [float(r["value"][1]) for r in result]
        values = [v for v in values if not math.isnan(v)]
        return sum(values) if values else None


def wait_scraped(prom: Prometheus, slot: str, version: str, replicas: int, timeout_s: float) -> bool:
    """Wait until Prometheus scrapes every replica of ``slot``/``version`` (after a config reload
    the new targets appear only at their first scrape). False when they did not within timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            up = prom.scalar(f'sum(up{{job="recon-backend",slot="{slot}",version="{version}"}})')
        except PrometheusError:
            up = None
        if up is not None and up >= replicas:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def slot_health(spec: StackSpec, procs: list[str], slot: str, version: str, timeout_s: float,
                get: Callable[[str, str], tuple[int, bytes]]) -> GateResult:
    """Wait up to ``timeout_s`` for every replica of ``slot`` (``procs``) to answer /health and
    /ready with 200; ``get(proc, path)`` asks one (directly on the local target, inside its
    container on docker)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, str] = {}
    while True:
        pending = []
        for proc in procs:
            try:
                h, body = get(proc, "/health")
                r, rbody = get(proc, "/ready") if h == 200 else (h, body)
            except OSError as exc:
                h = r = 0
                rbody = str(exc).encode()
            if h != 200 or r != 200:
                pending.append(proc)
                last[proc] = f"/health {h}, /ready {r}: {rbody[:160].decode(errors='replace')}"
        if not pending:
            return GateResult("slot-health", slot, version, "pass",
                              f"{len(procs)} replica(s) answer /health and /ready with 200", at=time.time())
        if time.monotonic() >= deadline:
            return GateResult("slot-health", slot, version, "fail",
                              f"not healthy within {timeout_s:.0f}s: " +
                              "; ".join(f"{p}: {last[p]}" for p in pending), at=time.time())
        time.sleep(0.25)


def _selector(slot: str, version: str, extra: str = "") -> str:
    return (f'job="recon-backend",slot="{slot}",version="{version}",path!~"{PROBES}"'
            + (f",{extra}" if extra else ""))


def metrics(spec: StackSpec, prom: Prometheus, slot: str, version: str,
            window_s: int | None = None) -> list[GateResult]:
    """Error rate and p95 of ``slot``/``version`` over the last ``window_s`` (spec default)."""
    r = spec.release
    w = f"{window_s or r.analysis_window_s}s"
    now = time.time()
    total_q = f"sum(increase(http_requests_total{{{_selector(slot, version)}}}[{w}]))"
    err_sel = _selector(slot, version, 'status=~"5.."')
    err_q = f"sum(increase(http_requests_total{{{err_sel}}}[{w}]))"
    p95_q = (f"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
             f"{{{_selector(slot, version)}}}[{w}])))")
    try:
        total = prom.scalar(total_q)
        errors = prom.scalar(err_q) or 0.0
        p95 = prom.scalar(p95_q)
    except PrometheusError as exc:
        return [GateResult("metrics", slot, version, "fail", f"cannot judge: {exc}", at=now)]
    if not total:
        return [GateResult("error-rate", slot, version, "inconclusive",
                           f"no request reached slot {slot} ({version}) in the last {w}: nothing to judge",
                           query=total_q, at=now)]
    rate = errors / total
    out = [GateResult("error-rate", slot, version, "pass" if rate <= r.max_error_rate else "fail",
                      f"{rate:.2%} of ~{total:.0f} requests failed (5xx) in the last {w}; "
                      f"allowed {r.max_error_rate:.2%} (release.max_error_rate)",
                      round(rate, 4), r.max_error_rate, err_q + " / " + total_q, now)]
    if p95 is None:
        out.append(GateResult("p95-latency", slot, version, "inconclusive", f"no latency samples in {w}",
                              query=p95_q, at=now))
    else:
        out.append(GateResult("p95-latency", slot, version, "pass" if p95 <= r.max_p95_seconds else "fail",
                              f"p95 {p95 * 1000:.0f} ms over the last {w}; allowed "
                              f"{r.max_p95_seconds * 1000:.0f} ms (release.max_p95_seconds)",
                              round(p95, 4), r.max_p95_seconds, p95_q, now))
    return out


def verdict(results: list[GateResult]) -> str:
    """fail if any failed, else inconclusive if any was, else pass."""
    verdicts = {g.verdict for g in results}
    return "fail" if "fail" in verdicts else "inconclusive" if "inconclusive" in verdicts else "pass"
