"""Rendering, validation and bookkeeping of backups, without a running stack."""

from __future__ import annotations

import subprocess

import pytest
from pydantic import SecretStr

from infra.layout import ContainerLayout, LocalLayout
from infra.render import RenderContext, render_all
from infra.spec import StackSpec, load_spec
from ops.backup import manifest, schedule
from ops.errors import BadInput, ChecksumMismatch
from infra.pgbackrest import BackupPaths
from infra.pgbackrest import archive_command, secret_files
from ops.backup.recovery import parse_time
from ops.executors import executor


@pytest.fixture
def spec(tmp_path):
    return StackSpec(state_dir=tmp_path, backup={"cipher_pass": SecretStr("s3cr3t-key-value")})


@pytest.mark.parametrize("layout_kind", ["local", "docker"])
def test_pgbackrest_conf_carries_the_policy_and_no_secret(spec, layout_kind):
    layout = LocalLayout(spec) if layout_kind == "local" else ContainerLayout(spec, "docker")
    conf = render_all(spec, layout, RenderContext())["pgbackrest/pgbackrest.conf"].content
    for line in ("repo1-retention-full=2", "repo1-retention-diff=7", "repo2-retention-full=12",
                 "repo1-cipher-type=aes-256-cbc", "compress-type=zst", "process-max=2", "[recon]"):
        assert line in conf
    assert "s3cr3t" not in conf and "cipher-pass" not in conf


def test_pgbackrest_accepts_the_rendered_conf(spec, tmp_path):
    layout = LocalLayout(spec)
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text(render_all(spec, layout, RenderContext())["pgbackrest/pgbackrest.conf"].content)
    res = subprocess.run(["pgbackrest", f"--config={conf}", "--stanza=recon", "help", "backup"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(conf.read_text() + "compress-typo=zst\n")
    res = subprocess.run(["pgbackrest", f"--config={bad}", "--stanza=recon", "info"], capture_output=True, text=True)
    assert "compress-typo" in res.stdout + res.stderr  # the tool does read and check this file


def test_cipher_pass_goes_only_to_a_secret_file(spec):
    layout = LocalLayout(spec)
    files = secret_files(spec, layout, {"backup_cipher": SecretStr("k3y"), "postgres_superuser": SecretStr("pw")})
    paths = BackupPaths.of(layout)
    assert files[f"{paths.include}/cipher.conf"] == "[global]\nrepo1-cipher-pass=k3y\nrepo2-cipher-pass=k3y\n"
    assert "k3y" not in archive_command(spec, layout)
    pg = render_all(spec, layout, RenderContext(archive_command=archive_command(spec, layout)))
    text = pg["postgres/primary/postgresql.conf"].content
    assert "archive_mode = on" in text and "archive-push %p" in text and "archive_timeout = 30" in text


def test_backup_disabled_renders_no_pgbackrest_and_archiving_off(tmp_path):
    spec = StackSpec(state_dir=tmp_path, backup={"enabled": False})
    files = render_all(spec, LocalLayout(spec), RenderContext())
    assert "pgbackrest/pgbackrest.conf" not in files
    assert "archive_mode = off" in files["postgres/primary/postgresql.conf"].content


def test_spec_rejects_archive_timeout_above_60_and_unknown_compression(monkeypatch):
    from infra.spec import SpecError
    monkeypatch.setenv("RECON_POSTGRES__ARCHIVE_TIMEOUT_S", "61")
    monkeypatch.setenv("RECON_BACKUP__COMPRESS_TYPE", "rar")
    with pytest.raises(SpecError) as err:
        load_spec()
    assert "postgres.archive_timeout_s: got '61'" in str(err.value)
    assert "backup.compress_type: got 'rar'" in str(err.value)


def test_cron_schedule_renders_each_tier(spec):
    text = schedule.render(spec)
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 4
    assert lines[0].startswith("30 1 * * 0 root ") and lines[0].split(">>")[0].rstrip().endswith("--full")
    assert any(ln.split(">>")[0].rstrip().endswith("--archive") for ln in lines)


@pytest.mark.parametrize("key,value,message", [
    ("schedule_incr", "0 25 * * *", r"hour '25'; allowed: \*, numbers 0..23"),
    ("schedule_full", "x 1 * * 0", r"minute 'x'"),
    ("schedule_archive", "0 3 1 * */z", r"step 'z'"),
])
def test_cron_schedule_rejects_bad_fields(tmp_path, key, value, message):
    spec = StackSpec(state_dir=tmp_path, backup={key: value})
    with pytest.raises(BadInput, match=message):
        schedule.render(spec)


def test_cron_full_and_diff_must_not_collide(tmp_path):
    spec = StackSpec(state_dir=tmp_path, backup={"schedule_full": "0 1 * * *", "schedule_diff": "0 1 * * *"})
    with pytest.raises(BadInput, match="equals backup.schedule_full"):
        schedule.render(spec)


@pytest.mark.parametrize("text,ok", [("2025-01-31T12:00:00+00:00", True), ("2025-01-31T12:00:00Z", True),
                                     ("2025-01-31T12:00:00", False), ("yesterday", False)])
def test_target_time_needs_an_offset(text, ok):
    if ok:
        assert parse_time(text).utcoffset() is not None
    else:
        with pytest.raises(BadInput, match="allowed: ISO 8601 with an offset"):
            parse_time(text)


def test_manifest_artifacts_and_check_catch_a_changed_file(tmp_path):
    ex = executor("local")
    set_dir = tmp_path / "20250101T000000Z-daily"
    (set_dir / "redis").mkdir(parents=True)
    (set_dir / "logical.dump").write_bytes(b"dump")
    (set_dir / "redis" / "dump.rdb").write_bytes(b"rdb")
    arts = manifest.artifacts(ex, str(set_dir))
    assert set(arts) == {"logical.dump", "redis/dump.rdb"} and arts["logical.dump"]["size"] == 4
    doc = {"id": set_dir.name, "artifacts": arts}
    manifest.write(ex, str(set_dir), doc)
    assert manifest.read(ex, str(set_dir)) == doc
    manifest.require_intact(ex, str(set_dir), doc)
    (set_dir / "redis" / "dump.rdb").write_bytes(b"RDB")
    with pytest.raises(ChecksumMismatch, match="redis/dump.rdb: size/sha256"):
        manifest.require_intact(ex, str(set_dir), doc)


def test_unknown_backup_id_names_the_known_ones():
    sets = [{"id": "a-daily", "components": {}}, {"id": "b-weekly", "incomplete": True}]
    with pytest.raises(BadInput, match="unknown backup id 'zzz'; known backups: a-daily"):
        manifest.find(sets, "zzz")
    with pytest.raises(BadInput, match="incomplete"):
        manifest.find(sets, "b-weekly")


def test_target_time_is_handed_to_pgbackrest_in_utc_in_the_form_it_parses():
    from ops.backup.recovery import pg_time
    assert pg_time("2025-01-31T13:00:00.123456+01:00") == "2025-01-31 12:00:00.123+00"
    assert pg_time(None) is None


def test_cron_schedule_carries_the_stacks_environment(tmp_path):
    """A stack defined by RECON_* overrides is backed up as itself, not as the file's stack."""
    spec = StackSpec(state_dir=tmp_path, postgres={"port": 25432})
    text = schedule.render(spec, environ={"RECON_STATE_DIR": str(tmp_path), "RECON_POSTGRES__PORT": "25432",
                                          "RECON_OPERATOR": "alice", "HOME": "/root"})
    lines = text.splitlines()
    assert f"RECON_STATE_DIR={tmp_path}" in lines and "RECON_POSTGRES__PORT=25432" in lines
    assert not [ln for ln in lines if ln.startswith(("RECON_OPERATOR", "HOME"))]
    assert lines.index("RECON_POSTGRES__PORT=25432") < next(i for i, ln in enumerate(lines) if " backup --stack " in ln)


def test_cron_schedule_refuses_a_secret_in_the_environment(tmp_path):
    spec = StackSpec(state_dir=tmp_path)
    with pytest.raises(BadInput, match="RECON_BACKUP__CIPHER_PASS") as exc:
        schedule.render(spec, environ={"RECON_BACKUP__CIPHER_PASS": "hunter2"})
    assert "hunter2" not in str(exc.value)


class _Listing:
    """An executor whose `find` prints a repository's archive listing (name mtime)."""

    def __init__(self, lines: list[str]):
        self.lines = lines

    def run(self, cmd, **kw):
        from ops.executors import Result
        return Result(cmd, 0, "\n".join(self.lines) + "\n", "", 0.0, "test")


def _backup(wal_start: str, stop: float):
    from ops.backup.pgbackrest import BackupInfo
    return BackupInfo("20260101-000000F", "full", 1, stop - 5, stop, None, None, wal_start, wal_start, 0, 0, None)


def _pgb(lines, tmp_path):
    from infra.layout import LocalLayout
    from infra.pgbackrest import BackupPaths
    from ops.backup.pgbackrest import PgBackRest
    return PgBackRest(_Listing(lines), BackupPaths.of(LocalLayout(StackSpec(state_dir=tmp_path))), "recon")


def test_wal_coverage_ends_at_the_first_missing_segment(tmp_path):
    sha = "0" * 40
    lines = [f"00000001000000000000000{n}-{sha}.zst {1000 + 10 * n}.0" for n in (3, 4, 5, 7, 8)]
    lines += ["00000002.history 1100.0", f"000000010000000000000006.partial-{sha}.zst 1061.0"]
    low, high, missing = _pgb(lines, tmp_path).wal_coverage(_backup("000000010000000000000003", 1031.0))
    assert (low, high, missing) == (1031.0, 1050.0, "0000000000000006")


def test_wal_coverage_follows_a_timeline_switch_without_a_gap(tmp_path):
    sha = "0" * 40
    lines = [f"000000010000000000000003-{sha}.zst 1030.0", f"000000010000000000000004-{sha}.zst 1040.0",
             f"000000020000000000000004-{sha}.zst 1045.0", f"000000020000000000000005-{sha}.zst 1050.0",
             f"000000020000000000000100-{sha}.zst 1060.0"]
    # a segment far ahead of 5: the archive misses 6.., the coverage ends at 5
    low, high, missing = _pgb(lines, tmp_path).wal_coverage(_backup("000000010000000000000003", 1031.0))
    assert (high, missing) == (1050.0, "0000000000000006")


def test_wal_coverage_on_a_timeline_ignores_other_branches(tmp_path):
    """Timeline 2 branched from 1 at segment 4 (a PITR); 1 went on to 6 before it was abandoned,
    and a rolled-back restore left timeline 3 with segment 5. A gap at 5 on timeline 2 is a gap:
    neither branch's segment 5 may fill it (the CI's gap drill was fooled by timeline 1's)."""
    sha = "0" * 40
    lines = [f"00000001000000000000000{n}-{sha}.zst {1000 + 10 * n}.0" for n in (3, 4, 5, 6)]
    lines += [f"000000020000000000000004-{sha}.zst 1100.0", f"000000020000000000000006-{sha}.zst 1120.0",
              f"000000030000000000000005-{sha}.zst 1130.0"]
    pgb = _pgb(lines, tmp_path)
    backup = _backup("000000010000000000000003", 1031.0)
    assert pgb.wal_coverage(backup, timeline=2) == (1031.0, 1100.0, "0000000000000005")
    # without a timeline (the newest per number), the branches hide the gap: what the fix is for
    assert pgb.wal_coverage(backup)[2] is None
