"""The chaos sequence (tests/recovery/chaos.py) on a throwaway stack, under steady writes:
every recovery task in the disaster-recovery runbook's order, the invariants after each, no
acknowledged write lost before the restore's target or outside the restore, no request that
still failed after its client's retries outside the restore window.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.recovery.chaos import SEQUENCE, Chaos, iso

pytestmark = pytest.mark.slow
RUNBOOK = Path(__file__).resolve().parents[2] / "runbooks" / "disaster-recovery.md"


@pytest.fixture(scope="module")
def chaos():
    c = Chaos()
    try:
        c.up()
        c.check("up")
        yield c
    finally:
        for w in getattr(c, "api", None), getattr(c, "db", None):
            if w is not None:
                w.stopped.set()
        print("\nchaos figures: " + (c.report() if hasattr(c, "api") else str(c.timings)))
        c.down()


def test_the_runbooks_main_path_is_the_sequence_this_test_runs():
    text = RUNBOOK.read_text()
    block = text.split("<!-- main path: tests/recovery/chaos.py SEQUENCE -->", 1)[1].split("```sh", 1)[1]
    block = block.split("```", 1)[0]
    steps = [re.sub(r"\s+#.*$", "", line).strip() for line in block.strip().splitlines()]
    steps = [re.sub(r"^fab ", "", s).replace(" --yes", "").replace(" T", "").strip() for s in steps if s]
    assert tuple(steps) == SEQUENCE


def test_chaos_sequence_keeps_every_invariant_and_every_acknowledged_write(chaos):
    api, db = chaos.start_writers()
    time.sleep(3)
    chaos.step("failover", "db.failover", "--yes")
    chaos.step("backup", "backup", "--full")
    time.sleep(2)
    target = time.time()  # the restore's target: every write acknowledged before it must survive
    time.sleep(2)
    before_target = {w.kind: w.acked_before(target) for w in (api, db)}
    for w in (api, db):
        w.pause()
    restore_started = time.time()
    chaos.step("restore", "restore", "--yes", "--target-time", iso(target))
    restore_ended = time.time()
    stored = chaos.stored()
    for kind, names in before_target.items():
        assert names and not names - stored, f"{kind}: acknowledged before the target and lost: {sorted(names - stored)[:5]}"
    for w in (api, db):
        w.paused.clear()
    chaos.step("rebuild-replica", "db.rebuild-replica", "--yes")
    chaos.step("failback", "db.failover", "--yes", "--to", "postgres-primary")
    chaos.step("backup-2", "backup", "--full")
    chaos.redis_master_loss()
    time.sleep(2)
    for w in (api, db):
        w.stopped.set()
    time.sleep(0.5)
    stored = chaos.stored()
    for w in (api, db):
        after = w.acked_between(restore_ended, time.time())
        assert after and not after - stored, f"{w.kind}: acknowledged after the restore and lost: {sorted(after - stored)[:5]}"
        outside = [f for f in w.failed if not restore_started <= f[1] <= restore_ended + 15]
        assert not outside, f"{w.kind}: requests that failed after retries, outside the restore: {outside[:3]}"
