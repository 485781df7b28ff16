"""nginx.conf: `nginx -t` for every layout, then a real nginx on free loopback ports.

The live tests put small HTTP servers on the blue and green slots' ports and check what an
operator relies on: /health over TLS, the HTTP->HTTPS redirect, security headers, the JSON
access log, rate limiting, and the canary split between the slots.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from infra.layout import ContainerLayout

NGINX = "nginx/nginx.conf"


def nginx_t(find_tool, run_cmd, conf: Path, log_dir: Path):
    # -e: nginx opens its default error log (/var/log/nginx) before reading the config;
    # point it at the test's directory so the check also runs as an ordinary user.
    return run_cmd([find_tool("nginx"), "-t", "-c", str(conf), "-e", str(log_dir / "nginx-startup.log")])


@pytest.mark.parametrize("overrides", [
    {},
    {"nginx": {"tls": False}},
    {"backend": {"replicas": 3, "canary_weight": 25,
                 "slots": {"blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}}},
    {"backend": {"active_slot": "green"}, "nginx": {"rate_limit": {"burst": 0}}},
], ids=["defaults", "no-tls", "canary", "green-active-no-burst"])
def test_nginx_t_local(overrides, render_local, find_tool, run_cmd):
    r = render_local(overrides=overrides)
    out = nginx_t(find_tool, run_cmd, r.path(NGINX), r.spec.state_path / "log")
    assert "test is successful" in out.stderr


class _ResolvableContainerLayout(ContainerLayout):
    """The container layout with every host name replaced by ``localhost``, and the scratch
    paths (pid, temp dirs) moved under the test's directory.

    Offline, the container host names (``backend-blue-1``) do not resolve and ``nginx -t``
    resolves upstream servers, so it would fail for a reason that says nothing about the
    config. Everything else (ports, listen addresses, TLS, locations) is the container
    rendering as staging and production get it.
    """

    scratch: Path

    def host_of(self, proc: str) -> str:
        return "localhost"

    def run(self, name: str) -> str:
        return str(self.scratch / name)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_nginx_t_container(stack, render_stack, tls_pair, tmp_path, find_tool, run_cmd):
    _ResolvableContainerLayout.scratch = tmp_path
    r = render_stack(stack, _ResolvableContainerLayout,
                     tls_cert=str(tls_pair[0]), tls_key=str(tls_pair[1]))
    nginx_t(find_tool, run_cmd, r.path(NGINX), tmp_path)
    # and the real (unresolvable) rendering names the containers on their standard ports
    real = render_stack(stack).text(NGINX)
    port = r.spec.backend.port
    for i in range(1, r.spec.backend.replicas + 1):
        assert f"server backend-blue-{i}:{port} " in real
        assert f"server backend-green-{i}:{port} " in real
    assert f"listen 0.0.0.0:{r.spec.nginx.https_port} ssl http2;" in real


def test_upstream_per_slot_and_split(render_local):
    r = render_local(overrides={"backend": {"replicas": 2, "active_slot": "green", "canary_weight": 20,
                                            "slots": {"blue": {"version": "2"}, "green": {"version": "1"}}}})
    text, ports = r.text(NGINX), r.spec.local_ports()
    for slot in ("blue", "green"):
        block = text.split(f"upstream backend_{slot} {{", 1)[1].split("}", 1)[0]
        assert [line.split()[1] for line in block.splitlines() if line.strip().startswith("server ")] == [
            f"127.0.0.1:{ports[f'backend-{slot}-{i}']}" for i in (1, 2)]
    split = text.split("$recon_pool {", 1)[1].split("}", 1)[0]
    assert "20% backend_blue;" in split and "* backend_green;" in split


# -- a live nginx -----------------------------------------------------------------------------
class _Slot(BaseHTTPRequestHandler):
    slot = "?"

    def do_GET(self) -> None:  # noqa: N802 - http.server's API
        body = json.dumps({"slot": self.slot, "path": self.path,
                           "forwarded_for": self.headers.get("X-Forwarded-For")}).encode()
        # as the service answers /ready while Redis fails over: on purpose, not a broken replica
        self.send_response(503 if self.path == "/ready" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Recon-Slot", self.slot)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def live_nginx(render_local, free_ports, find_tool, processes, poll
               ) -> Iterator[Callable[..., tuple]]:
    """``live_nginx(overrides)`` -> (spec, https base URL, http base URL, access log path)."""
    servers: list[ThreadingHTTPServer] = []

    def _start(overrides: dict) -> tuple:
        backend = free_ports(102)  # blue replica 1 on +1, green replica 1 on +101
        http, https, status = free_ports(1), free_ports(1), free_ports(1)
        r = render_local(overrides={
            **overrides, "backend": {"replicas": 1, "port": backend, **overrides.get("backend", {})},
            "nginx": {"http_port": http, "https_port": https, "status_port": status, **overrides.get("nginx", {})}})
        ports = r.spec.local_ports()
        for slot in ("blue", "green"):
            handler = type(f"Slot_{slot}", (_Slot,), {"slot": slot})
            for i in range(1, r.spec.backend.replicas + 1):
                srv = ThreadingHTTPServer(("127.0.0.1", ports[f"backend-{slot}-{i}"]), handler)
                threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
                servers.append(srv)
        log_dir = r.spec.state_path / "log"
        processes.start("nginx", [find_tool("nginx"), "-c", str(r.path(NGINX)), "-e",
                                  str(log_dir / "nginx-startup.log"), "-g", "daemon off;"], log_dir)

        def up() -> bool:
            processes.assert_running()
            return httpx.get(f"http://127.0.0.1:{http}/health", timeout=1).status_code == 200

        poll(up, 10, "nginx to answer /health")
        return (r.spec, f"https://127.0.0.1:{https}", f"http://127.0.0.1:{http}",
                Path(r.layout.log("nginx-access.log")))

    try:
        yield _start
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def test_live_tls_health_headers_redirect_and_json_log(live_nginx):
    spec, https, http, access_log = live_nginx({})
    with httpx.Client(verify=False, timeout=5) as c:
        health = c.get(f"{https}/health")
        assert health.status_code == 200 and health.json() == {"status": "ok", "service": "nginx"}
        for header in ("strict-transport-security", "x-content-type-options", "x-frame-options",
                       "content-security-policy", "referrer-policy", "x-request-id"):
            assert header in health.headers, header
        assert "server" not in health.headers or "nginx/" not in health.headers["server"]

        redirect = c.get(f"{http}/api/x?y=1", headers={"Host": "evil.example"})
        assert redirect.status_code == 301  # to the configured name, whatever Host the client sent
        assert redirect.headers["location"] == f"https://{spec.nginx.server_name}:{spec.nginx.https_port}/api/x?y=1"

        app = c.get(f"{https}/api/things", headers={"Accept-Encoding": "identity"})
        assert app.status_code == 200 and app.json()["slot"] == "blue" and app.json()["path"] == "/api/things"
        assert app.headers["x-request-id"]
        assert c.get(f"{https}/metrics").status_code == 404
        assert c.get(f"{https}/nginx/upstream-health").json()["slot"] == "blue"

    lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    proxied = [e for e in lines if e["uri"] == "/api/things"]
    assert len(proxied) == 1
    entry = proxied[0]
    assert entry["status"] == 200 and entry["method"] == "GET" and entry["slot"] == "blue"
    assert entry["upstream"] == f"127.0.0.1:{spec.local_ports()['backend-blue-1']}"
    assert entry["request_id"] == app.headers["x-request-id"]
    assert not [e for e in lines if e["uri"] == "/health"], "health checks are not logged"


def test_live_gzip(live_nginx):
    _, https, _, _ = live_nginx({})
    # /health is tiny (below gzip_min_length); the backend's JSON of a long path is not.
    r = httpx.get(f"{https}/api/{'x' * 2000}", verify=False, headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers.get("content-encoding") == "gzip"


def test_live_plain_http_serves_the_app_without_tls(live_nginx):
    _, _, http, _ = live_nginx({"nginx": {"tls": False}})
    r = httpx.get(f"{http}/api/x", timeout=5)
    assert r.status_code == 200 and r.json()["slot"] == "blue"
    assert "strict-transport-security" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"


def test_live_rate_limit_answers_429(live_nginx):
    _, https, _, _ = live_nginx({"nginx": {"rate_limit": {"requests_per_second": 1, "burst": 0}}})
    with httpx.Client(verify=False, timeout=5) as c:
        codes = [c.get(f"{https}/api/x").status_code for _ in range(5)]
    assert codes[0] == 200 and 429 in codes, codes


@pytest.mark.parametrize("active,weight", [("blue", 0), ("green", 0), ("blue", 30)],
                         ids=["blue-only", "green-only", "canary-30-to-green"])
def test_live_canary_split(active, weight, live_nginx):
    _, https, _, _ = live_nginx({
        "backend": {"active_slot": active, "canary_weight": weight,
                    "slots": {"blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}},
        "nginx": {"rate_limit": {"requests_per_second": 10000, "burst": 10000}}})
    n = 200
    with httpx.Client(verify=False, timeout=5) as c:
        seen = Counter(c.get(f"{https}/api/x").json()["slot"] for _ in range(n))
    if weight == 0:
        assert seen == {active: n}
    else:
        idle = "green" if active == "blue" else "blue"
        # binomial(200, 0.3): mean 60, sd 6.5; 30..90 is more than 4 sd either side
        assert 30 <= seen[idle] <= 90, seen
        assert seen[idle] + seen[active] == n


def test_live_503_from_the_service_never_ejects_a_replica(live_nginx):
    """/ready's 503 (Redis failing over) must pass through: counted as upstream failures they
    mark every replica down (max_fails) and Nginx answers "no live upstreams" 502s, writes too."""
    _, https, _, _ = live_nginx({"backend": {"replicas": 2},  # one server alone is never marked down
                                 "nginx": {"rate_limit": {"requests_per_second": 10000, "burst": 10000}}})
    with httpx.Client(verify=False, timeout=5) as c:
        ready = [c.get(f"{https}/ready").status_code for _ in range(10)]
        served = [c.get(f"{https}/api/x").status_code for _ in range(10)]
    assert ready == [503] * 10
    assert served == [200] * 10


@pytest.mark.parametrize("cipher,accepted", [
    ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256", True),
    ("ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA", False),   # CBC with SHA-1
    ("AES128-GCM-SHA256:AES256-GCM-SHA384", False),                      # no forward secrecy
    ("ECDHE-ECDSA-AES128-CCM:AES128-CCM", False),
    ("ECDHE-ECDSA-CAMELLIA128-SHA256:ECDHE-ARIA128-GCM-SHA256", False),
], ids=["gcm", "cbc-sha1", "rsa-kx", "ccm", "camellia-aria"])
def test_live_tls12_offers_only_mozilla_intermediate_suites(live_nginx, cipher, accepted):
    """A TLS 1.2 client offering only ``cipher`` gets a handshake exactly when Mozilla's
    intermediate profile allows it (the same check as sslyze's cipher scan, one suite family each)."""
    import socket
    import ssl
    _, https, _, _ = live_nginx({})
    port = int(https.rsplit(":", 1)[1])
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.set_ciphers(cipher)
    except ssl.SSLError:
        pytest.skip(f"this OpenSSL cannot offer {cipher}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                got = tls.cipher()[0]
        except ssl.SSLError:
            got = None
    assert (got is not None) == accepted, got


def test_live_ui_has_its_own_csp_and_the_api_keeps_its_own(live_nginx):
    """/ui/ pages send their own policy (scripts and styles from 'self'); the API's
    default-src 'none' must not be added on top, and the API keeps it."""
    _, https, _, _ = live_nginx({})
    with httpx.Client(verify=False, timeout=5) as c:
        ui = c.get(f"{https}/ui/reconciliations")
        api = c.get(f"{https}/api/things")
    assert "content-security-policy" not in ui.headers
    assert "strict-transport-security" in ui.headers and "x-request-id" in ui.headers
    assert "default-src 'none'" in api.headers["content-security-policy"]


def test_live_client_cannot_choose_its_forwarded_address(live_nginx):
    """The service's per-client throttles key on X-Forwarded-For: Nginx must send the address it
    saw, whatever the client claims."""
    _, https, _, _ = live_nginx({})
    with httpx.Client(verify=False, timeout=5) as c:
        got = c.get(f"{https}/api/x", headers={"X-Forwarded-For": "203.0.113.7"}).json()
    assert got["forwarded_for"] == "127.0.0.1"
