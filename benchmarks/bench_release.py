"""Release and failover figures on a throwaway local stack, each measured under load through Nginx.

    python benchmarks/bench_release.py              # its own stack, ports shifted by 3000, purged after
    python benchmarks/bench_release.py --offset 4000 --keep

Prints, beside the issue's targets:

    switch + rollback under load     failed requests (target 0); seconds from `fab rollback` to the
                                     last answer from the rolled-back slot (target <= 5 s)
    canary at 20 %                   measured share over 2,000 requests (target 20 +- 5)
    failing canary                   reverted automatically? the gate's value vs threshold
    Redis master killed              seconds until /ready answers again (target down-after + 5 s);
                                     acknowledged jobs found and finished (target: all)
    PostgreSQL failover              longest write gap (target <= 10 s); acknowledged rows on the
                                     new primary (target: all)

The drills are the ones tests/release/test_drills.py asserts (tests/release/scenarios.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.release import scenarios  # noqa: E402


def line(name: str, value: str, target: str, ok: bool) -> None:
    print(f"  {name:44} {value:>22}   target {target:22} {'ok' if ok else 'MISSED'}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offset", type=int, default=3000, help="port offset of the throwaway stack (default 3000)")
    ap.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="recon-bench-release-"))
    root.chmod(0o755)
    stack = scenarios.ThrowawayStack(root / "state", args.offset)
    missed = 0
    t0 = time.monotonic()
    try:
        print(f"starting a throwaway stack (ports +{args.offset}) ...", flush=True)
        stack.up()
        stack.fab("deploy", "--version", "0.2.0", check=True)

        m = scenarios.switch_and_rollback_under_load(stack)
        print(f"switch + rollback under load ({m['requests']} requests, p95 {m['p95_ms']} ms):")
        ok = m["failed"] == 0 and m["switch_rc"] == 0 and m["rollback_rc"] == 0
        line("failed requests", str(m["failed"]), "0", ok)
        ok2 = (m["rollback_task_traffic_back_s"] or 99) <= 5
        line("rollback: task start to traffic back", f"{m['rollback_task_traffic_back_s']:.2f} s", "<= 5 s", ok2)
        line("rollback: launch to last answer of old slot", f"{m['rollback_traffic_back_s']:.2f} s",
             "(incl. process start)", True)
        line("rollback command wall time", f"{m['rollback_command_s']:.2f} s", "(informative)", True)
        missed += (not ok) + (not ok2)

        c = scenarios.canary_share(stack, 20)
        ok = c["canary_rc"] == 0 and c["failed"] == 0 and abs(c["share"] - 20) <= 5
        print(f"canary at 20% ({c['requests']} requests):")
        line(f"share served by {c['slot']}", f"{c['share']:.1f} %", "20 +- 5 points", ok)
        missed += not ok
        stack.fab("rollback", check=True)

        f = scenarios.failing_canary(stack)
        gate = next((g for g in f["record"]["notes"]["gates"] if g["verdict"] == "fail"), None)
        ok = f["canary_rc"] != 0 and f["state"]["canary_weight"] == 0 and gate is not None
        print("failing canary (RECON_FAULT_RATE=0.5):")
        line("reverted automatically", "yes" if ok else "no", "yes", ok)
        if not ok:
            print(f["canary_err"][-1500:])
        if gate:
            line(f"gate {gate['gate']}", f"{gate['value']:.2%} > {gate['threshold']:.2%}", "decision in run record", True)
        missed += not ok

        r = scenarios.redis_master_killed(stack)
        print(f"Redis master killed ({r['killed']}, down-after {r['down_after_s']:.0f} s):")
        ok = r["answers_again_s"] <= r["down_after_s"] + 5
        line("service answers again after", f"{r['answers_again_s']:.2f} s", f"<= {r['down_after_s'] + 5:.0f} s", ok)
        ok2 = r["jobs_succeeded"] == r["jobs_acknowledged"] > 0
        line("acknowledged jobs finished", f"{r['jobs_succeeded']}/{r['jobs_acknowledged']}", "all", ok2)
        missed += (not ok) + (not ok2)

        p = scenarios.postgres_failover(stack)
        print("PostgreSQL failover (fab db.failover --yes, writes through the API):")
        ok = p["failover_rc"] == 0 and p["write_gap_s"] <= 10
        line("write gap", f"{p['write_gap_s']:.2f} s", "<= 10 s", ok)
        ok2 = p["acknowledged_rows_on_new_primary"] == p["writes_acknowledged"]
        line("acknowledged rows on the new primary",
             f"{p['acknowledged_rows_on_new_primary']}/{p['writes_acknowledged']}", "all", ok2)
        line("failover task duration", f"{p['record']['duration_s']:.2f} s", "(informative)", True)
        missed += (not ok) + (not ok2)
    finally:
        if not args.keep:
            stack.down()
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'all targets met' if not missed else f'{missed} target(s) missed'} in {time.monotonic() - t0:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
