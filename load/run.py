"""Run the specification's load profile (and our read burst) against a running local stack.

    python load/run.py                      # make load: the profile, durations / 11 (60 s)
    python load/run.py --scale 1            # make load-full: the specification's 660 s
    python load/run.py --burst              # then the read burst (>= 1,000 req/s, p99 < 100 ms)
    python load/run.py --no-profile --burst # the burst alone
    python load/run.py --json out.json      # the report as JSON as well

Exit status: 0 when every ``ensure`` of the specification holds, 1 when one is missed (the
report says which), 2 when the run could not happen (stack down, a setup request refused).
The Performance Metrics table and our read target are reported, not enforced.

Set up once per run, torn down at the end (``--keep`` keeps it):

1. an admin token through ``fab token.create`` (the service's own ``python -m app token
   create`` with the stack's environment), which creates ``--tokens`` operator tokens through
   ``POST /api/v1/tokens`` and, at the end, deletes what the run created and revokes every
   token of the run, itself last;
2. ``--fixtures`` reconciliations from generated bank/ledger pairs (app/datagen.py), uploaded
   and run to completion, sized so that every review action of the run finds a suggested match
   of its own (about 2 % of the lines are suggestions).

Why a pool of tokens and of client addresses: the service limits each token to
``RECON_RATE_LIMIT_PER_MINUTE`` (1,200 = 20 req/s) and Nginx each client address to
``nginx.rate_limit.requests_per_second`` (50/s, burst 100; uploads 5/s). The profile's peak is
about 270 req/s, which one operator with one address cannot send without being throttled,
by design. The run therefore models what the profile means, a population of users: 32 operator
tokens (about 8 req/s each at the peak, under their 20) and 200 loopback addresses
(127.77.x.y), with every limit left on. docs/load.md gives the settings a single-client run
would need instead.

Bounded: loopback targets only; at most ``max_requests`` requests; the Locust process is
killed if it outlives the profile plus its drain by a minute.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402 (after the sys.path line: run as a script)

from load import machine  # noqa: E402 (after the sys.path line: run as a script)
from load.phases import PoolSchedule, Profile, load_profile  # noqa: E402 (after the sys.path line: run as a script)
from load.report import burst_report, format_burst, format_profile, profile_report  # noqa: E402 (after the sys.path line: run as a script)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SAMPLES = {"left": ROOT / "app" / "samples" / "bank_statement.csv",
           "right": ROOT / "app" / "samples" / "ledger_export.csv"}
REVIEW_SHARE = 0.25      # the review scenario's weight in load/locustfile.py (25 of 100)
SUGGESTED_SHARE = 0.02   # suggestions per generated line, measured on app/datagen.py's data
ADDRESS_BASE = ipaddress.ip_address("127.77.0.1")


class SetupError(RuntimeError):
    """The run could not be set up or torn down (exit 2)."""


class LocustKilled(SetupError):
    """Locust outlived its bound; ``created``: the reconciliations its users had made."""

    def __init__(self, message: str, created: list[int]) -> None:
        super().__init__(message)
        self.created = created


def _addresses(n: int) -> list[str]:
    return [str(ADDRESS_BASE + i) for i in range(n)]


def _check_loopback(base_url: str) -> None:
    host = urllib.parse.urlsplit(base_url).hostname or ""
    for info in socket.getaddrinfo(host, None):
        if not ipaddress.ip_address(info[4][0]).is_loopback:
            raise SetupError(f"{base_url}: resolves to {info[4][0]}; this load generator targets loopback only")


class Api:
    """The setup's client (plain httpx, no gevent): 429 and 503 are waited out, nothing else is."""

    def __init__(self, base_url: str, cafile: str, token: str, source: str | None = None) -> None:
        transport = httpx.HTTPTransport(verify=cafile, local_address=source) if source else None
        self.client = httpx.Client(base_url=base_url + "/api/v1", verify=cafile, timeout=120,
                                   headers={"Authorization": f"Bearer {token}"}, transport=transport)

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kw: Any) -> Any:
        for _ in range(20):
            resp = self.client.request(method, path, **kw)
            if resp.status_code in (429, 503):  # throttled, or the database failing over: wait, retry
                time.sleep(min(float(resp.headers.get("retry-after", "1") or 1), 30))
                continue
            if resp.status_code not in expect:
                raise SetupError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}")
            return resp.json() if resp.content else None
        raise SetupError(f"{method} {path}: still HTTP {resp.status_code} after 20 tries")

    def close(self) -> None:
        self.client.close()


def create_admin_token(stack: str, name: str) -> str:
    fab = Path(sys.executable).with_name("fab")
    res = subprocess.run([str(fab), "token.create", "--role", "admin", "--name", name, "--stack", stack],
                         check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if res.returncode != 0 or not res.stdout.strip():
        raise SetupError(f"fab token.create exited {res.returncode}: {res.stderr.strip()[-400:]}")
    return res.stdout.strip().splitlines()[-1]


def fixture_plan(total_arrivals: int) -> tuple[int, int]:
    """(number of fixture reconciliations, lines per side) so every review finds a suggestion."""
    needed = math.ceil(total_arrivals * REVIEW_SHARE * 1.3)
    count = min(max(math.ceil(needed / 700), 4), 8)
    size = min(max(math.ceil(needed / (SUGGESTED_SHARE * count)), 2000), 50_000)
    return count, size


def make_fixture(api: Api, name: str, size: int, seed: int) -> dict[str, Any]:
    from app import datagen

    data = datagen.generate(size, seed=seed)
    rec = api.request("POST", "/reconciliations", (201,), json={"name": name})
    for side, records in (("left", data.left), ("right", data.right)):
        api.request("POST", f"/reconciliations/{rec['id']}/imports", (201,), data={"side": side},
                    files={"file": (f"{name}-{side}.csv", datagen.to_csv(records), "text/csv")})
    run = api.request("POST", f"/reconciliations/{rec['id']}/runs", (202,), json={})
    return {"id": rec["id"], "run_id": run["id"], "size": size}


def finish_fixture(api: Api, fixture: dict[str, Any], deadline: float) -> None:
    while True:
        run = api.request("GET", f"/runs/{fixture['run_id']}")
        if run["status"] == "succeeded":
            break
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            raise SetupError(f"fixture run {fixture['run_id']}: {run['status']} {run.get('error') or ''}")
        time.sleep(0.5)
    suggested, after = [], 0
    while True:
        page = api.request("GET", f"/reconciliations/{fixture['id']}/matches",
                           params={"status": "suggested", "limit": 1000, "after": after})
        suggested += [m["id"] for m in page["items"]]
        if not page["next_after"]:
            break
        after = page["next_after"]
    fixture["suggested"] = suggested


def run_locust(config: dict[str, Any], workdir: Path, timeout_s: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Run Locust headless with ``config``; (its results, where the CPU went meanwhile)."""
    mode = config["mode"]
    config = {**config, "results": str(workdir / f"results-{mode}.json")}
    cfg = workdir / f"config-{mode}.json"
    cfg.write_text(json.dumps(config))
    cfg.chmod(0o600)
    log = workdir / f"locust-{mode}.log"
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--host", config["base_url"],
           "--only-summary", "--loglevel", config.get("loglevel", "WARNING"), "--exit-code-on-error", "0"]
    stack = machine.stack_pids(Path(config["state_root"]))
    before = machine.snapshot(stack)
    # GEVENT_RESOLVER=block: the target is a loopback address, resolved at once in the event loop
    # rather than through gevent's thread pool (whose hand-offs, on a busy box, were counted in
    # the connection set-up). Locust runs at a higher priority (nice -5, where allowed) so that
    # its own wake-ups are not delayed behind the stack it loads: it uses ~0.15 of a core. (Not
    # root: nice says it cannot and runs Locust at normal priority.)
    env = {**os.environ, "LOAD_CONFIG": str(cfg), "GEVENT_RESOLVER": "block"}
    with open(log, "w") as out:
        proc = subprocess.Popen(["nice", "-n", "-5", *cmd], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            progress = Path(config["results"] + ".progress")
            last = json.loads(progress.read_text()) if progress.exists() else {}
            raise LocustKilled(f"locust ({mode}) still running after {timeout_s:.0f} s; killed. Log: {log}; last "
                               f"progress: { {k: v for k, v in last.items() if k != 'created'} }",
                               last.get("created", []))
    usage = before.until(machine.snapshot(stack))
    results_path = Path(config["results"])
    if not results_path.exists():
        tail = log.read_text()[-2000:]
        raise SetupError(f"locust ({mode}) exited {code} without results. Last lines of its log:\n{tail}")
    if config.get("raw_dir"):
        Path(config["raw_dir"]).mkdir(parents=True, exist_ok=True)
        (Path(config["raw_dir"]) / results_path.name).write_bytes(results_path.read_bytes())
    return json.loads(results_path.read_text()), usage


def cleanup(api: Api, recon_ids: list[int], token_ids: list[int], prefix: str, floor_id: int | None,
            base_url: str, cafile: str, admin: str) -> tuple[int, list[str]]:
    """Delete the run's reconciliations and revoke its tokens (not the admin's): (reconciliations
    deleted, problems). Problems are reported, not raised."""
    problems: list[str] = []
    ids = set(recon_ids)
    if floor_id is not None:  # anything of this run the results did not name (a killed Locust)
        before = None
        while True:
            page = api.request("GET", "/reconciliations", params={"limit": 500, **({"before": before} if before else {})})
            ids |= {r["id"] for r in page["items"] if r["name"].startswith(prefix) and r["id"] >= floor_id}
            if not page["next_before"] or page["next_before"] < floor_id:
                break
            before = page["next_before"]
    clients = [Api(base_url, cafile, admin, source=a) for a in _addresses(4)]

    def delete(job: tuple[int, int]) -> str | None:
        n, rid = job
        try:
            clients[n % len(clients)].request("DELETE", f"/reconciliations/{rid}", (204, 404))
        except (SetupError, httpx.HTTPError) as exc:
            return f"reconciliation {rid}: {exc}"
        return None

    with ThreadPoolExecutor(4) as pool:
        problems += [p for p in pool.map(delete, enumerate(sorted(ids))) if p]
    deleted = len(ids) - len(problems)
    for c in clients:
        c.close()
    for tid in token_ids:
        try:
            api.request("DELETE", f"/tokens/{tid}", (204, 404))
        except (SetupError, httpx.HTTPError) as exc:
            problems.append(f"token {tid}: {exc}")
    return deleted, problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=None, help="divide every phase's duration by this "
                    "(default: the phase file's ci_scale, 11: 60 s); 1 = the specification's 660 s")
    ap.add_argument("--no-profile", action="store_true", help="skip the specification's profile")
    ap.add_argument("--burst", action="store_true", help="run the read burst (after the profile)")
    ap.add_argument("--burst-rate", type=float, default=None,
                    help="offered req/s (default: 10 %% above the target, 1,100, so that a stack that meets it shows it)")
    ap.add_argument("--burst-seconds", type=float, default=15.0)
    ap.add_argument("--burst-users", type=int, default=64)
    ap.add_argument("--burst-endpoints", default=None,
                    help="comma-separated read endpoints instead of the default mix (summary, matches, unmatched, "
                         "discrepancies, list, run, detail; for diagnosis also whoami, upstream-health)")
    ap.add_argument("--stack", default="local")
    ap.add_argument("--base-url", default=None, help="default: the stack's Nginx over TLS")
    ap.add_argument("--cafile", default=None, help="default: the stack's CA (<state>/tls/ca.crt)")
    ap.add_argument("--tokens", type=int, default=32, help="operator tokens the virtual users share")
    ap.add_argument("--addresses", type=int, default=200, help="loopback client addresses (127.77.x.y)")
    ap.add_argument("--max-requests", type=int, default=250_000)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    ap.add_argument("--raw", type=Path, default=None, help="also write Locust's recorded samples here (a directory)")
    ap.add_argument("--keep", action="store_true", help="keep the fixtures and tokens (debugging)")
    ap.add_argument("--locust-loglevel", default="WARNING", help="Locust's log level (its log is kept on failure)")
    args = ap.parse_args(argv)

    from infra.spec import load_spec

    spec = load_spec(None if args.stack == "local" else args.stack)
    base_url = args.base_url or (f"https://{spec.host}:{spec.nginx.https_port}" if spec.nginx.tls
                                 else f"http://{spec.host}:{spec.nginx.http_port}")
    cafile = args.cafile or str(spec.state_path / "tls" / "ca.crt")
    base_profile = load_profile()
    scale = args.scale if args.scale is not None else base_profile.ci_scale
    profile: Profile = base_profile.scaled(scale)
    if not 1 <= args.tokens <= 500 or not 1 <= args.addresses <= 60_000:
        raise SystemExit("--tokens: 1..500, --addresses: 1..60000")
    endpoints = {"summary", "matches", "unmatched", "discrepancies", "list", "run", "detail", "whoami",
                 "upstream-health"}
    unknown = {e.strip() for e in (args.burst_endpoints or "").split(",") if e.strip()} - endpoints
    if unknown:
        raise SystemExit(f"--burst-endpoints: {sorted(unknown)} unknown; from {sorted(endpoints)}")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    prefix = f"load-{stamp}-{os.getpid()}"
    report: dict[str, Any] = {"when": dt.datetime.now().isoformat(timespec="seconds"), "base_url": base_url,
                              "scale": scale, "prefix": prefix}
    ensure_ok = True
    try:
        _check_loopback(base_url)
        try:
            httpx.get(base_url + "/health", verify=cafile, timeout=5).raise_for_status()
        except (httpx.HTTPError, OSError) as exc:
            raise SetupError(f"{base_url}/health: {exc}; is the stack up (`make up`)?") from exc
        workdir = Path(tempfile.mkdtemp(prefix="recon-load-"))
        workdir.chmod(0o700)
        t_setup = time.monotonic()
        admin = create_admin_token(args.stack, f"{prefix}-admin")
        api = Api(base_url, cafile, admin)
        admin_id = api.request("GET", "/whoami")["token_id"]
        token_ids: list[int] = []
        recon_ids: list[int] = []
        floor_id: int | None = None
        failed = True
        try:
            tokens = []
            for i in range(args.tokens):
                t = api.request("POST", "/tokens", (201,), json={"name": f"{prefix}-op-{i}", "role": "operator"})
                token_ids.append(t["id"])
                tokens.append(t["token"])
            count, size = fixture_plan(sum(profile.arrivals_per_phase()) if not args.no_profile else 0)
            fixtures = []
            for i in range(count):
                f = make_fixture(api, f"{prefix}-fixture-{i}", size, seed=100 + i)
                fixtures.append(f)
                recon_ids.append(f["id"])
                floor_id = f["id"] if floor_id is None else min(floor_id, f["id"])
            deadline = time.monotonic() + 300
            for f in fixtures:
                finish_fixture(api, f, deadline)
            report["setup"] = {"seconds": round(time.monotonic() - t_setup, 1), "tokens": args.tokens,
                               "addresses": args.addresses, "fixtures": count, "fixture_lines_per_side": size,
                               "suggested": sum(len(f["suggested"]) for f in fixtures)}
            print(f"setup: {args.tokens} operator tokens, {args.addresses} client addresses, {count} fixture "
                  f"reconciliations of {size:,} x {size:,} lines ({report['setup']['suggested']} suggested "
                  f"matches) in {report['setup']['seconds']} s", flush=True)
            common = {"base_url": base_url, "cafile": cafile, "tokens": tokens,
                      "addresses": _addresses(args.addresses), "fixtures": fixtures,
                      "samples": {k: str(v) for k, v in SAMPLES.items()}, "name_prefix": prefix,
                      "scale": scale, "max_requests": args.max_requests, "state_root": str(spec.state_path),
                      "loglevel": args.locust_loglevel, "raw_dir": str(args.raw) if args.raw else None}
            if not args.no_profile:
                pool = PoolSchedule(profile)
                results, usage = run_locust({**common, "mode": "profile"}, workdir,
                                            timeout_s=pool.end + 60)
                recon_ids += results.get("created", [])
                rep = profile_report(profile, results)
                ensure_ok = rep.ensure_ok
                report["profile"] = rep.to_json()
                report["profile_machine"] = usage
                print(format_profile(rep))
                print(machine.describe(usage), flush=True)
            if args.burst:
                rate = args.burst_rate or round(profile.read_burst.target_rps * 1.1)
                burst_cfg = {"rate": rate, "duration_s": args.burst_seconds, "users": args.burst_users,
                             "max_requests": args.max_requests}
                weights = ({e.strip(): 1 for e in args.burst_endpoints.split(",") if e.strip()}
                           if args.burst_endpoints else None)
                results, usage = run_locust({**common, "mode": "burst", "burst": burst_cfg, "read_weights": weights},
                                            workdir,
                                            timeout_s=args.burst_seconds + 60)
                brep = burst_report(profile.read_burst, results, rate, args.burst_users)
                report["burst"] = brep.to_json()
                report["burst_machine"] = usage
                print()
                print(format_burst(brep))
                print(machine.describe(usage), flush=True)
            failed = False
        except LocustKilled as exc:
            recon_ids += exc.created
            raise
        finally:
            if args.keep:
                print(f"kept: reconciliations {sorted(recon_ids)}, tokens {token_ids} and admin token {admin_id}; "
                      f"config in {workdir}")
            else:
                deleted, problems = cleanup(api, recon_ids, token_ids, prefix, floor_id, base_url, cafile, admin)
                try:
                    api.request("DELETE", f"/tokens/{admin_id}", (204,))
                except (SetupError, httpx.HTTPError) as exc:
                    problems.append(f"admin token {admin_id}: {exc}; revoke it: fab token.revoke {admin_id} --yes")
                api.close()
                for p in workdir.glob("config-*.json"):  # they hold the tokens (revoked now)
                    p.unlink()
                if not failed:
                    for p in workdir.iterdir():
                        p.unlink()
                    workdir.rmdir()
                print(f"cleanup: {deleted} reconciliations deleted, {len(token_ids) + 1} tokens revoked"
                      + (f"; problems: {problems}" if problems else "")
                      + (f"; Locust's log kept in {workdir}" if failed else ""))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0 if ensure_ok else 1


if __name__ == "__main__":
    sys.exit(main())
