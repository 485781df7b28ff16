"""Run the program without an engine: Pulumi's mock runtime records every declared resource.

Used by tests/infra and ``python -m testing.stack_summary``. Nothing here talks to Docker, a
cluster or the Pulumi service: ``pulumi.runtime.set_mocks`` replaces the engine with
:class:`RecordingMocks`, which answers each registration with the inputs as outputs (plus
the few computed outputs the program reads, e.g. a RandomPassword's ``result``).

Fail closed: :func:`resolve` waits for an Output with a timeout and raises
:class:`Unresolved` rather than hang or return a placeholder.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as _mocks
from pulumi.runtime.sync_await import _sync_await

from infra.policy.rules import Declared
from infra.spec import StackSpec

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"
DEFAULT_TIMEOUT_S = 20.0


class Unresolved(AssertionError):
    """An Output did not resolve within the timeout: the program's wiring is broken."""


def _is_secret(v: Any) -> bool:
    return isinstance(v, dict) and v.get(SIG_KEY) == SECRET_SIG


def unwrap(value: Any, path: str = "", secrets: set[str] | None = None) -> Any:
    """Inputs as plain Python values; records the dotted paths of secret values in ``secrets``."""
    if _is_secret(value):
        if secrets is not None:
            secrets.add(path)
        return unwrap(value.get("value"), path, secrets)
    if isinstance(value, dict):
        return {k: unwrap(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the wire format has only doubles; Kubernetes schemas want integers
    return value


def mock_secret(name: str) -> str:
    """The value a mocked generator returns: unique and recognisable, so leaks can be found."""
    return "mocksecret" + hashlib.sha256(name.encode()).hexdigest()[:22]


@dataclass
class Recorded:
    type: str
    name: str
    custom: bool
    props: dict[str, Any]
    secret_paths: frozenset[str]
    parent: str

    def declared(self) -> Declared:
        return Declared(self.type, self.name, self.props, self.secret_paths)


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.records: list[Recorded] = []
        self.parents: dict[tuple[str, str], str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        secrets: set[str] = set()
        props = unwrap(args.inputs, "", secrets)
        self.records.append(Recorded(args.typ, args.name, bool(args.custom), props, frozenset(secrets), ""))
        state = dict(args.inputs)
        t = args.typ
        if t == "random:index/randomPassword:RandomPassword":
            state["result"] = mock_secret(args.name)
        elif t == "tls:index/privateKey:PrivateKey":
            state["private_key_pem"] = "-----BEGIN PRIVATE KEY-----\n" + mock_secret(args.name) + "\n"
            state["privateKeyPem"] = state["private_key_pem"]
        elif t == "tls:index/selfSignedCert:SelfSignedCert":
            state["cert_pem"] = "-----BEGIN CERTIFICATE-----\nmock-" + args.name + "\n"
            state["certPem"] = state["cert_pem"]
        elif t == "docker:index/remoteImage:RemoteImage":
            state["image_id"] = state["imageId"] = "sha256:" + hashlib.sha256(args.name.encode()).hexdigest()
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


class _Monitor(_mocks.MockMonitor):
    """Records each resource's parent URN (the mocks API does not pass it).

    Registrations arrive on the runtime's worker threads, so the parent is keyed by
    (type, name), unique within a stack, and joined to the records after the run.
    """

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        self.mocks.parents[(request.type, request.name)] = request.parent  # type: ignore[attr-defined]
        return super().RegisterResource(request)


@dataclass
class Run:
    spec: StackSpec
    records: list[Recorded]
    stack: Any
    secret_values: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.records if r.type == type_]

    def get(self, type_: str, name: str) -> Recorded:
        found = [r for r in self.records if r.type == type_ and r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources {type_} named {name!r}; "
                           f"names of that type: {sorted(r.name for r in self.of_type(type_))}")
        return found[0]

    def counts(self, custom_only: bool = True) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            if r.custom or not custom_only:
                out[r.type] = out.get(r.type, 0) + 1
        return dict(sorted(out.items()))

    def declared(self) -> list[Declared]:
        return [r.declared() for r in self.records]


def run(spec: StackSpec, lookup=None, program=None) -> Run:
    """Declare ``spec``'s stack under mocks; returns every resource it registered.

    ``program(spec)`` replaces the whole program (``build``), e.g. to declare one component.
    """
    from infra.components.stack import build

    program_fn = program or (lambda s: build(s, lookup) if lookup else build(s))
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="recon", stack=spec.name, preview=False, monitor=_Monitor(mocks))
    holder: dict[str, Any] = {}

    def declare() -> None:
        holder["stack"] = program_fn(spec)

    _sync_await(_mocks.run_pulumi_func(declare))
    for rec in mocks.records:
        rec.parent = mocks.parents.get((rec.type, rec.name), "")
    secret_values = [mock_secret(r.name) for r in mocks.records
                     if r.type == "random:index/randomPassword:RandomPassword"]
    secret_values += [mock_secret(r.name) for r in mocks.records if r.type == "tls:index/privateKey:PrivateKey"]
    return Run(spec, mocks.records, holder["stack"], secret_values)


def resolve(value: Any, timeout: float = DEFAULT_TIMEOUT_S) -> Any:
    """The value of an Output (or of any nested Outputs), or :class:`Unresolved`."""
    out = pulumi.Output.from_input(value)

    async def wait() -> Any:
        # shield: a timeout must not cancel the runtime's own task (the next run would trip on it)
        return await asyncio.wait_for(asyncio.shield(out.future()), timeout)

    try:
        return _sync_await(wait())
    except asyncio.TimeoutError:
        raise Unresolved(f"an output did not resolve within {timeout}s") from None


def is_secret(value: Any, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    out = pulumi.Output.from_input(value)

    async def wait() -> bool:
        return await asyncio.wait_for(asyncio.shield(out.is_secret()), timeout)

    try:
        return _sync_await(wait())
    except asyncio.TimeoutError:
        raise Unresolved(f"an output's secretness did not resolve within {timeout}s") from None
