"""A bounded load generator for release drills: loopback only, fixed request count AND duration.

    result = run_load("https://127.0.0.1:18443", requests=2000, duration_s=60, concurrency=8,
                      paths=["/ready"], cafile=".state/local/tls/ca.crt")
    result.failed, result.p95_ms, result.share("green")

Every request is recorded (when, outcome, the ``X-Recon-Slot`` that answered), so a test can
ask what happened around a switch or a failover: failures, the share per slot, the longest
gap without a successful answer.

Traps:

- A *failure* is a transport error, a 5xx or a 429 (the request was not served). 4xx other
  than 429 are answers (the service worked and said no).
- By default each request opens its own connection (``keepalive=False``). With keep-alive, a
  request sent on an idle connection at the instant a reloading Nginx worker closes it is reset
  by the kernel: a race every HTTP client must retry, not a request Nginx dropped.
- The target must resolve to a loopback address: this is a drill tool, not a stress tool.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import httpx

MAX_REQUESTS = 100_000
MAX_DURATION_S = 600.0
MAX_CONCURRENCY = 64


class LoadError(ValueError):
    """The load generator was asked for something outside its bounds."""


@dataclass
class Sample:
    t: float
    """seconds since the start, when the request was sent"""
    latency_s: float
    status: int | None
    slot: str | None
    version: str | None
    error: str | None

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500 or self.status == 429


@dataclass
class LoadResult:
    url: str
    samples: list[Sample] = field(default_factory=list)
    duration_s: float = 0.0
    stopped_by: str = ""

    @property
    def requests(self) -> int:
        return len(self.samples)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.samples)

    def failures(self) -> Counter:
        return Counter(s.error or f"HTTP {s.status}" for s in self.samples if s.failed)

    def by_slot(self) -> Counter:
        return Counter(s.slot or "-" for s in self.samples if not s.failed)

    def share(self, slot: str) -> float:
        """Percent of the successful answers served by ``slot``."""
        ok = [s for s in self.samples if not s.failed]
        return 100.0 * sum(s.slot == slot for s in ok) / len(ok) if ok else 0.0

    def latency_ms(self, q: float) -> float:
        lat = sorted(s.latency_s for s in self.samples if not s.failed)
        if not lat:
            return float("nan")
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]

    @property
    def p95_ms(self) -> float:
        return self.latency_ms(0.95)

    def longest_gap_s(self, after: float = 0.0) -> float:
        """Longest time between two successful answers (by completion), from ``after`` on."""
        done = sorted(s.t + s.latency_s for s in self.samples if not s.failed and s.t >= after)
        return max((b - a for a, b in zip(done, done[1:])), default=0.0)

    def first_ok_after(self, t: float) -> float | None:
        """Completion time of the first successful request *sent* after ``t`` (seconds since start)."""
        ok = [s.t + s.latency_s for s in self.samples if not s.failed and s.t >= t]
        return min(ok) if ok else None

    def summary(self) -> dict:
        return {"url": self.url, "requests": self.requests, "failed": self.failed,
                "failures": dict(self.failures()), "by_slot": dict(self.by_slot()),
                "p50_ms": round(self.latency_ms(0.5), 1), "p95_ms": round(self.p95_ms, 1),
                "duration_s": round(self.duration_s, 2), "stopped_by": self.stopped_by}


def _require_loopback(url: str) -> None:
    host = urllib.parse.urlsplit(url).hostname
    if not host:
        raise LoadError(f"base URL {url!r} has no host; expected e.g. https://127.0.0.1:18443")
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise LoadError(f"cannot resolve {host!r}: {exc}") from exc
    bad = [a for a in addrs if not ipaddress.ip_address(a).is_loopback]
    if bad:
        raise LoadError(f"host {host!r} resolves to {sorted(bad)}; the load generator only targets "
                        "loopback (127.0.0.0/8, ::1)")


def run_load(base_url: str, *, requests: int, duration_s: float, concurrency: int = 8,
             paths: list[str] | tuple[str, ...] = ("/ready",), headers: dict[str, str] | None = None,
             cafile: str | None = None, rate_per_s: float | None = None, keepalive: bool = False,
             timeout_s: float = 10.0, stop: threading.Event | None = None,
             method: str = "GET", json_body: dict | None = None,
             on_response: Callable[[httpx.Response], None] | None = None) -> LoadResult:
    """Send at most ``requests`` requests within at most ``duration_s`` seconds, then return.

    ``rate_per_s`` paces the requests evenly (so a short load spans a switch); without it the
    ``concurrency`` threads send as fast as they are answered. ``stop`` ends the run early.
    ``on_response`` sees every answer (e.g. to keep the ids a write returned); it runs in the
    load threads and must be quick and thread-safe.
    """
    if not 1 <= requests <= MAX_REQUESTS:
        raise LoadError(f"requests={requests!r}; allowed 1..{MAX_REQUESTS}")
    if not 0 < duration_s <= MAX_DURATION_S:
        raise LoadError(f"duration_s={duration_s!r}; allowed (0, {MAX_DURATION_S:.0f}]")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise LoadError(f"concurrency={concurrency!r}; allowed 1..{MAX_CONCURRENCY}")
    if rate_per_s is not None and rate_per_s <= 0:
        raise LoadError(f"rate_per_s={rate_per_s!r}; allowed > 0 (or None: unpaced)")
    if not paths:
        raise LoadError("paths is empty; give at least one path, e.g. ['/ready']")
    _require_loopback(base_url)

    result = LoadResult(base_url)
    lock = threading.Lock()
    counter = iter(range(requests))
    t0 = time.monotonic()
    deadline = t0 + duration_s
    stop = stop or threading.Event()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1 if keepalive else 0)

    def next_index() -> int | None:
        with lock:
            return next(counter, None)

    def worker() -> None:
        with httpx.Client(base_url=base_url, verify=cafile or True, timeout=timeout_s, limits=limits,
                          headers=headers or {}) as client:
            while not stop.is_set():
                i = next_index()
                if i is None:
                    return
                if rate_per_s:
                    wait = t0 + i / rate_per_s - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                now = time.monotonic()
                if now >= deadline or stop.is_set():
                    return
                path = paths[i % len(paths)]
                try:
                    resp = client.request(method, path, json=json_body)
                    s = Sample(now - t0, time.monotonic() - now, resp.status_code,
                               resp.headers.get("x-recon-slot"), resp.headers.get("x-recon-version"), None)
                    if on_response is not None:
                        on_response(resp)
                except httpx.HTTPError as exc:
                    s = Sample(now - t0, time.monotonic() - now, None, None, None, type(exc).__name__)
                with lock:
                    result.samples.append(s)

    threads = [threading.Thread(target=worker, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration_s + timeout_s + 5)
    result.duration_s = time.monotonic() - t0
    result.stopped_by = ("stop event" if stop.is_set() else "request count" if result.requests >= requests
                         else "duration")
    result.samples.sort(key=lambda s: s.t)
    return result
