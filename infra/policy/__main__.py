"""CrossGuard pack: ``pulumi preview --policy-pack infra/policy`` (needs the Pulumi CLI).

Every rule is a function in infra/policy/rules.py; this file only adapts them to
pulumi_policy, so the pack and the pytest suite cannot drift apart. All rules are
mandatory: a violation fails the preview.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rules.py, whatever the cwd

from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

import rules  # noqa: E402


def _resource_policy(name: str, fn) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for v in fn(rules.Declared(args.resource_type, args.name, dict(args.props))):
            report(str(v))

    return ResourceValidationPolicy(name=name, description=(fn.__doc__ or name).strip().splitlines()[0],
                                    validate=validate)


def _stack_policy(name: str, fn) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        declared = [rules.Declared(r.resource_type, r.name, dict(r.props)) for r in args.resources]
        for v in fn(declared):
            report(str(v))

    return StackValidationPolicy(name=name, description=f"recon stack rule {name}", validate=validate)


PolicyPack(
    name="recon-hardening",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*(_resource_policy(n, f) for n, f in rules.RESOURCE_RULES.items()),
              *(_stack_policy(n, f) for n, f in rules.stack_rules().items())],
)
