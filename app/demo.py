"""``python -m app demo``: upload the sample files, run a reconciliation, print its summary.

Talks to a running service over HTTP(S) like any client (``--base-url``), so it doubles as
a smoke test of a deployed stack. The token needs the operator role (or admin); it comes
from ``--token`` or ``$RECON_TOKEN``.

Trap: the sample files are uploaded into a *new* reconciliation each time, so re-running
the demo never trips the duplicate-upload check (409).
"""

from __future__ import annotations

import os
import ssl
import time
from importlib import resources
from typing import Any

import httpx

SAMPLES = (("left", "bank_statement.csv"), ("right", "ledger_export.csv"))


class DemoError(RuntimeError):
    """The demo could not complete; the message says which call failed and why."""


def _check(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        try:
            detail: Any = resp.json()
        except ValueError:
            detail = resp.text[:500]
        raise DemoError(f"{what} failed: HTTP {resp.status_code} from {resp.request.url}: {detail}")
    return resp.json() if resp.content else None


def run_demo(base_url: str, *, token: str | None = None, cacert: str | None = None, timeout: float = 120.0,
             out: Any = None) -> int:
    """Run the demo against ``base_url``; print to ``out`` (stdout). Returns the exit status."""
    import sys

    out = out or sys.stdout
    token = token or os.environ.get("RECON_TOKEN")
    if not token:
        raise DemoError("no API token: pass --token or set RECON_TOKEN "
                        "(create one with `python -m app token create --role operator --name demo`)")
    if not base_url.startswith(("http://", "https://")):
        raise DemoError(f"--base-url {base_url!r} must start with http:// or https://")
    verify: Any = True
    if cacert:
        if not os.path.exists(cacert):
            raise DemoError(f"--cacert {cacert!r} does not exist")
        try:
            verify = ssl.create_default_context(cafile=cacert)
        except (ssl.SSLError, OSError) as exc:
            raise DemoError(f"--cacert {cacert!r} is not a usable PEM CA bundle: {exc}") from exc
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, verify=verify, timeout=30) as client:
            return _demo(client, timeout, out)
    except httpx.HTTPError as exc:
        raise DemoError(f"cannot reach {base_url}: {exc}") from exc


def _demo(client: httpx.Client, timeout: float, out: Any) -> int:
    recon = _check(client.post("/api/v1/reconciliations", json={"name": f"demo {time.strftime('%Y-%m-%d %H:%M:%S')}"}),
                   "creating the reconciliation")
    rid = recon["id"]
    print(f"reconciliation {rid} created", file=out)
    for side, name in SAMPLES:
        data = resources.files("app.samples").joinpath(name).read_bytes()
        imp = _check(client.post(f"/api/v1/reconciliations/{rid}/imports", data={"side": side},
                                 files={"file": (name, data, "text/csv")}), f"uploading {name}")
        print(f"  {side:5} {name}: {imp['record_count']} records ({imp['format']})", file=out)
    run = _check(client.post(f"/api/v1/reconciliations/{rid}/runs", json={}), "starting the run")
    deadline = time.monotonic() + timeout
    while True:
        state = _check(client.get(f"/api/v1/runs/{run['id']}"), "polling the run")
        if state["status"] in ("succeeded", "failed"):
            break
        if time.monotonic() > deadline:
            raise DemoError(f"run {run['id']} still {state['status']} after {timeout:.0f}s "
                            f"(progress {state.get('progress')}); is a worker running?")
        time.sleep(0.2)
    if state["status"] == "failed":
        raise DemoError(f"run {run['id']} failed: {state.get('error')}")
    summary = _check(client.get(f"/api/v1/reconciliations/{rid}/summary"), "reading the summary")
    counts = summary["counts"]
    print(f"run {run['id']} succeeded in {state['summary'].get('seconds')} s; match rate "
          f"{summary['match_rate']:.1%}", file=out)
    for status in ("confirmed", "suggested", "unmatched"):
        print(f"  {status:10} left {counts.get(f'{status}_left', 0):4}   right {counts.get(f'{status}_right', 0):4}",
              file=out)
    matches = _check(client.get(f"/api/v1/reconciliations/{rid}/matches", params={"limit": 100}), "listing matches")
    for m in matches["items"]:
        lefts = ",".join(r["reference"] or r["description"] or str(r["id"]) for r in m["left"])
        rights = ",".join(r["reference"] or r["description"] or str(r["id"]) for r in m["right"])
        print(f"  {m['status']:9} {m['rule']:12} {lefts} <-> {rights}  delta {m['amount_delta_minor']} minor units",
              file=out)
    print(f"discrepancies: {summary['discrepancies'] or 'none'}", file=out)
    return 0
