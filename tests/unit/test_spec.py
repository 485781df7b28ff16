"""The stack spec: defaults, stack files, environment overrides, every validation rule, secrets,
and the generated reference in docs/spec.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import spec_doc
from infra.spec import REPO_ROOT, SpecError, StackSpec, load_spec

SAME = {"blue": {"version": "1.0.0"}, "green": {"version": "1.0.0"}}
NEW = {"blue": {"version": "1.0.0"}, "green": {"version": "1.1.0"}}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """The environment overrides the spec: keep the caller's RECON_* out of these tests."""
    import os

    for k in list(os.environ):
        if k.startswith("RECON_"):
            monkeypatch.delenv(k)


def problems(overrides: dict, stack: str | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(SpecError) as exc:
        load_spec(stack, overrides=overrides)
    return exc.value.problems


# -- loading ---------------------------------------------------------------------------------
def test_local_defaults():
    spec = load_spec()
    assert (spec.name, spec.target, spec.host) == ("local", "local", "127.0.0.1")
    assert spec.postgres.port == 15432 and spec.redis.port == 16379
    assert spec.redis.sentinel.count == 3 and spec.redis.sentinel.quorum == 2
    assert spec.backend.active_slot == "blue" and spec.backend.canary_weight == 0
    assert (spec.postgres.resources.cpu_limit, spec.postgres.resources.memory_limit_mib) == (1.0, 2048)
    assert (spec.backend.resources.cpu_limit, spec.backend.resources.memory_limit_mib,
            spec.backend.resources.cpu_request, spec.backend.resources.memory_request_mib) == (1.0, 1024, 0.5, 512)
    assert 2024 not in spec.local_ports().values()


@pytest.mark.parametrize("stack,target,pg_port,backend_replicas", [
    ("staging", "docker", 5432, 2),
    ("production", "kubernetes", 5432, 3),
])
def test_stack_files_load(stack, target, pg_port, backend_replicas):
    spec = load_spec(stack)
    assert (spec.name, spec.target, spec.postgres.port, spec.backend.replicas) == (
        stack, target, pg_port, backend_replicas)


def test_production_carries_the_seed_resources():
    b = load_spec("production").backend.resources
    assert (b.cpu_limit, b.memory_limit_mib, b.cpu_request, b.memory_request_mib) == (1.0, 1024, 0.5, 512)


@pytest.mark.parametrize("env,attr,value", [
    ({"RECON_POSTGRES__PORT": "15999"}, ("postgres", "port"), 15999),
    ({"RECON_REDIS__SENTINEL__QUORUM": "3"}, ("redis", "sentinel", "quorum"), 3),
    ({"RECON_NGINX__TLS": "false"}, ("nginx", "tls"), False),
], ids=["postgres-port", "nested-sentinel-quorum", "bool"])
def test_environment_beats_the_file(monkeypatch, env, attr, value):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    spec = load_spec("staging")  # the file sets postgres.port 5432, quorum 2
    got = spec
    for a in attr:
        got = getattr(got, a)
    assert got == value


def test_environment_keeps_the_file_siblings(monkeypatch):
    monkeypatch.setenv("RECON_POSTGRES__PORT", "15999")
    spec = load_spec("production")
    assert spec.postgres.port == 15999 and spec.postgres.max_connections == 200


def test_pulumi_secure_values_are_skipped(tmp_path: Path):
    (tmp_path / "Pulumi.sec.yaml").write_text(
        "config:\n  recon:postgres:\n    port: 15500\n    password: {secure: AAAbase64}\n"
        "  recon:grafana: {secure: AAA}\n  docker:host: unix:///x\n")
    spec = load_spec("sec", root=tmp_path)
    assert spec.postgres.port == 15500 and spec.postgres.password is None


# -- every rule names the key, the bad value and what is allowed ------------------------------
CASES = {
    "quorum-not-majority": ({"redis": {"sentinel": {"count": 5, "quorum": 2}}},
                            "redis.sentinel.quorum", "2", "majority of the 5 Sentinels: 3..5"),
    "quorum-above-count": ({"redis": {"sentinel": {"quorum": 4}}},
                           "redis.sentinel.quorum", "4", "majority of the 3 Sentinels: 2..3"),
    "even-sentinels": ({"redis": {"sentinel": {"count": 4, "quorum": 3}}},
                       "redis.sentinel.count", "4", "odd number of Sentinels, at least 3"),
    "too-few-sentinels": ({"redis": {"sentinel": {"count": 1, "quorum": 1}}},
                          "redis.sentinel.count", "1", "at least 3"),
    "duplicate-port": ({"prometheus": {"port": 16379}},
                       "prometheus.port (prometheus)", "16379", "not already used by redis-primary"),
    "port-2024": ({"alertmanager": {"port": 2024}},
                  "alertmanager.port (alertmanager)", "2024", "2024 is taken"),
    "port-below-1024": ({"postgres": {"port": 80}}, "postgres.port", "80", "greater than or equal to 1024"),
    "replicas-too-many": ({"postgres": {"replicas": 9}}, "postgres.replicas", "9", "less than or equal to 5"),
    "backend-replicas-zero": ({"backend": {"replicas": 0}}, "backend.replicas", "0", "greater than or equal to 1"),
    "canary-over-100": ({"backend": {"canary_weight": 101, "slots": NEW}},
                        "backend.canary_weight", "101", "less than or equal to 100"),
    "unknown-key": ({"postgres": {"prot": 5432}}, "postgres.prot", "5432", "no such key"),
    "unknown-section": ({"mysql": {}}, "mysql", "{}", "no such key"),
    "canary-same-version": ({"backend": {"canary_weight": 10, "slots": SAME}},
                            "backend.canary_weight", "10", "same version"),
    "cpu-request-over-limit": ({"backend": {"resources": {"cpu_limit": 1.0, "cpu_request": 2.0}}},
                               "backend.resources.cpu_request", "2.0", "at most cpu_limit (1.0)"),
    "memory-request-over-limit": ({"postgres": {"resources": {"memory_limit_mib": 512,
                                                              "memory_request_mib": 1024}}},
                                  "postgres.resources.memory_request_mib", "1024",
                                  "at most memory_limit_mib (512)"),
    "autoscale-below-replicas": ({"backend": {"replicas": 5, "autoscale_max": 3}},
                                 "backend.autoscale_max", "3", "at least backend.replicas (5)"),
    "role-shared": ({"postgres": {"reader_user": "recon"}}, "postgres.reader_user", "'recon'",
                    "a role of its own (not postgres.user)"),
    "role-superuser": ({"postgres": {"owner_user": "postgres"}}, "postgres.owner_user", "'postgres'",
                       "not the superuser"),
    "slo-latency-not-a-bucket": ({"prometheus": {"slo": {"latency_seconds": 1.7}}}, "prometheus.slo.latency_seconds",
                                 "1.7", "one of the service's histogram buckets"),
    "bad-literal": ({"backend": {"active_slot": "red"}}, "backend.active_slot", "'red'", "'blue' or 'green'"),
}


@pytest.mark.parametrize("overrides,key,value,allowed", CASES.values(), ids=CASES.keys())
def test_rule_reports_key_value_and_allowed(overrides, key, value, allowed):
    found = problems(overrides)
    matching = [p for p in found if p[0] == key]
    assert matching, f"no problem for {key}: {found}"
    k, v, a = matching[0]
    assert value in v and allowed in a, (k, v, a)


def test_sentinel_rules_are_off_without_failover():
    spec = load_spec(overrides={"redis": {"failover": False, "sentinel": {"count": 2, "quorum": 1}}})
    assert not [p for p in spec.local_ports() if p.startswith("sentinel")]


def test_canary_with_a_new_version_is_valid():
    assert load_spec(overrides={"backend": {"canary_weight": 10, "slots": NEW}}).backend.canary_weight == 10


def test_unknown_stack_names_the_known_ones():
    [(key, value, allowed)] = problems({}, stack="prod")
    assert key == "--stack" and value == "'prod'"
    assert "local" in allowed and "staging" in allowed and "production" in allowed


def test_several_problems_reported_together():
    with pytest.raises(SpecError) as exc:
        load_spec(overrides={"redis": {"sentinel": {"count": 4, "quorum": 1}},
                             "prometheus": {"port": 2024},
                             "backend": {"canary_weight": 5, "slots": SAME}})
    keys = {p[0] for p in exc.value.problems}
    assert {"redis.sentinel.count", "redis.sentinel.quorum", "prometheus.port (prometheus)",
            "backend.canary_weight"} <= keys
    message = str(exc.value)
    assert f"{len(exc.value.problems)} problem(s)" in message
    assert all(f"  - {k}: got " in message for k in keys)


def test_field_and_cross_errors_come_in_one_report_per_stage():
    """Field errors stop the load before cross-key rules run; all field errors come at once."""
    found = problems({"postgres": {"port": 1, "replicas": 99}, "nginx": {"tls": "maybe"}})
    assert {p[0] for p in found} == {"postgres.port", "postgres.replicas", "nginx.tls"}


# -- secrets -----------------------------------------------------------------------------------
SECRET = "hunter2-very-secret"


@pytest.mark.parametrize("overrides", [
    {"postgres": {"password": SECRET, "port": 1}},
    {"postgres": {"password": SECRET}, "redis": {"sentinel": {"count": 4}}},
    {"backup": {"cipher_pass": SECRET, "compress_level": 99}},
    {"postgres": {"password": {"nested": SECRET}}},
    {"grafana": {"admin_password": 12345}},
], ids=["field-error", "cross-error", "cipher-pass", "secret-of-wrong-type", "secret-not-a-string"])
def test_secrets_never_in_error_text(overrides):
    with pytest.raises(SpecError) as exc:
        load_spec(overrides=overrides)
    text = str(exc.value) + repr(exc.value.problems)
    assert SECRET not in text and "12345" not in text


def test_secrets_never_in_repr_or_dump():
    spec = load_spec(overrides={"postgres": {"password": SECRET}, "redis": {"password": SECRET},
                                "backup": {"cipher_pass": SECRET}})
    assert spec.postgres.password.get_secret_value() == SECRET
    for text in (repr(spec), str(spec), spec.model_dump_json()):
        assert SECRET not in text


def test_env_secret_never_in_error(monkeypatch):
    monkeypatch.setenv("RECON_POSTGRES__PASSWORD", SECRET)
    monkeypatch.setenv("RECON_POSTGRES__PORT", "1")
    with pytest.raises(SpecError) as exc:
        load_spec()
    assert SECRET not in str(exc.value)


# -- docs/spec.md -----------------------------------------------------------------------------
def test_docs_spec_md_is_generated_and_current():
    committed = (REPO_ROOT / "docs" / "spec.md").read_text()
    assert committed == spec_doc.render(), "docs/spec.md is stale: python -m infra.spec_doc > docs/spec.md"


def test_docs_cover_every_key_with_a_meaning():
    rows = spec_doc.rows()
    assert all(meaning for *_, meaning in rows), [r[0] for r in rows if not r[4]]
    keys = {r[0] for r in rows}
    for section, model in StackSpec.model_fields.items():
        assert section in keys
    assert "redis.sentinel.quorum" in keys and "postgres.resources.memory_limit_mib" in keys


def test_docs_show_section_specific_defaults():
    """postgres.resources defaults are not Resources()'s: the table must say 2048, not 1024."""
    row = next(r for r in spec_doc.rows() if r[0] == "postgres.resources.memory_limit_mib")
    assert row[2] == "`2048`"
