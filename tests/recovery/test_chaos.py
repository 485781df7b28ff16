"""The chaos sequence (tests/recovery/chaos.py) on a throwaway stack, under steady writes:
every recovery task in the disaster-recovery runbook's order, the invariants after each, no
acknowledged write lost before the restore's target or outside the restore, no request that
still failed after its client's retries outside the restore window.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.recovery.chaos import SEQUENCE, Chaos, run_sequence

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
    out = run_sequence(chaos)  # each step asserts every invariant (Chaos.check)
    assert all(out.acked.values()), out.acked
    assert out.lost_before_target == {"api": [], "db": []}, "acknowledged before the restore target, then lost"
    assert out.lost_after_restore == {"api": [], "db": []}, "acknowledged after the restore, then lost"
    assert out.failed_outside_restore == {"api": [], "db": []}, "failed after retries, outside the restore"
