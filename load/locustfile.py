"""The Locust side of the load test. Run it through ``load/run.py`` (``make load``), which creates
the tokens and the fixture reconciliations and passes them in ``LOAD_CONFIG`` (a JSON file).

Two modes (``LOAD_CONFIG["mode"]``):

``profile``  The specification's Artillery phases (load/phases.yaml, time-scaled by
             ``scale``). Artillery's model, kept: every arrival is a *new virtual user* with
             its own connection (a TLS handshake), which runs one weighted scenario and leaves.
             A dispatcher greenlet hands out one arrival ticket at each time of
             ``Profile.arrival_times()``; :class:`ArrivalUser` greenlets (a pool the
             :class:`RunShape` keeps sized for the current phase) take a ticket and become that
             virtual user. Open model: a late server makes users pile up, not arrive slower; a
             pool that runs dry shows as start lag and a lower achieved arrival rate.
``burst``    Read endpoints only: ``users`` keep-alive clients paced at a constant total rate
             (the 1,000 req/s target), for a bounded time and number of requests.

Every request is recorded (send time, the virtual user's phase, endpoint, latency, status,
outcome) and written to ``LOAD_CONFIG["results"]`` when Locust stops; load/report.py turns
that into the per-phase report. Outcomes: ``ok``; ``conflict`` (a 409 on a review action, the
documented answer when another reviewer acted first); ``error`` (transport error or timeout,
any 5xx, 429, or a status the scenario does not expect). Nothing is retried.

Clients: each virtual user (or burst client) connects from its own loopback address
(127.77.x.y, bound before connect) and uses one of a pool of operator tokens, so that Nginx's
per-address limits and the service's per-token limit see a population of clients, as they
would in production, and are still enforced (a 429 counts as an error).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import resource
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402 (after the sys.path line: run as a script)
import gevent.ssl  # noqa: E402 (after the sys.path line: run as a script)
from gevent.queue import Queue  # noqa: E402 (after the sys.path line: run as a script)
from geventhttpclient.client import HTTPClient, HTTPClientPool  # noqa: E402 (after the sys.path line: run as a script)
from locust import LoadTestShape, User, constant, constant_throughput, events, task  # noqa: E402 (after the sys.path line: run as a script)
from locust.contrib.fasthttp import FastHttpSession  # noqa: E402 (after the sys.path line: run as a script)

from load.phases import PHASES_FILE, BurstSchedule, PoolSchedule, load_profile  # noqa: E402 (after the sys.path line: run as a script)

CONFIG: dict[str, Any] = (json.loads(Path(os.environ["LOAD_CONFIG"]).read_text())
                          if os.environ.get("LOAD_CONFIG") else {"mode": "profile", "scale": 1})
MODE = CONFIG.get("mode", "profile")
PROFILE = load_profile(CONFIG.get("phases_file", PHASES_FILE)).scaled(float(CONFIG.get("scale", 1)))
POOL = PoolSchedule(PROFILE, **CONFIG.get("pool", {}))
BURST = BurstSchedule(**CONFIG["burst"]) if MODE == "burst" else None
API = "/api/v1"
TIMEOUT_S = float(CONFIG.get("timeout_s", 10.0))  # Artillery's default http.timeout
THINK = tuple(CONFIG.get("think_s", (0.5, 1.5)))
MAX_REQUESTS = int(CONFIG.get("max_requests", 250_000))

# The profile's scenarios and their weights (share of arriving virtual users).
FLOW_WEIGHTS = {"browse": 35, "review": 25, "page": 15, "status": 15, "upload": 10}
# The burst's read endpoints and their weights; "whoami" (the bearer check alone) and
# "upstream-health" (Nginx to a backend's /health: TLS and proxying, no database) only on request,
# to see where the time goes.
READ_WEIGHTS = CONFIG.get("read_weights") or {"summary": 25, "matches": 20, "unmatched": 15, "discrepancies": 10,
                                              "list": 15, "run": 10, "detail": 5}


class FlowAbort(Exception):
    """A request of the scenario failed; the virtual user stops there (as Artillery's does)."""


class _State:
    def __init__(self) -> None:
        self.t0: float | None = None
        self.tickets: Queue = Queue()
        self.pending = 0
        self.in_scenario = 0
        self.waiting = 0
        self.dispatcher_done = False
        self.stop = False
        self.watchdog = False
        self.requests: list[list[Any]] = []
        self.vus: list[list[Any]] = []
        self.runs: list[list[Any]] = []
        self.created: list[int] = []
        self.reviews_skipped = 0
        self.timeline: list[list[Any]] = []  # per shape tick: t, pool asked, pool running, tickets not
        # taken, users in a scenario, greenlets waiting for a ticket, Locust's CPU s, the machine's busy CPU s
        fixtures = CONFIG.get("fixtures", [])
        pool = [(f["id"], m) for f in fixtures for m in f.get("suggested", [])]
        random.Random(7).shuffle(pool)
        self.suggested: deque[tuple[int, int]] = deque(pool)
        self.counter = itertools.count()

    def elapsed(self) -> float | None:
        return None if self.t0 is None else time.monotonic() - self.t0

    def now(self) -> float:
        return time.monotonic() - (self.t0 if self.t0 is not None else 0.0)


STATE = _State()


# -- HTTP clients ------------------------------------------------------------------------------
class BoundClientPool(HTTPClientPool):
    """geventhttpclient's per-host client pool, with every socket bound to ``source_ip`` before
    it connects (a distinct client address per virtual user, on loopback), and each new
    connection timed: ``timings["setup_ms"]`` (resolve, TCP connect, TLS handshake) and
    ``timings["tcp_tls_ms"]`` (TCP connect and TLS handshake only)."""

    def __init__(self, source_ip: str | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.source_ip = source_ip
        self.timings: dict[str, float] = {}

    def get_client(self, url):  # type: ignore[no-untyped-def]
        client: HTTPClient = super().get_client(url)
        pool = client._connection_pool
        if getattr(pool, "_load_wrapped", False):
            return client
        create_tcp, connect, create_socket = pool._create_tcp_socket, pool._connect_socket, pool._create_socket
        ip, timings = self.source_ip, self.timings

        def bound(family: int, socktype: int, proto: int):  # type: ignore[no-untyped-def]
            sock = create_tcp(family, socktype, proto)
            if ip:
                sock.bind((ip, 0))
            return sock

        def timed_connect(sock, address):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            out = connect(sock, address)
            timings["tcp_tls_ms"] = (time.perf_counter() - started) * 1000
            return out

        def timed_create():  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            out = create_socket()
            timings["setup_ms"] = (time.perf_counter() - started) * 1000
            return out

        pool._create_tcp_socket = bound  # type: ignore[method-assign]
        pool._connect_socket = timed_connect  # type: ignore[method-assign]
        pool._create_socket = timed_create  # type: ignore[method-assign]
        pool._load_wrapped = True  # type: ignore[attr-defined]
        return client


_SSL_CONTEXT: Any = None


def _ssl_context(**_kw: Any):  # type: ignore[no-untyped-def]
    """One client TLS context for every connection (as one browser has): building one per user
    (reading the CA file, setting it up) cost the load generator more CPU than the handshake.
    Every connection still makes its own full handshake (the stack's Nginx issues no tickets)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = gevent.ssl.create_default_context(cafile=CONFIG.get("cafile"))
    return _SSL_CONTEXT


def new_session(environment, index: int) -> tuple[FastHttpSession, str, BoundClientPool]:  # type: ignore[no-untyped-def]
    """A fresh HTTPS session (its own connection) for client number ``index``; its token and pool."""
    addresses = CONFIG.get("addresses") or [None]
    tokens = CONFIG.get("tokens") or [""]
    pool = BoundClientPool(addresses[index % len(addresses)], concurrency=1,
                           ssl_options={"ca_certs": CONFIG.get("cafile")}, ssl_context_factory=_ssl_context,
                           connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S)
    session = FastHttpSession(CONFIG.get("base_url", PROFILE.target), environment.events.request, None,
                              insecure=False, client_pool=pool, max_retries=0, max_redirects=0)
    return session, tokens[index % len(tokens)], pool


class Client:
    """One virtual user (or burst client): a session, a token, and the recording of requests."""

    def __init__(self, environment, index: int, phase: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.session, token, self.pool = new_session(environment, index)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.phase = phase
        self.rng = random.Random(index)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a broken connection
            self.session.client.close()

    def call(self, method: str, path: str, name: str, expect: tuple[int, ...] = (200,),
             conflict: tuple[int, ...] = (), **kw: Any) -> tuple[int, Any]:
        """One request; (status, parsed JSON or None). Raises FlowAbort on an error outcome."""
        headers = {**self.headers, **kw.pop("headers", {})}
        self.pool.timings.clear()
        t = STATE.now()
        started = time.perf_counter()
        status, body, error = 0, None, None
        url = path if path.startswith("/nginx/") else API + path
        with self.session.request(method, url, name=name, headers=headers, catch_response=True,
                                  **kw) as resp:
            status = int(getattr(resp, "status_code", 0) or 0)
            elapsed_ms = (time.perf_counter() - started) * 1000
            exc = getattr(resp, "error", None) or resp.request_meta.get("exception")
            if status in expect:
                outcome = "ok"
            elif status in conflict:
                outcome = "conflict"
            else:
                outcome = "error"
                if status == 0:
                    error = f"transport: {type(exc).__name__ if exc else 'no response'}"
                elif status == 429:
                    error = "HTTP 429"
                elif status >= 500:
                    error = f"HTTP {status}"
                else:
                    error = f"unexpected HTTP {status}"
            if outcome == "error":
                resp.failure(error)
            else:
                resp.success()
                if status != 204 and resp.content:
                    try:
                        body = json.loads(resp.content)
                    except ValueError:
                        body = None
        conn = self.pool.timings
        STATE.requests.append([round(t, 4), self.phase, name, round(elapsed_ms, 2), status, outcome, error,
                               round(conn["setup_ms"], 2) if "setup_ms" in conn else None,
                               round(conn["tcp_tls_ms"], 2) if "tcp_tls_ms" in conn else None])
        if len(STATE.requests) >= MAX_REQUESTS:
            STATE.stop = True
        if outcome == "error":
            raise FlowAbort(error)
        return status, body


def _multipart(side: str, filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"side\"\r\n\r\n{side}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


SAMPLES = {side: (Path(path).name, Path(path).read_bytes())
           for side, path in (CONFIG.get("samples") or {}).items()}


# -- the profile's scenarios -----------------------------------------------------------------------
def _think(c: Client) -> None:
    gevent.sleep(c.rng.uniform(*THINK))


def _fixture(c: Client) -> dict[str, Any]:
    return c.rng.choice(CONFIG["fixtures"])


def flow_browse(c: Client) -> None:
    """List, open one, its summary, then a page of each result view."""
    f = _fixture(c)
    c.call("GET", "/reconciliations?limit=20", "list")
    _think(c)
    c.call("GET", f"/reconciliations/{f['id']}", "detail")
    _think(c)
    c.call("GET", f"/reconciliations/{f['id']}/summary", "summary")
    for view in ("matches", "unmatched", "discrepancies"):
        _think(c)
        c.call("GET", f"/reconciliations/{f['id']}/{view}?limit=50", view)


def flow_review(c: Client) -> None:
    """Open the suggested matches at one, confirm it (3 in 5) or reject it, look at the summary."""
    c.call("GET", "/reconciliations?limit=20", "list")
    _think(c)
    if STATE.suggested:
        recon_id, match_id = STATE.suggested.popleft()
        after = match_id - 1
    else:  # every pre-assigned suggestion used: take what the page shows (another may act first)
        recon_id, match_id, after = _fixture(c)["id"], None, 0
    _, page = c.call("GET", f"/reconciliations/{recon_id}/matches?status=suggested&limit=20&after={after}",
                     "matches?status=suggested")
    items = (page or {}).get("items") or []
    target = next((m["id"] for m in items if m["id"] == match_id), None) or (items[0]["id"] if items else None)
    if target is None:
        STATE.reviews_skipped += 1
        return
    _think(c)
    action = "confirm" if c.rng.random() < 0.6 else "reject"
    c.call("POST", f"/matches/{target}/{action}", action, json={"note": "load test"}, conflict=(409,))
    _think(c)
    c.call("GET", f"/reconciliations/{recon_id}/summary", "summary")


def flow_page(c: Client) -> None:
    """Page through results: two pages of matches, unmatched per side, discrepancies."""
    f = _fixture(c)
    base = f"/reconciliations/{f['id']}"
    _, page = c.call("GET", f"{base}/matches?limit=50", "matches")
    _think(c)
    nxt = (page or {}).get("next_after")
    c.call("GET", f"{base}/matches?limit=50&after={nxt or 0}", "matches (next page)")
    for side in ("left", "right"):
        _think(c)
        c.call("GET", f"{base}/unmatched?side={side}&limit=50", "unmatched?side")
    _think(c)
    c.call("GET", f"{base}/discrepancies?limit=50", "discrepancies")


def flow_status(c: Client) -> None:
    """The list, one reconciliation, its latest run, its summary."""
    f = _fixture(c)
    c.call("GET", "/reconciliations?limit=20", "list")
    _think(c)
    c.call("GET", f"/reconciliations/{f['id']}", "detail")
    _think(c)
    c.call("GET", f"/runs/{f['run_id']}", "run")
    _think(c)
    c.call("GET", f"/reconciliations/{f['id']}/summary", "summary")


def flow_upload(c: Client, index: int) -> None:
    """A new reconciliation from the sample pair: create, upload both sides, run, wait for the
    run, confirm its suggested match, read the summary."""
    _, rec = c.call("POST", "/reconciliations", "create", expect=(201,),
                    json={"name": f"{CONFIG.get('name_prefix', 'load')}-vu-{index}"})
    recon_id = rec["id"]
    STATE.created.append(recon_id)
    for side in ("left", "right"):
        _think(c)
        filename, content = SAMPLES[side]
        body, ctype = _multipart(side, filename, content)
        c.call("POST", f"/reconciliations/{recon_id}/imports", "upload", expect=(201,), data=body,
               headers={"Content-Type": ctype})
    _think(c)
    queued = STATE.now()
    _, run = c.call("POST", f"/reconciliations/{recon_id}/runs", "run (start)", expect=(202,), json={})
    status = "queued"
    for _ in range(int(CONFIG.get("run_polls", 15))):
        gevent.sleep(1.0)
        _, run = c.call("GET", f"/runs/{run['id']}", "run (poll)")
        status = run.get("status", "?")
        if status not in ("queued", "running"):
            break
    done = STATE.now() - queued if status == "succeeded" else None
    STATE.runs.append([c.phase, None if done is None else round(done, 3), status])
    if status != "succeeded":
        return
    _, page = c.call("GET", f"/reconciliations/{recon_id}/matches?status=suggested&limit=20",
                     "matches?status=suggested")
    items = (page or {}).get("items") or []
    if items:
        _think(c)
        c.call("POST", f"/matches/{items[0]['id']}/confirm", "confirm", json={}, conflict=(409,))
    _think(c)
    c.call("GET", f"/reconciliations/{recon_id}/summary", "summary")


FLOWS: dict[str, Callable[..., None]] = {"browse": flow_browse, "review": flow_review, "page": flow_page,
                                         "status": flow_status, "upload": flow_upload}


def choose_flow(rng: random.Random) -> str:
    names = list(FLOW_WEIGHTS)
    return rng.choices(names, weights=[FLOW_WEIGHTS[n] for n in names])[0]


class ArrivalUser(User):
    """A greenlet of the pool: takes an arrival ticket, becomes that virtual user, leaves."""

    wait_time = constant(0)

    @task
    def arrive(self) -> None:
        STATE.waiting += 1
        try:  # blocks until a ticket (no polling: idle greenlets cost nothing); killed at the end
            index, scheduled, phase = STATE.tickets.get()
        finally:
            STATE.waiting -= 1
        STATE.pending -= 1
        STATE.in_scenario += 1
        start = STATE.now()
        c = Client(self.environment, index, phase)
        flow = choose_flow(c.rng)
        ok, cut = True, False
        try:
            if flow == "upload":
                flow_upload(c, index)
            else:
                FLOWS[flow](c)
        except FlowAbort:
            ok = False
        except gevent.GreenletExit:  # the shape stopped at the drain's end with this user inside
            ok, cut = False, True
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or an unexpected body: the user failed
            ok = False
            STATE.requests.append([round(STATE.now(), 4), phase, f"({flow} flow)", 0.0, 0, "error",
                                   f"scenario: {type(exc).__name__}: {exc}"[:200]])
        finally:
            c.close()
            STATE.in_scenario -= 1
            STATE.vus.append([index, phase, round(scheduled, 4), round(start, 4), round(STATE.now(), 4), flow, ok,
                              cut])


def dispatch(lead_s: float) -> None:
    """Hand out one ticket per arrival, at its time (Artillery's arrivals)."""
    gevent.sleep(lead_s)  # the first pool is spawned meanwhile
    STATE.t0 = time.monotonic()
    for index, (at, phase) in enumerate(PROFILE.arrival_times()):
        if STATE.stop:
            break
        delay = STATE.t0 + at - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        STATE.pending += 1
        STATE.tickets.put((index, at, phase))
    STATE.dispatcher_done = True


# -- the read burst ----------------------------------------------------------------------------
def read_once(c: Client) -> None:
    names = list(READ_WEIGHTS)
    what = c.rng.choices(names, weights=[READ_WEIGHTS[n] for n in names])[0]
    f = _fixture(c)
    base = f"/reconciliations/{f['id']}"
    path = {"summary": f"{base}/summary", "matches": f"{base}/matches?limit=50",
            "unmatched": f"{base}/unmatched?limit=50", "discrepancies": f"{base}/discrepancies?limit=50",
            "list": "/reconciliations?limit=20", "run": f"/runs/{f['run_id']}", "detail": base,
            "whoami": "/whoami", "upstream-health": "/nginx/upstream-health"}[what]
    try:
        c.call("GET", path, what)
    except FlowAbort:
        pass


class ReadUser(User):
    """A keep-alive client of the read burst, paced to its share of the target rate."""

    wait_time = constant_throughput(BURST.per_user_rate) if BURST else constant(0)

    def on_start(self) -> None:
        self.c = Client(self.environment, next(STATE.counter))
        if STATE.t0 is None:
            STATE.t0 = time.monotonic()

    def on_stop(self) -> None:
        self.c.close()

    @task
    def read(self) -> None:
        if not STATE.stop:
            read_once(self.c)


# -- the shape and the results -----------------------------------------------------------------
def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all CPUs), from /proc/stat (0 elsewhere)."""
    try:
        parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(parts) - parts[3] - parts[4]) / os.sysconf("SC_CLK_TCK")


class RunShape(LoadTestShape):
    """Profile: the pool :class:`PoolSchedule` asks for at the dispatcher's time. Burst: a fixed
    set of paced clients for the burst's duration. Both stop at the request cap."""

    asked = 0

    def tick(self):  # type: ignore[no-untyped-def]
        if STATE.stop:
            return None
        if MODE == "burst":
            assert BURST is not None
            res = BURST.tick(self.get_run_time())
            return None if res is None else (res[0], res[1], [ReadUser])
        t = STATE.elapsed()
        if t is None:
            return POOL.users_at(0.0), POOL.spawn_rate, [ArrivalUser]
        active = STATE.pending + STATE.in_scenario + (0 if STATE.dispatcher_done else 1)
        res = POOL.tick(t, active=active, current=self.asked)
        self.asked = res[0] if res else self.asked
        STATE.timeline.append([round(t, 2), res[0] if res else 0, self.runner.user_count if self.runner else 0,
                               STATE.pending, STATE.in_scenario, STATE.waiting, round(_cpu_seconds(), 2),
                               round(_machine_busy_seconds(), 2)])
        return None if res is None else (res[0], res[1], [ArrivalUser])


def checkpoint(every_s: float = 5.0) -> None:
    """Every few seconds, a small progress file (never the samples: serialising them would stall
    the event loop): what a run killed from outside leaves for the runner's cleanup and report."""
    path = CONFIG.get("results")
    while path:
        gevent.sleep(every_s)
        progress = {"elapsed_s": STATE.elapsed(), "requests": len(STATE.requests), "vus": len(STATE.vus),
                    "pending": STATE.pending, "in_scenario": STATE.in_scenario,
                    "dispatcher_done": STATE.dispatcher_done, "created": STATE.created,
                    "timeline": STATE.timeline[-10:]}
        Path(path + ".progress").write_text(json.dumps(progress))


def watchdog(environment, limit_s: float) -> None:  # type: ignore[no-untyped-def]
    """Quit after ``limit_s`` whatever the shape says (its worker can be stuck waiting on a spawn)."""
    gevent.sleep(limit_s)
    STATE.stop = STATE.watchdog = True
    logging.getLogger("load").warning("watchdog: quitting after %.0f s", limit_s)
    if environment.runner is not None:
        environment.runner.quit()


@events.test_start.add_listener
def _start(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    lead = float(CONFIG.get("lead_s", 1.0))
    if MODE == "profile":
        gevent.spawn(dispatch, lead)
        gevent.spawn(watchdog, environment, lead + POOL.end + 10)
    elif BURST is not None:
        gevent.spawn(watchdog, environment, BURST.duration_s + 10)
    gevent.spawn(checkpoint)


def write_results() -> None:
    path = CONFIG.get("results")
    if not path:
        return
    out = {"mode": MODE, "scale": PROFILE.scale, "requests": STATE.requests, "vus": STATE.vus,
           "runs": STATE.runs, "created": STATE.created, "timeline": STATE.timeline,
           "reviews_skipped": STATE.reviews_skipped,
           "tickets_unstarted": STATE.pending, "in_scenario": STATE.in_scenario,
           "dispatcher_done": STATE.dispatcher_done, "stopped_at_cap": len(STATE.requests) >= MAX_REQUESTS,
           "stopped_by_watchdog": STATE.watchdog,
           "elapsed_s": STATE.elapsed()}
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(path)


@events.test_stop.add_listener
def _stop(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    write_results()


@events.quitting.add_listener
def _quit(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    write_results()
