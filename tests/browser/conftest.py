"""Browser tests of the UI: Debian's chromium driven by Playwright, against the real service.

What runs (session-scoped, all on loopback):

    ThrowawayStack       PostgreSQL 15, Redis, Sentinel (testing/servers.py), migrated
    uvicorn over TLS     app.web.application:create_app on a free port, a certificate from a
                         throwaway CA (infra/local/tls.py, the code that makes the stack's)
    python -m app worker one job worker
    chromium             /usr/bin/chromium, headless, never downloaded

Every test marked ``browser`` (added here to everything under tests/browser). When chromium or
Playwright is missing the tests are skipped with the reason, except under ``CI=true``, where
they fail: CI must not go green without having run them.

Each page the tests visit is screenshotted into ``.artifacts/screenshots`` (``RECON_ARTIFACTS``
moves it) and checked with axe-core (vendored, served by the app so the CSP allows it): no
serious or critical violation. A Content-Security-Policy violation or a script error on any
page fails the test that caused it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("RECON_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("RECON_ARTIFACTS", ROOT / ".artifacts"))
SCREENSHOTS = ARTIFACTS / "screenshots"
SAMPLES = ROOT / "app" / "samples"
BLOCKING_IMPACTS = ("serious", "critical")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives Debian's chromium through Playwright (tests/browser); "
                            "deselect with -m 'not browser'; fails instead of skipping when CI=true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium chromium-driver)"
    pg_bin = Path(os.environ.get("RECON_PG_BIN", "/usr/lib/postgresql/15/bin"))
    if not (pg_bin / "initdb").exists():
        return f"PostgreSQL 15 binaries not found in {pg_bin}"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    return None


@pytest.fixture(scope="session")
def browser_ready() -> None:
    reason = _missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI=true: {reason}")
        pytest.skip(reason)


# -- the service -------------------------------------------------------------------------------

@dataclass
class Service:
    base: str
    cafile: Path
    dsn: str
    tokens: dict[str, str]
    logs: Path

    def api(self, role: str = "operator") -> httpx.Client:
        return httpx.Client(base_url=self.base, verify=str(self.cafile), timeout=30,
                            headers={"Authorization": f"Bearer {self.tokens[role]}"})


def _wait(url: str, cafile: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, verify=str(cafile), timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def service(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from app import auth
    from infra.local.tls import ensure_certificates
    from testing.servers import ThrowawayStack, free_port

    tmp = tmp_path_factory.mktemp("ui-browser")
    ensure_certificates(tmp / "tls", "localhost", "127.0.0.1")
    stack = ThrowawayStack(with_replica=False).start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        assert stack.pg is not None
        env = stack.env(PYTHONPATH=str(ROOT), RECON_JOB_POLL_SECONDS="0.2", RECON_LOG_LEVEL="WARNING",
                        RECON_RATE_LIMIT_PER_MINUTE="100000", RECON_AUTH_FAILURES_PER_MINUTE="1000")
        port = free_port()
        server_log, worker_log = tmp / "server.log", tmp / "worker.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.web.application:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--ssl-keyfile", str(tmp / "tls" / "server.key"), "--ssl-certfile",
             str(tmp / "tls" / "server.crt"), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env=env, stdout=open(server_log, "wb"), stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([sys.executable, "-m", "app", "worker", "--name", "ui-browser"], cwd=ROOT,
                                      env=env, stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT))
        base = f"https://127.0.0.1:{port}"
        _wait(f"{base}/ui/health", tmp / "tls" / "ca.crt", procs[0], server_log)
        tokens = {}
        with psycopg.connect(stack.pg.dsn()) as conn:
            for role in auth.ROLES:
                _, tokens[role] = auth.create_token(conn, name=f"browser {role}", role=role)
            conn.commit()
        yield Service(base, tmp / "tls" / "ca.crt", stack.pg.dsn(), tokens, tmp)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        stack.stop()


# -- the browser -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def chromium(browser_ready: None) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)  # a shared 2-core CI box: 5 s is too tight under load

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Visit:
    """A browser tab signed in (or not) on the service, with the checks every page gets."""

    page: Any
    service: Service
    problems: list[str] = field(default_factory=list)
    shots: list[str] = field(default_factory=list)

    def goto(self, path: str) -> Any:
        """Navigate; once more if chromium saw the machine's network change (another user's docker
        bridge coming up on a shared CI box aborts navigations with ERR_NETWORK_CHANGED)."""
        from playwright.sync_api import Error

        for attempt in range(3):
            try:
                return self.page.goto(self.service.base + path)
            except Error as exc:
                if attempt == 2 or not any(s in str(exc) for s in ("ERR_NETWORK_CHANGED", "chrome-error://")):
                    raise
        raise AssertionError("unreachable")

    def sign_in(self, role: str, *, check: bool = True) -> None:
        self.goto("/ui/signin")
        if check:
            self.check("signin")
        self.page.get_by_label("API token").fill(self.service.tokens[role])
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(re.compile(r"/ui/reconciliations"))

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(name)
        return path

    def axe(self) -> list[dict[str, Any]]:
        from app.ui.assets import AXE

        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.add_script_tag(url=f"/ui/static/{AXE}")
        # axe leaves empty style="" attributes behind (colour-contrast probing); htmx's settle step
        # would copy them onto swapped elements, which the CSP (rightly) refuses: remove them.
        return self.page.evaluate(
            """async () => {
                 const r = await axe.run(document, {resultTypes: ['violations']});
                 document.querySelectorAll('[style=""]').forEach(e => e.removeAttribute('style'));
                 return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                   nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}));
               }""")

    def check(self, name: str) -> None:
        """Screenshot the page as ``name`` and hold it to axe-core: no serious or critical violation."""
        self.page.wait_for_load_state("load")
        self.shot(name)
        violations = self.axe()
        (ARTIFACTS / "axe").mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "axe" / f"{name}.json").write_text(json.dumps(violations, indent=2))
        blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
        assert not blocking, f"axe-core on {name} ({self.page.url}): {json.dumps(blocking, indent=2)}"


@pytest.fixture()
def visit(chromium: Any, service: Service) -> Iterator[Visit]:
    context = chromium.new_context(ignore_https_errors=True, base_url=service.base, accept_downloads=True,
                                   viewport={"width": 1280, "height": 900})
    page = context.new_page()
    v = Visit(page, service)

    def on_console(msg: Any) -> None:
        text = msg.text
        if msg.type == "error" or "Content Security Policy" in text or "Content-Security-Policy" in text:
            # A 4xx/5xx page the test asked for is reported by chromium as a failed resource; not a problem.
            if "Failed to load resource" in text:
                return
            v.problems.append(f"console {msg.type} at {page.url} ({msg.location}): {text[:160]}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: v.problems.append(f"page error: {exc}"))
    try:
        yield v
    finally:
        context.close()
    assert not v.problems, "the browser reported problems:\n" + "\n".join(v.problems)


def upload_via_api(service: Service, name: str, left: bytes, right: bytes) -> int:
    """A reconciliation with both sides uploaded through the HTTP API (set-up for a page test)."""
    with service.api("operator") as api:
        recon = api.post("/api/v1/reconciliations", json={"name": name}).raise_for_status().json()["id"]
        for side, data in (("left", left), ("right", right)):
            api.post(f"/api/v1/reconciliations/{recon}/imports", data={"side": side},
                     files={"file": (f"{side}.csv", data, "text/csv")}).raise_for_status()
    return int(recon)


def run_via_api(service: Service, recon: int, timeout: float = 60) -> dict[str, Any]:
    with service.api("operator") as api:
        run = api.post(f"/api/v1/reconciliations/{recon}/runs", json={}).raise_for_status().json()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = api.get(f"/api/v1/runs/{run['id']}").raise_for_status().json()
            if state["status"] in ("succeeded", "failed"):
                return state
            time.sleep(0.2)
    raise AssertionError(f"run of reconciliation {recon} did not finish in {timeout}s")
