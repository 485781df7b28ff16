"""The chaos sequence's timings (tests/recovery/chaos.py): every recovery task of the
disaster-recovery runbook's main path, on a throwaway local stack under steady writes.

    python benchmarks/bench_chaos.py

Prints each step's duration (the task, end to end, including its own invariant checks), the
time Sentinel took to promote a Redis replica and the time until `fab status` was green again,
the writes acknowledged, and the ones lost or failed (targets: 0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.recovery.chaos import Chaos, run_sequence  # noqa: E402

TARGETS = {"failover_s": 10, "restore_s": 90, "rebuild-replica_s": 30, "redis_promoted_s": 10}


def main() -> int:
    c = Chaos("bench-chaos")
    try:
        c.up()
        out = run_sequence(c)
    finally:
        c.down()
    print(f"{'step':24} {'seconds':>8}  target")
    for k, v in c.timings.items():
        print(f"{k:24} {v:8.2f}  {('<= ' + str(TARGETS[k])) if k in TARGETS else ''}")
    lost = sum(len(v) for v in out.lost_before_target.values()) + sum(len(v) for v in out.lost_after_restore.values())
    failed = sum(len(v) for v in out.failed_outside_restore.values())
    print(f"writes acknowledged {json.dumps(out.acked)}; lost {lost} (target 0); "
          f"failed after retries outside the restore {failed} (target 0)")
    return 0 if lost == 0 and failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
