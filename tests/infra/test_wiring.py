"""Kubernetes, verified as far as it can be without a cluster: every connection of the stack is
carried by the production objects, and nothing else is (issue 11, item 6).

The connections come from the catalogue (infra/services.py ``connections``) plus the few only
this stack needs (tests/infra/wiring.py ``SUPPLEMENT``); the checks are in
tests/infra/wiring_checks.py. A check's problems must all be listed in :data:`KNOWN_DEFECTS`,
each with the fix it waits for in a file outside infra/kubernetes; a listed problem that is no
longer reported fails too, so the list is emptied as the fixes land.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from infra import services
from infra.spec import load_spec
from tests.infra import wiring
from tests.infra.wiring_checks import CHECKS, credentials_of, problems


@dataclass(frozen=True)
class Defect:
    fix: str
    """The file it is in and the change that fixes it."""
    problems: tuple[str, ...]


def _nowhere(source: str, target: str, port: int) -> str:
    return f"{source} is given {target}:{port} ({{}}), which is no connection of the stack"


def _excess(policy: str, source: str, target: str, port: int) -> str:
    return f"NetworkPolicy {policy} lets {source} reach {target} on {port}/TCP, which is no connection of the stack"


def _loopback(worker: str) -> str:
    return f"{worker}: port metrics (8001) is bound to 127.0.0.1 only: probes, Services and peers cannot reach it"


KNOWN_DEFECTS: dict[str, Defect] = {}

KNOWN = {p: name for name, d in KNOWN_DEFECTS.items() for p in d.problems}


@pytest.fixture(scope="module")
def found() -> dict[str, list[str]]:
    return problems(wiring.baseline())


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_production_wiring(found, check):
    unexpected = [p for p in found[check] if p not in KNOWN]
    assert unexpected == [], f"{check}: {len(unexpected)} problem(s):\n" + "\n".join(unexpected)


def test_known_defects_are_still_there(found):
    """A fixed defect leaves KNOWN_DEFECTS with its fix (this test says which)."""
    reported = {p for problems_ in found.values() for p in problems_}
    fixed = sorted({KNOWN[p] for p in KNOWN if p not in reported})
    assert fixed == [], f"fixed, remove from KNOWN_DEFECTS in tests/infra/test_wiring.py: {fixed}"


# -- the connection list ----------------------------------------------------------------------------

def test_links_are_the_catalogue_plus_the_supplement():
    spec = load_spec("production")
    got = {(x.source, x.target) for x in wiring.links(spec)}
    catalogue = {(s, t) for s, t, _, _ in services.connections(spec)}
    assert {(e.source, e.target) for e in wiring.SUPPLEMENT} <= got
    assert {(s, t) for s, t in catalogue if wiring.on_kubernetes(s) and wiring.on_kubernetes(t)} <= got
    assert ("prometheus", "node-exporter") in catalogue and ("prometheus", "node-exporter") not in got


def test_supplement_is_not_yet_in_the_catalogue():
    """When the catalogue gains one of these connections, it leaves SUPPLEMENT (one list)."""
    spec = load_spec("production")
    catalogue = {(s, t) for s, t, _, _ in services.connections(spec)}
    assert [e for e in wiring.SUPPLEMENT if (e.source, e.target) in catalogue] == []


def test_every_link_is_checked_on_some_workloads():
    cl = wiring.Cluster(wiring.baseline())
    assert [str(x) for x in cl.links if not cl.pairs(x)] == []


# -- the reading helpers ---------------------------------------------------------------------------

def test_expand_fills_member_variables():
    script = 'n="${RECON_MEMBER##*-}"\ncat /etc/recon/postgres/replica-$n/postgresql.conf ${RECON_MEMBER#postgres-}'
    out = wiring.expand(script, {"RECON_MEMBER": "postgres-replica-2"})
    assert out.splitlines()[1] == "cat /etc/recon/postgres/replica-2/postgresql.conf replica-2"
    assert wiring.expand("$UNKNOWN/x ${X%%.*}", {"X": "a.b.c"}) == "*/x a"


def test_credentials_of_reads_dsns_pgpass_and_bare_passwords():
    assert credentials_of("postgresql://app:p%40ss@h:5432/db") == [("app", "p@ss")]
    assert credentials_of("*:*:*:replicator:a\\:b\n") == [("replicator", "a:b")]
    assert credentials_of("plain") == [(None, "plain")]


def test_addresses_in_reads_every_form_configs_use():
    ns = "recon"
    host = "redis-primary-0.redis-primary.recon.svc.cluster.local"
    text = f"replicaof {host} 6379\nurl: redis://{host}:6379\nhost={host} port=6379\nx http://other:1/"
    got = [(a.host, a.port) for a in wiring.addresses_in(text, "t", ns)]
    assert got == [(host, 6379)] * 3 + [("other", None)]
