"""Releases without downtime: blue-green, canary, rollback, and the gates that guard them.

    ops/release/
    ├── state.py    the per-stack release state (release.json) and the lock that serialises tasks
    ├── gates.py    slot health, Prometheus error rate and p95 against spec.release thresholds
    └── local.py    the local target's driver: render, reload Nginx/Prometheus, start/stop slots

The drills' bounded load generator lives with the test harnesses (testing/loadgen.py).

The tasks (ops/tasks/release.py) compose these: a gate that fails reverts the change it
guarded and records its decision in the run record (ops/runlog.py).
"""
