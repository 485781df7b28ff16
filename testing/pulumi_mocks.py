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


def remote_image_id(resource_name: str) -> str:
    """The image id the mocks answer for a RemoteImage resource."""
    return "sha256:" + hashlib.sha256(resource_name.encode()).hexdigest()


@dataclass
class Recorded:
    type: str
    name: str
    custom: bool
    props: dict[str, Any]
    secret_paths: frozenset[str]
    parent: str
    depends_on: tuple[str, ...] = ()
    """URNs of the resources it depends on (explicit depends_on and inputs that are outputs)."""

    @property
    def urn(self) -> str:
        return f"{self.type}::{self.name}"

    def declared(self) -> Declared:
        return Declared(self.type, self.name, self.props, self.secret_paths)


class RecordingMocks(pulumi.runtime.Mocks):
    """``realistic``: answer random and tls resources as their providers would (a real random
    password, a real key and self-signed certificate from the declared inputs), so a capture
    can be applied to a real engine (tests/docker/apply.py) with nothing filled in by hand."""

    def __init__(self, realistic: bool = False) -> None:
        self.realistic = realistic
        self.records: list[Recorded] = []
        self.parents: dict[tuple[str, str], str] = {}
        self.dependencies: dict[tuple[str, str], list[str]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        secrets: set[str] = set()
        props = unwrap(args.inputs, "", secrets)
        self.records.append(Recorded(args.typ, args.name, bool(args.custom), props, frozenset(secrets), ""))
        state = dict(args.inputs)
        t = args.typ
        if self.realistic and t in PROVIDERS:
            state.update(PROVIDERS[t](props))
            return f"{args.name}-id", state
        if t == "random:index/randomPassword:RandomPassword":
            state["result"] = mock_secret(args.name)
        elif t == "tls:index/privateKey:PrivateKey":
            state["private_key_pem"] = "-----BEGIN PRIVATE KEY-----\n" + mock_secret(args.name) + "\n"
            state["privateKeyPem"] = state["private_key_pem"]
        elif t == "tls:index/selfSignedCert:SelfSignedCert":
            state["cert_pem"] = "-----BEGIN CERTIFICATE-----\nmock-" + args.name + "\n"
            state["certPem"] = state["cert_pem"]
        elif t == "docker:index/remoteImage:RemoteImage":
            state["image_id"] = state["imageId"] = remote_image_id(args.name)
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list | None]:
        return {}, None


def _random_password(props: dict) -> dict:
    import secrets
    import string
    alphabet = string.ascii_letters + string.digits
    if props.get("special", True):
        alphabet += props.get("overrideSpecial") or "!#$%&*()-_=+[]{}<>:?"
    value = "".join(secrets.choice(alphabet) for _ in range(int(props.get("length", 16))))
    return {"result": value}


def _private_key(props: dict) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    algorithm = props.get("algorithm", "RSA")
    if algorithm == "ECDSA":
        curves = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}
        key = ec.generate_private_key(curves[props.get("ecdsaCurve", "P224")]())
    elif algorithm == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(props.get("rsaBits", 2048)))
    else:
        raise AssertionError(f"tls PrivateKey algorithm {algorithm!r} is not emulated")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {"privateKeyPem": pem, "private_key_pem": pem}


def _self_signed_cert(props: dict) -> dict:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    key = serialization.load_pem_private_key(props["privateKeyPem"].encode(), password=None)
    subject = props.get("subject") or {}
    names = [x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"])] if subject.get("commonName") else []
    if subject.get("organization"):
        names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name(names)).issuer_name(x509.Name(names))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(hours=int(props["validityPeriodHours"]))))
    if props.get("dnsNames"):
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in props["dnsNames"]]),
                                        critical=False)
    uses = set(props.get("allowedUses") or [])
    if "server_auth" in uses:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    return {"certPem": pem, "cert_pem": pem}


PROVIDERS = {
    "random:index/randomPassword:RandomPassword": _random_password,
    "tls:index/privateKey:PrivateKey": _private_key,
    "tls:index/selfSignedCert:SelfSignedCert": _self_signed_cert,
}
"""What ``realistic`` mocks answer for the resources that compute their values."""


class _Monitor(_mocks.MockMonitor):
    """Records each resource's parent URN (the mocks API does not pass it).

    Registrations arrive on the runtime's worker threads, so the parent is keyed by
    (type, name), unique within a stack, and joined to the records after the run.
    """

    def RegisterResource(self, request):  # noqa: N802 - gRPC method name
        self.mocks.parents[(request.type, request.name)] = request.parent  # type: ignore[attr-defined]
        self.mocks.dependencies[(request.type, request.name)] = list(request.dependencies)  # type: ignore[attr-defined]
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


def run(spec: StackSpec, lookup=None, program=None, realistic: bool = False) -> Run:
    """Declare ``spec``'s stack under mocks; returns every resource it registered.

    ``program(spec)`` replaces the whole program (``build``), e.g. to declare one component.
    ``realistic``: generate real passwords and TLS material (see :class:`RecordingMocks`).
    """
    from infra.components.stack import build

    program_fn = program or (lambda s: build(s, lookup) if lookup else build(s))
    mocks = RecordingMocks(realistic)
    pulumi.runtime.set_mocks(mocks, project="recon", stack=spec.name, preview=False, monitor=_Monitor(mocks))
    holder: dict[str, Any] = {}

    def declare() -> None:
        holder["stack"] = program_fn(spec)

    _sync_await(_mocks.run_pulumi_func(declare))
    for rec in mocks.records:
        rec.parent = mocks.parents.get((rec.type, rec.name), "")
        rec.depends_on = tuple(mocks.dependencies.get((rec.type, rec.name), ()))
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
