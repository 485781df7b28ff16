"""The load profile (load/): the phase file holds the specification's numbers, its arrival schedule
means what Artillery's phases mean, the time-scaled shape follows it, and the report judges as
the specification's ensure block says. No stack, no network: the Locust shape is checked in a
subprocess (importing Locust monkey-patches the interpreter with gevent)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest

from load.phases import BurstSchedule, PoolSchedule, ProfileError, load_profile, parse_profile
from load.report import burst_report, percentile, profile_report

ROOT = Path(__file__).resolve().parents[2]

# The specification, "Performance Testing": its Artillery config and Performance Metrics table.
SPEC_PHASES = [("Warm up", 60, 1, None), ("Ramp up load", 120, 5, 20), ("Sustained load", 300, 20, None),
               ("Peak load", 180, 50, None)]
SPEC_ENSURE = (2000, 5000, 1)
SPEC_METRICS = {"Response Time (p95)": ("<", 2000, 5000), "Response Time (p99)": ("<", 5000, 10000),
                "Error Rate": ("<", 1, 5), "Throughput": (">", 100, 50), "Availability": (">", 99.9, 99)}


@pytest.fixture(scope="module")
def profile():
    return load_profile()


def test_the_phase_file_is_the_specifications_profile(profile):
    assert [(p.name, p.duration, p.arrival_rate, p.ramp_to) for p in profile.phases] == SPEC_PHASES
    assert (profile.ensure.p95_ms, profile.ensure.p99_ms, profile.ensure.max_error_rate_pct) == SPEC_ENSURE
    assert {m.metric: (m.op, m.target, m.critical) for m in profile.metrics} == SPEC_METRICS
    assert profile.duration == 660
    assert (profile.read_burst.target_rps, profile.read_burst.p99_ms) == (1000, 100)


def test_the_phase_file_keeps_artillerys_own_keys(profile):
    phases = profile.source["config"]["phases"]
    assert phases[1] == {"duration": 120, "arrivalRate": 5, "rampTo": 20, "name": "Ramp up load"}
    assert profile.source["config"]["ensure"] == {"p95": 2000, "p99": 5000, "maxErrorRate": 1}


def test_arrivals_are_new_users_per_second_as_artillery_counts_them(profile):
    assert profile.arrivals_per_phase() == [60, 1500, 6000, 9000]  # duration x mean rate
    times = profile.arrival_times()
    assert len(times) == 16_560
    assert [t for t, _ in times] == sorted(t for t, _ in times)
    for t, i in times:
        assert profile.phases[i].start <= t < profile.phases[i].end
    warm = [t for t, i in times if i == 0]
    assert warm[:3] == [0.0, 1.0, 2.0]  # 1/s: one a second
    peak = [t for t, i in times if i == 3]
    assert peak[0] == 480 and peak[1] == pytest.approx(480.02)  # 50/s


def test_the_ramp_rises_linearly_from_5_to_20(profile):
    ramp = [t for t, i in profile.arrival_times() if i == 1]
    start = profile.phases[1].start
    assert ramp[0] == start
    assert 1 / (ramp[1] - ramp[0]) == pytest.approx(5, rel=0.02)
    assert 1 / (ramp[-1] - ramp[-2]) == pytest.approx(20, rel=0.02)
    first_half = sum(1 for t in ramp if t < start + 60)
    assert first_half == pytest.approx(60 * (5 + 12.5) / 2, abs=1)  # the integral of the rate
    assert profile.rate_at(start + 60) == pytest.approx(12.5)


def test_the_ci_profile_is_the_same_shape_in_60_seconds(profile):
    ci = profile.scaled(profile.ci_scale)
    assert profile.ci_scale == 11
    assert ci.duration == pytest.approx(60)
    assert [p.duration for p in ci.phases] == pytest.approx([60 / 11, 120 / 11, 300 / 11, 180 / 11])
    assert [(p.arrival_rate, p.ramp_to) for p in ci.phases] == [(1, None), (5, 20), (20, None), (50, None)]
    assert [p.start for p in ci.phases] == pytest.approx([0, 60 / 11, 180 / 11, 480 / 11])
    expected = [math.ceil(n / 11) for n in (60, 1500, 6000, 9000)]
    assert ci.arrivals_per_phase() == expected == [6, 137, 546, 819]
    assert ci.peak_rate == profile.peak_rate == 50
    assert profile.scaled(1) == profile and ci.scale == 11


def test_the_pool_follows_the_phases_and_never_shrinks(profile):
    ci = profile.scaled(11)
    pool = PoolSchedule(ci)
    times = [i / 10 for i in range(600)]
    users = [pool.users_at(t) for t in times]
    assert users == sorted(users)  # grown ahead, never stopped mid-scenario
    assert pool.users_at(0) == 12  # 1/s x 12 s a user may stay
    assert pool.users_at(ci.phases[2].start + 1) == 240  # 20/s
    assert pool.users_at(ci.phases[3].start - pool.lead_s) == 600  # ready for 50/s before it starts
    assert pool.users_at(ci.phases[3].start - pool.lead_s - 0.1) == 240
    ramp = ci.phases[1]
    mid = ramp.start + ramp.duration / 2 - pool.lead_s
    assert pool.users_at(mid) == math.ceil(12.5 * 12)
    for t in times:
        assert pool.tick(t) == (pool.users_at(t), pool.spawn_rate)


def test_the_pool_grows_with_users_that_stay_longer_up_to_its_cap(profile):
    ci = profile.scaled(11)
    pool = PoolSchedule(ci)
    peak = ci.phases[3].start + 1
    assert pool.headroom(peak) == 4 + 200  # 4 s of arrivals at 50/s
    assert pool.tick(peak, active=590) == (590 + 204, pool.spawn_rate)  # a slow service: users pile up
    assert pool.tick(peak, active=100, current=900) == (900, pool.spawn_rate)  # never shrinks
    assert pool.tick(peak, active=5000) == (pool.max_users, pool.spawn_rate)  # bounded
    assert pool.tick(ci.duration + 1, active=3, current=900) == (900, pool.spawn_rate)  # draining


def test_the_shape_drains_then_stops(profile):
    pool = PoolSchedule(profile.scaled(11))
    end = pool.profile.duration
    assert pool.tick(end + 1, active=3) == (600, pool.spawn_rate)  # users still in a scenario
    assert pool.tick(end + 1, active=0) is None
    assert pool.tick(pool.end, active=3) is None  # bounded: the drain ends
    assert PoolSchedule(profile).end == 660 + pool.drain_s


def test_the_full_profile_runs_660_seconds(profile):
    pool = PoolSchedule(profile)
    assert pool.tick(659.9) == (600, pool.spawn_rate)
    assert pool.tick(660, active=0) is None


def test_the_read_burst_paces_its_clients():
    burst = BurstSchedule(rate=1000, duration_s=15, users=64)
    assert burst.per_user_rate == pytest.approx(15.625)
    assert burst.tick(14.9) == (64, burst.spawn_rate)
    assert burst.tick(15) is None


@pytest.mark.parametrize("phase,message", [
    ({"duration": 60, "arrivalCount": 10}, "arrivalCount"),
    ({"duration": -1, "arrivalRate": 1}, "config.phases[0].duration"),
    ({"duration": 60, "arrivalRate": "fast"}, "config.phases[0].arrivalRate"),
    ({"duration": 60, "arrivalRate": 0}, "sends nobody"),
])
def test_a_phase_this_runner_does_not_implement_is_refused_by_name(phase, message):
    doc = {"config": {"phases": [phase], "ensure": {"p95": 1, "p99": 1, "maxErrorRate": 1}},
           "read_burst": {"target_rps": 1, "p99_ms": 1}}
    with pytest.raises(ProfileError, match=re.escape(message)):
        parse_profile(doc)


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) is None


def _req(t, phase, ms, status=200, outcome="ok", error=None, name="summary"):
    return [t, phase, name, ms, status, outcome, error]


def test_the_report_attributes_judges_and_counts_like_the_specification(profile):
    ci = profile.scaled(11)
    p = ci.phases
    reqs = [_req(p[i].start + 0.1, i, 100.0) for i in range(4) for _ in range(200)]
    reqs += [_req(p[3].start + 0.2, 3, 4000.0) for _ in range(20)]  # slow: past p95's bound
    reqs += [_req(p[3].start + 0.3, 3, 5.0, 429, "error", "HTTP 429"),
             _req(p[3].start + 0.3, 3, 5.0, 409, "conflict", None, "confirm")]
    vus = [[k, i, p[i].start, p[i].start + 0.01, p[i].start + 1, "browse", True]
           for i in range(4) for k in range(3)]
    rep = profile_report(ci, {"requests": reqs, "vus": vus, "runs": [], "timeline": []})
    assert [r.requests for r in rep.phases] == [200, 200, 200, 222]
    assert rep.total.requests == 822 and rep.total.errors == 1 and rep.total.conflicts == 1
    assert rep.total.availability_pct == pytest.approx(100 * 821 / 822, abs=1e-3)  # a 429 was not served
    assert rep.phases[3].error_kinds == {"HTTP 429": 1}
    assert rep.phases[3].p99_ms == 4000.0
    assert rep.phases[0].arrival_rate == pytest.approx(3 / p[0].duration, abs=0.01)
    verdicts = {v.what: v.met for v in rep.ensure}
    assert verdicts == {"p95 (ms)": True, "p99 (ms)": True, "error rate (%)": True}  # 20/822 slow: under 5%
    reqs += [_req(p[3].start + 0.4, 3, 4000.0) for _ in range(40)]
    rep = profile_report(ci, {"requests": reqs, "vus": vus, "runs": []})
    assert {v.what: v.met for v in rep.ensure}["p95 (ms)"] is False and not rep.ensure_ok
    throughput = next(v for v in rep.metrics if v.what.startswith("Throughput"))
    assert "[Peak load]" in throughput.what  # judged on the phase of the highest arrival rate


def test_the_report_shows_how_busy_the_machine_was_per_phase(profile):
    ci = profile.scaled(11)
    # shape ticks once a second; the machine busy 0.5 CPU-s a second, then 1.8 from the peak on
    timeline, busy = [], 0.0
    for t in range(62):
        timeline.append([float(t), 0, 0, 0, 0, 0, 0.0, busy])
        busy += 1.8 if t >= 44 else 0.5
    rep = profile_report(ci, {"requests": [], "vus": [], "runs": [], "timeline": timeline})
    assert rep.phases[0].cpu_busy_cores == 0.5
    assert rep.phases[3].cpu_busy_cores == pytest.approx(1.8, abs=0.1)


def test_the_read_burst_report_needs_rate_and_p99(profile):
    reqs = [_req(1.0 + i / 1200, None, 20.0, name="summary") for i in range(12_000)]  # 1,200/s for 10 s
    rep = burst_report(profile.read_burst, {"requests": reqs}, 1200, 64)
    assert rep.met and rep.rps == pytest.approx(1200, rel=0.01)
    reqs[-200:] = [_req(r[0], None, 150.0) for r in reqs[-200:]]  # p99 past 100 ms
    assert not burst_report(profile.read_burst, {"requests": reqs}, 1200, 64).met


@pytest.mark.skipif(find_spec("locust") is None, reason="locust is not installed (dev extras)")
def test_the_locust_shape_asks_for_what_the_schedule_says(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mode": "profile", "scale": 11}))
    script = textwrap.dedent(f"""
        import json, os, sys, time, importlib.util
        os.environ["LOAD_CONFIG"] = {str(config)!r}
        sys.path.insert(0, {str(ROOT)!r})
        spec = importlib.util.spec_from_file_location("locustfile", {str(ROOT / "load" / "locustfile.py")!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        shape, state, out = mod.RunShape(), mod.STATE, []
        first = shape.tick()
        out.append([None, first[0], first[1], first[2][0].__name__])
        for t in (0.5, 3.0, 10.0, 20.0, 42.0, 59.0):
            state.t0 = time.monotonic() - t
            users, rate, classes = shape.tick()
            out.append([t, users, rate, classes[0].__name__])
        state.dispatcher_done, state.t0 = True, time.monotonic() - 61
        out.append(shape.tick())
        print(json.dumps(out))
    """)
    res = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    pool = PoolSchedule(load_profile().scaled(11))
    assert got[0] == [None, pool.users_at(0), pool.spawn_rate, "ArrivalUser"]
    for t, users, rate, cls in got[1:-1]:
        assert (users, rate, cls) == (pool.users_at(t), pool.spawn_rate, "ArrivalUser"), t
    assert got[-1] is None
