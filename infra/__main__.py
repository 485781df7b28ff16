"""The Pulumi program (Pulumi.yaml: ``main: infra/``): ``pulumi up -s staging|production``.

The stack name picks ``Pulumi.<stack>.yaml``; ``load_spec`` validates its ``recon:*`` keys
and the spec's ``target`` picks the platform (docker or kubernetes). Secrets come from
``pulumi config set --secret recon:<key>`` or are generated once (infra/components/secrets.py).

Everything is declared by ``infra.components.stack.build``; this file only wires the Pulumi
engine to it, so tests import ``build`` and run it under mocks without this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # Pulumi runs this file as a script from infra/

import pulumi  # noqa: E402

from infra.components.stack import build  # noqa: E402
from infra.spec import SpecError, load_spec  # noqa: E402


def main() -> None:
    stack = pulumi.get_stack()
    try:
        spec = load_spec(stack)
    except SpecError as exc:
        raise pulumi.RunError(str(exc)) from None
    config = pulumi.Config("recon")
    built = build(spec, lookup=config.get_secret)
    for name, value in built.outputs.items():
        pulumi.export(name, value)


main()
