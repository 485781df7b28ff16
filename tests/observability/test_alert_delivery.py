"""Alerts reach a receiver: a real fault on a throwaway stack, a real webhook on loopback.

The stack (ports +4000, state in .state/alert-drill) is started with
``alertmanager.webhook_url`` pointing at a small HTTP server of this test. One backend is
stopped; Prometheus sees it down, the BackendDown rule fires after its ``for:`` (1m), and
Alertmanager posts it to the webhook. The delivery must arrive within ``for:`` + 30 s of the
fault (scrape and evaluation interval 5 s, group_wait 10 s by default).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.recovery.chaos import Chaos, fab
from testing.servers import free_port

pytestmark = pytest.mark.slow
RULE_FOR_S = 60  # BackendDown's for: (templates/prometheus/recon.rules.yml.j2)


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[float, dict]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((time.time(), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver():
    port = free_port()
    handler = type("Receiver", (_Receiver,), {"received": []})
    srv = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/alerts", handler
    srv.shutdown()
    srv.server_close()


def test_backend_down_reaches_the_webhook_within_for_plus_30s(receiver):
    url, handler = receiver
    c = Chaos("alert-drill")
    c.env = {**c.env, **{k: str(int(v) + 1000) for k, v in c.env.items() if k.endswith("_PORT")
                         and k.startswith("RECON_")}, "RECON_ALERTMANAGER__WEBHOOK_URL": url}
    try:
        c.up()
        t = c.target()
        fault = time.time()
        t.supervisor.stop("backend-blue-2")
        deadline = fault + RULE_FOR_S + 30
        firing = []
        while time.time() < deadline and not firing:
            firing = [(at, a) for at, body in handler.received for a in body["alerts"]
                      if a["labels"]["alertname"] == "BackendDown" and a["status"] == "firing"]
            time.sleep(0.5)
        assert firing, (f"no BackendDown at the webhook within {RULE_FOR_S + 30}s of the fault; received: "
                        f"{[a['labels'].get('alertname') for _, b in handler.received for a in b['alerts']]}")
        at, alert = firing[0]
        assert alert["labels"]["severity"] == "critical" and alert["labels"]["stack"] == c.spec.name
        print(f"\nalert delivery: BackendDown at the webhook {at - fault:.1f}s after the fault "
              f"(for: {RULE_FOR_S}s, target {RULE_FOR_S + 30}s)")
    finally:
        fab(c.env, "down", "--purge", "--yes", check=False)
        shutil.rmtree(c.state, ignore_errors=True)
