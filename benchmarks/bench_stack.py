"""Local stack start-up: a fresh `fab up` to every service healthy, and a second (no-op) `fab up`.

Targets (issue "Foundation"): fresh start < 30 s after the installs on 2 cores; a second
`fab up` < 3 s. Runs a throwaway stack (its own state dir, ports shifted by --offset) so the
main stack is untouched, and removes it at the end.

    python benchmarks/bench_stack.py [--offset 3000] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fix_stack import SCRATCH, isolated_stack_env  # noqa: E402

FAB = str(Path(sys.executable).parent / "fab")


def fab(env, *args) -> float:
    t0 = time.monotonic()
    res = subprocess.run([FAB, *args], cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"`fab {' '.join(args)}` failed:\n{res.stderr[-3000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--offset", type=int, default=3000, help="port offset of the throwaway stack")
    ap.add_argument("--runs", type=int, default=1, help="fresh starts to measure")
    args = ap.parse_args()
    fresh, again = [], []
    SCRATCH.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-stack-", dir=SCRATCH) as tmp:
        Path(tmp).chmod(0o755)  # the service user must traverse it when run as root
        env = isolated_stack_env(Path(tmp) / "state", args.offset)
        try:
            for _ in range(args.runs):
                fresh.append(fab(env, "up"))
                again.append(fab(env, "up"))
                fab(env, "down", "--purge", "--yes")
        finally:
            subprocess.run([FAB, "down", "--purge", "--yes"], cwd=REPO, env={**os.environ, **env},
                           capture_output=True)
    print(f"{'figure':44} {'measured':>10} {'target':>8} {'ratio':>7}")
    for name, values, target in (("fresh fab up to every service healthy (s)", fresh, 30.0),
                                 ("second fab up, no change (s)", again, 3.0)):
        best = min(values)
        print(f"{name:44} {best:10.2f} {target:8.1f} {best / target:7.2f}  {'OK' if best <= target else 'MISSED'}")


if __name__ == "__main__":
    main()
