"""Print the resources each stack declares, by type: ``python -m testing.stack_summary [stack ...]``.

Runs the program under Pulumi's mock runtime (testing/pulumi_mocks.py): no engine,
Docker or cluster needed. Counts cover custom resources (what ``pulumi up`` would create);
component resources are listed separately.
"""

from __future__ import annotations

import argparse
import sys

from infra.spec import SpecError, load_spec
from testing.pulumi_mocks import run

STACKS = ("staging", "production")


def summary(stack: str) -> tuple[dict[str, int], dict[str, int]]:
    r = run(load_spec(stack))
    custom = r.counts()
    components = {t: n for t, n in r.counts(custom_only=False).items() if t not in custom}
    return custom, components


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.stack_summary", description=__doc__.splitlines()[0])
    parser.add_argument("stacks", nargs="*", default=list(STACKS))
    args = parser.parse_args(argv)
    for stack in args.stacks:
        try:
            custom, components = summary(stack)
        except SpecError as exc:
            print(exc, file=sys.stderr)
            return 2
        spec = load_spec(stack)
        print(f"{stack} (target {spec.target}): {sum(custom.values())} resources, "
              f"{sum(components.values())} components")
        width = max(len(t) for t in custom)
        for t, n in custom.items():
            print(f"  {t:<{width}}  {n:>3}")
        print("  components: " + ", ".join(f"{t.split(':')[-1]} x{n}" for t, n in components.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
