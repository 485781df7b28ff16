"""Staging on a real Docker engine: images built here, the program applied as declared, the
stack checked from outside as the local one is.

The module builds every image the staging program declares (`fab images.build`'s code), creates
the captured resources with tests/docker/apply.py, saves the program's inventory output and then
runs the operator's commands against it. Marked ``docker``: without an engine the tests fail when
CI=true (ops/docker-engine.sh starts one) and skip otherwise.
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ops.containers import REDIS_CLI, SENTINEL_CLI

pytestmark = [pytest.mark.docker, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")
ENV = {**os.environ, "RECON_NGINX__PUBLISH_ADDRESS": "127.0.0.1"}
"""The staging stack publishes its edge on loopback here (nginx.publish_address)."""
FIGURES: dict[str, float] = {}


def _engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def staging():
    if not _engine():
        msg = "no Docker engine answers: run `sh ops/docker-engine.sh` (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    from infra.spec import load_spec
    from ops import images
    from testing.pulumi_mocks import run
    from tests.docker.apply import Harness
    saved = os.environ.get("RECON_NGINX__PUBLISH_ADDRESS")
    os.environ["RECON_NGINX__PUBLISH_ADDRESS"] = "127.0.0.1"
    try:
        spec = load_spec("staging")
    finally:
        os.environ.pop("RECON_NGINX__PUBLISH_ADDRESS") if saved is None else os.environ.__setitem__(
            "RECON_NGINX__PUBLISH_ADDRESS", saved)
    t0 = time.monotonic()
    report = images.build_all(spec, say=lambda m: print(m, flush=True))
    FIGURES["images_s"] = round(time.monotonic() - t0, 1)
    harness = Harness(run(spec, realistic=True), say=lambda m: print(m, flush=True))
    harness.destroy(spec.name)
    (spec.state_path / "release.json").unlink(missing_ok=True)  # a new stack: the declared slots are the truth
    try:
        applied = harness.apply()
        FIGURES["up_s"] = applied.seconds["containers"]
        harness.save_inventory(spec.state_path / "inventory.json")
        yield spec, harness, applied, report
    finally:
        harness.destroy(spec.name)
        (spec.state_path / "inventory.json").unlink(missing_ok=True)
        (spec.state_path / "release.json").unlink(missing_ok=True)
        print("\ndocker figures: " + json.dumps(FIGURES))


def fab(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([FAB, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def dexec(container: str, script: str, user: str | None = None) -> str:
    argv = ["docker", "exec"] + (["-u", user] if user else []) + [container, "sh", "-c", script]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"{container}: {script}: {res.stderr[-500:]}"
    return res.stdout.strip()


def test_status_is_green_and_names_what_does_not_run_here(staging):
    res = fab("status", "--stack", "staging", "--json")
    rows = {r["service"]: r for r in json.loads(res.stdout)}
    assert res.returncode == 0, [r for r in rows.values() if r["healthy"] is False]
    assert rows["postgres-primary"]["detail"].startswith("primary, 1 replica(s) streaming")
    assert rows["postgres-replica-1"]["detail"] == "replica, wal receiver streaming"
    assert {rows["grafana"]["state"], rows["jaeger"]["state"]} == {"NOT_AVAILABLE"}
    _, _, applied, _ = staging
    assert set(applied.skipped) >= {"recon-staging-grafana", "recon-staging-jaeger"}
    assert len(applied.containers) >= 19


def test_the_service_answers_through_nginx_over_tls(staging):
    spec = staging[0]
    token = dexec("recon-staging-backend-blue-1", "python -m app token create --role operator --name docker-test")
    token = token.splitlines()[-1]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the program's self-signed staging certificate
    with httpx.Client(base_url=f"https://127.0.0.1:{spec.nginx.https_port}", verify=ctx, timeout=10) as c:
        assert c.get("/health").json() == {"status": "ok", "service": "nginx"}
        created = c.post("/api/v1/reconciliations", json={"name": "on docker"},
                         headers={"Authorization": f"Bearer {token}"})
        assert created.status_code == 201, created.text
        listed = c.get("/api/v1/reconciliations", headers={"Authorization": f"Bearer {token}"})
        assert "on docker" in listed.text
    cert = ssl.get_server_certificate(("127.0.0.1", spec.nginx.https_port))
    assert "BEGIN CERTIFICATE" in cert  # a real certificate from the tls resources the program declares


def test_the_service_runs_as_its_least_privileged_role(staging):
    """The migration job ran as the owner role; the backend's DSN logs in as the runtime role,
    which cannot change the audit log or the schema (the local probes: tests/security)."""
    pg = staging[0].postgres
    script = "\n".join([
        "import os, psycopg",
        "c = psycopg.connect(os.environ['RECON_DATABASE_URL'], autocommit=True)",
        "print(*c.execute(\"SELECT current_user, pg_get_userbyid(relowner) FROM pg_class "
        "WHERE relname = 'audit_log'\").fetchone())",
        "c.execute('SELECT refresh_bulk_statistics()')",
        "for s in ('DELETE FROM audit_log', 'UPDATE audit_log SET actor = actor', 'CREATE TABLE probe (x int)'):",
        "    try:",
        "        c.execute(s)",
        "        print('allowed:', s)",
        "    except psycopg.errors.InsufficientPrivilege:",
        "        print('denied')"])
    out = dexec("recon-staging-backend-blue-1", f"python -c {shlex.quote(script)}").splitlines()
    assert out == [f"{pg.user} {pg.owner_user}", "denied", "denied", "denied"]


def test_redis_and_sentinels_refuse_anonymous_clients_and_each_user_has_only_its_rights(staging):
    """The containers' Redis has one ACL user per consumer and the default user off, the
    Sentinels their own password (the local probes: tests/security)."""
    def run(container: str, script: str) -> str:
        res = subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True,
                             timeout=60)
        return (res.stdout + res.stderr).strip()

    assert "NOAUTH" in run("recon-staging-redis-primary", "redis-cli -p 6379 PING")
    assert "NOAUTH" in run("recon-staging-sentinel-1", "redis-cli -p 26379 PING")
    assert run("recon-staging-redis-primary", f"{REDIS_CLI} -p 6379 PING") == "PONG"
    app = ('python -c "import os, redis; r = redis.Redis(host=\'redis-primary\', username=\'app\', '
           'password=os.environ[\'RECON_REDIS_PASSWORD\']); print(r.set(\'recon:probe\', 1, ex=10)); '
           'r.config_get(\'dir\')" 2>&1 | tail -1')
    out = run("recon-staging-backend-blue-1", app)
    assert "NoPermissionError" in out or "NOPERM" in out, out


def test_every_postgresql_connection_is_tls_verified_against_the_stacks_certificate(staging):
    """The containers' counterpart of tests/security's PostgreSQL TLS probes: every TCP session
    on both nodes (service, worker, exporter, replication) is encrypted; a client asking for no
    encryption is refused (hostssl only); the certificate names the nodes, so verify-full to a
    name it does not carry fails (the clients really verify)."""
    psql = 'PGPASSWORD="$RECON_SUPERUSER_PASSWORD" psql -X -At -h /tmp -U postgres -d postgres -c'
    sessions = "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) " \
               "WHERE a.client_addr IS NOT NULL"
    for node in ("postgres-primary", "postgres-replica-1"):
        total, encrypted = dexec(f"recon-staging-{node}", f"{psql} \"{sessions}\"").split("|")
        assert int(total) > 0 and total == encrypted, f"{node}: {encrypted} of {total} TCP sessions encrypted"
    walsenders = dexec("recon-staging-postgres-primary", f"{psql} \"SELECT s.ssl FROM pg_stat_replication r "
                                                       "JOIN pg_stat_ssl s USING (pid)\"")
    assert walsenders == "t", "replication streams over TLS"
    probe = "\n".join([
        "import os, psycopg",
        "url = os.environ['RECON_DATABASE_URL'].split('?')[0]",
        "for extra in ('?sslmode=disable', '?sslmode=verify-full&sslrootcert=/etc/recon/secrets/postgres-ca.crt'):",
        "    target = url.replace('@postgres-primary:', '@recon-staging-postgres-primary:') if 'verify' in extra else url",
        "    try:",
        "        psycopg.connect(target + extra, connect_timeout=5).close()",
        "        print('connected')",
        "    except psycopg.OperationalError as exc:",
        "        print('refused:', 'no encryption' in str(exc) or 'does not match host name' in str(exc))"])
    out = dexec("recon-staging-backend-blue-1", f"python -c {shlex.quote(probe)}").splitlines()
    assert out == ["refused: True", "refused: True"], out


def test_replication_streams_and_the_replica_refuses_writes(staging):
    psql = 'PGPASSWORD="$RECON_SUPERUSER_PASSWORD" psql -X -At -h /tmp -U postgres -d recon -c'
    rows = dexec("recon-staging-postgres-primary", f"{psql} \"SELECT application_name, state FROM pg_stat_replication\"")
    assert rows.endswith("|streaming")
    refused = subprocess.run(["docker", "exec", "recon-staging-postgres-replica-1", "sh", "-c",
                              f"{psql} \"CREATE TABLE nope (x int)\""], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "read-only transaction" in refused.stderr


def test_sentinels_agree_on_one_master_with_quorum(staging):
    answers = {dexec(f"recon-staging-sentinel-{i}", f"{SENTINEL_CLI} -p 26379 SENTINEL get-master-addr-by-name recon")
               for i in (1, 2, 3)}
    assert answers == {"redis-primary\n6379"}
    assert dexec("recon-staging-sentinel-1", f"{SENTINEL_CLI} -p 26379 SENTINEL ckquorum recon").startswith("OK")


def _pid1(host) -> tuple[str, int]:
    """(command name, effective uid) of the container's main process, from /proc (the images
    carry no ps, ss or netstat: nothing a service does not need)."""
    status = dict(line.split(":", 1) for line in host.file("/proc/1/status").content_string.splitlines() if ":" in line)
    return status["Name"].strip(), int(status["Uid"].split()[1])


def test_containers_with_testinfra(staging):
    """testinfra's docker backend, as against the local stack: processes, users, files."""
    import testinfra
    pg = testinfra.get_host("docker://recon-staging-postgres-primary")
    assert _pid1(pg) == ("postgres", 10001), "the postmaster runs as the service user"
    assert pg.run("pg_isready -q -h postgres-primary -p 5432").rc == 0  # on its network address
    assert pg.file("/var/lib/postgresql/data/pgdata").mode == 0o700
    nginx = testinfra.get_host("docker://recon-staging-nginx")
    assert _pid1(nginx) == ("nginx", 10001), "nginx runs as the unprivileged service user"
    assert nginx.file("/etc/recon/tls/server.key").mode == 0o600
    app = testinfra.get_host("docker://recon-staging-backend-blue-1")
    assert _pid1(app)[1] == 10001 and app.file("/srv/recon/app/__init__.py").exists
    assert not app.file("/opt/venv/bin/pip").exists, "no package installer left in the app image"


def test_the_app_image_holds_exactly_the_locked_versions(staging):
    """One source of versions: requirements.lock's runtime closure is what the image has."""
    from infra import images
    ref = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", "recon-staging-backend-blue-1"],
                         capture_output=True, text=True, timeout=30).stdout.strip()
    script = ("import importlib.metadata as m, json; "
              "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version for d in m.distributions()}))")
    res = subprocess.run(["docker", "run", "--rm", "--entrypoint", "python", ref, "-c", script],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    installed = json.loads(res.stdout)
    locked = {line.split("==")[0]: line.split("==")[1].split()[0] for line in images.runtime_requirements()}
    assert installed == locked


def _prometheus(spec, query: str) -> list[dict]:
    with httpx.Client(base_url=f"http://127.0.0.1:{spec.prometheus.port}", timeout=10) as c:
        res = c.get("/api/v1/query", params={"query": query})
    assert res.status_code == 200, res.text
    return res.json()["data"]["result"]


def test_wal_archiving_runs_in_the_database_containers(staging):
    """archive_command pushes every WAL segment to the pgBackRest repository on the volume the
    database containers share; a forced switch is archived, nothing has failed."""
    psql = 'PGPASSWORD="$RECON_SUPERUSER_PASSWORD" psql -X -At -h /tmp -U postgres -d postgres -c'
    before = int(dexec("recon-staging-postgres-primary", f"{psql} \"SELECT archived_count FROM pg_stat_archiver\""))
    dexec("recon-staging-postgres-primary", f"{psql} \"SELECT pg_switch_wal() FROM (SELECT txid_current()) t\"")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = dexec("recon-staging-postgres-primary",
                    f"{psql} \"SELECT archived_count, failed_count, archive_mode FROM pg_stat_archiver, "
                    "(SELECT setting AS archive_mode FROM pg_settings WHERE name = 'archive_mode') s\"")
        archived, failed, mode = row.split("|")
        if int(archived) > before:
            break
        time.sleep(0.5)
    assert (mode, failed) == ("on", "0") and int(archived) > before, row
    segments = dexec("recon-staging-postgres-replica-1", "find /var/lib/backup/pgbackrest/repo1/archive -name '0*' | wc -l")
    assert int(segments) >= 1, "the replica's container sees the same repository (it archives after a failover)"


def test_fab_backup_on_staging_makes_a_verified_set_and_feeds_backup_too_old(staging):
    """`fab backup --stack staging` through `docker exec`: pgBackRest in the primary's container,
    the logical dump, Redis's RDB from the master's container, the configs, a manifest, verify;
    then `fab backups` and `fab backup.verify` read it back, and the BackupTooOld metric reaches
    Prometheus through node-exporter's textfile directory (a volume shared with the database)."""
    spec = staging[0]
    if not any(r["id"] for r in json.loads(fab("backups", "--stack", "staging", "--json").stdout or "[]")):
        # a new stack has no backup: the alert is on its way (absent metric), the backup stops it
        deadline = time.monotonic() + 60  # the rules' first evaluation on a stack just up
        while not _prometheus(spec, 'ALERTS{alertname="BackupTooOld"}'):
            assert time.monotonic() < deadline, "BackupTooOld should be pending before any backup"
            time.sleep(2)
    t0 = time.monotonic()
    res = fab("backup", "--stack", "staging", timeout=600)
    FIGURES["backup_s"] = round(time.monotonic() - t0, 1)
    assert res.returncode == 0, res.stderr[-2000:]
    set_id = res.stdout.strip().splitlines()[-1]
    listed = json.loads(fab("backups", "--stack", "staging", "--json").stdout)
    row = next(r for r in listed if r["id"] == set_id)
    assert (row["tier"], row["type"], row["verified"], row["status"]) == ("daily", "diff" if len(listed) > 1 else
                                                                          row["type"], True, "ok")
    verify = fab("backup.verify", "--stack", "staging", "--backup", set_id, "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)[0]["ok"] is True, verify.stdout + verify.stderr
    files = dexec("recon-staging-redis-primary", f"ls /var/lib/backup/sets/{set_id} /var/lib/backup/sets/{set_id}/redis")
    assert {"manifest.json", "logical.dump", "files.tar.gz", "dump.rdb"} <= set(files.split())
    archived = dexec("recon-staging-postgres-primary", f"tar -tzf /var/lib/backup/sets/{set_id}/files.tar.gz")
    assert "./postgres/primary/postgresql.conf" in archived and "secrets" not in archived
    deadline = time.monotonic() + 120  # a scrape, then the rule's next evaluation
    while True:
        ages = _prometheus(spec, 'time() - recon_backup_last_success_timestamp_seconds{stack="staging"}')
        alert = _prometheus(spec, 'ALERTS{alertname="BackupTooOld"}')
        if (ages and not alert) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert ages and float(ages[0]["value"][1]) < 600, ages
    assert alert == [], f"BackupTooOld still {alert[0]['metric']['alertstate']} after the backup"
    cron = fab("backup.schedule", "--stack", "staging", "--dry-run")
    assert cron.returncode == 0 and "backup --stack staging" in cron.stdout, cron.stdout + cron.stderr


PSQL_RECON = 'PGPASSWORD="$RECON_SUPERUSER_PASSWORD" psql -X -At -h /tmp -U postgres -d recon -c'


def _markers() -> set[str]:
    out = dexec("recon-staging-postgres-primary", f"{PSQL_RECON} \"SELECT name FROM reconciliations WHERE name LIKE 'marker-%'\"")
    return set(out.split())


def _dumpall() -> str:
    """The whole cluster, as the drill on the local target compares it (role verifiers masked:
    they are re-salted when set again; \\restrict lines carry a random key per run)."""
    import re
    out = dexec("recon-staging-postgres-primary", 'PGPASSWORD="$RECON_SUPERUSER_PASSWORD" pg_dumpall -h /tmp -U postgres')
    text = "\n".join(ln for ln in out.splitlines() if not ln.startswith(("\\restrict ", "\\unrestrict ")))
    return re.sub(r"PASSWORD 'SCRAM-SHA-256\$[^']*'", "PASSWORD '<scram verifier>'", text)


def test_drill_on_docker_pitr_to_a_mark_lose_the_primary_restore_latest(staging):
    """The local drill (tests/backup/test_drill.py) on the docker stack: markers written through
    Nginx while a backup runs; `fab restore --target-time` brings back exactly the markers
    acknowledged before the mark; the primary's container killed and its data removed, `fab
    restore` (latest) loses at most archive_timeout_s of acknowledged writes; with no writes in
    between, a restore to latest gives the same cluster, dump for dump. Each restore ends with
    the container invariants (one writable primary, replica streaming, archiving, one Redis master)."""
    from tests.backup.drill import MarkerWriter, iso
    spec = staging[0]
    token = dexec("recon-staging-backend-blue-1", "python -m app token create --role operator --name drill").splitlines()[-1]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the program's self-signed staging certificate
    url = f"https://127.0.0.1:{spec.nginx.https_port}/api/v1/reconciliations"
    w = MarkerWriter(url, token, interval=0.25, context=ctx).start()
    time.sleep(2)
    assert fab("backup", "--stack", "staging", timeout=600).returncode == 0
    time.sleep(2)
    w.pause()
    before_mark = {n for n, _ in w.acked}
    mark = time.time()
    time.sleep(0.5)
    w.resume()
    time.sleep(4)
    w.stop()
    assert len(before_mark) > 10 and w.errors == 0 and w.acked[-1][1] > mark

    t0 = time.monotonic()
    res = fab("restore", "--stack", "staging", "--yes", "--target-time", iso(mark), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    FIGURES["pitr_restore_s"] = round(time.monotonic() - t0, 1)
    assert _markers() == before_mark
    report = json.loads(res.stdout)
    FIGURES["pitr_db_rto_s"] = round(report["db_rto_s"], 1)

    # the disaster: the primary's container killed, its data directory gone
    w = MarkerWriter(url, token, interval=0.25, context=ctx).start()
    time.sleep(spec.postgres.archive_timeout_s + 5)  # at least one timed WAL switch after the first writes
    w.stop()
    acked = list(w.acked)
    subprocess.run(["docker", "stop", "-t", "0", "recon-staging-postgres-primary"], check=True, timeout=60)
    image = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", "recon-staging-postgres-primary"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
    subprocess.run(["docker", "run", "--rm", "--volumes-from", "recon-staging-postgres-primary", "--network", "none",
                    "-u", "10001:10001", "--entrypoint", "sh", image, "-c", "rm -rf /var/lib/postgresql/data/pgdata"],
                   check=True, timeout=120)
    t0 = time.monotonic()
    res = fab("restore", "--stack", "staging", "--yes", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    FIGURES["disaster_restore_s"] = round(time.monotonic() - t0, 1)
    present = _markers()
    names = [n for n, _ in acked]
    lost = [n for n in names if n not in present]
    assert names[:len(names) - len(lost)] == [n for n in names if n in present], "survivors are a prefix"
    rpo = (acked[-1][1] - max(t for n, t in acked if n in present)) if lost else 0.0
    FIGURES.update({"rpo_s": round(rpo, 1), "writes_acked": len(acked), "writes_lost": len(lost),
                    "archive_timeout_s": spec.postgres.archive_timeout_s,
                    "disaster_db_rto_s": round(json.loads(res.stdout)["db_rto_s"], 1)})
    assert rpo <= spec.postgres.archive_timeout_s + 2, f"RPO {rpo:.1f}s: lost {len(lost)} acknowledged writes"

    # no writes in between: a restore to latest gives the same cluster
    assert fab("backup", "--stack", "staging", timeout=600).returncode == 0
    before = _dumpall()
    assert fab("restore", "--stack", "staging", "--yes", timeout=900).returncode == 0
    assert _dumpall() == before
    status = fab("status", "--stack", "staging", "--json")
    assert status.returncode == 0, status.stdout


def test_switch_and_rollback_on_docker_under_load_fail_no_request(staging):
    """`fab switch` and `fab rollback --stack staging` move traffic between the slots' containers
    (Nginx's config replaced in its volume, `nginx -t`, HUP) with the same gates as locally (the
    slot's health inside its containers; error rate and p95 from Prometheus with traffic
    flowing), while requests keep coming through Nginx: none fails. `fab deploy` says where
    versions change on this target."""
    import threading
    spec = staging[0]
    token = dexec("recon-staging-backend-blue-1", "python -m app token create --role viewer --name release").splitlines()[-1]
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # the program's self-signed staging certificate
    codes: list[int] = []
    slots: set[str] = set()
    stop = threading.Event()

    def load():
        with httpx.Client(base_url=f"https://127.0.0.1:{spec.nginx.https_port}", verify=ctx, timeout=10,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            while not stop.is_set():
                try:
                    r = c.get("/api/v1/reconciliations")
                    codes.append(r.status_code)
                    slots.add(r.headers.get("X-Recon-Slot", "?"))
                except httpx.HTTPError:
                    codes.append(0)
                time.sleep(0.1)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        switched = fab("switch", "--stack", "staging", timeout=600)
        assert switched.returncode == 0, switched.stderr[-3000:]
        assert "gate error-rate [green 0.1.0]: PASS" in switched.stderr, switched.stderr[-2000:]
        conf = dexec("recon-staging-prometheus", "cat /etc/recon/prometheus/prometheus.yml")
        assert "backend-green-1:8000" in conf and "backend-blue-1:8000" not in conf, "Prometheus follows the slot"
        t0 = time.monotonic()
        back = fab("rollback", "--stack", "staging", timeout=300)
        FIGURES["rollback_s"] = round(time.monotonic() - t0, 2)
        assert back.returncode == 0, back.stderr[-3000:]
        assert "10/10 probes through Nginx answered by blue" in back.stderr
    finally:
        stop.set()
        worker.join(timeout=15)
    failed = [c for c in codes if c != 200]
    FIGURES.update({"release_requests": len(codes), "release_failed": len(failed)})
    assert len(codes) > 100 and failed == [], f"{len(failed)} of {len(codes)} requests failed: {sorted(set(failed))}"
    assert slots == {"blue", "green"}
    deploy = fab("deploy", "--stack", "staging", "--version", "0.2.0")
    assert deploy.returncode == 2 and "pulumi up -s staging" in deploy.stderr, deploy.stderr
