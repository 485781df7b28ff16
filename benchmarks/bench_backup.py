"""Backup throughput and recovery time for a 1 GB database (pgbench scale 70), ours beside the
bare tools measured in the same run on the same machine, as ratios.

Targets (issue "Backups, PITR and DR drills"): database RTO <= 30 s from the start of
`fab restore` to the database accepting writes; full-system restore to healthy <= 90 s;
RPO <= 30 s (measured by the drill, tests/backup/test_drill.py, printed there).

    bare pg_basebackup (-Ft, to a scratch dir)               vs  fab backup --full
    bare pgbackrest backup --type=full                       vs  fab backup --full
    bare pgbackrest restore + postgres recovery to writable  vs  fab restore (db RTO, full RTO)

Runs a throwaway stack (ports +--offset, state in .state/bench-backup) and removes it.

    python benchmarks/bench_backup.py [--scale 70] [--offset 3500] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.services import PG_BIN  # noqa: E402
from tests.backup.drill import as_service_user, fab, psql, spec_of  # noqa: E402
from tests.fix_stack import SCRATCH, isolated_stack_env  # noqa: E402



def timed(argv, env=None, what=""):
    t0 = time.monotonic()
    res = subprocess.run(as_service_user(argv), capture_output=True, text=True, env={**os.environ, **(env or {})})
    if res.returncode != 0:
        sys.exit(f"{what or argv[0]} failed: {res.stderr[-2000:]}")
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--offset", type=int, default=3500)
    ap.add_argument("--keep", action="store_true", help="leave the stack running")
    a = ap.parse_args()
    state = SCRATCH / "bench-backup"
    env = isolated_stack_env(state, a.offset)
    fab(env, "down", "--purge", "--yes", check=False)
    try:
        fab(env, "up", timeout=900)
        spec = spec_of(env)
        root = spec.state_path
        pgpass = {"PGPASSFILE": str(root / "secrets/pgbackrest/pgpass")}
        conn = ["-h", str(root / "run"), "-p", str(spec.postgres.port), "-U", "postgres"]
        print(f"loading pgbench scale {a.scale} ...", flush=True)
        timed([f"{PG_BIN}/pgbench", "-i", "-q", "-s", str(a.scale), *conn, spec.postgres.database], pgpass, "pgbench -i")
        size = int(psql(spec, f"SELECT pg_database_size('{spec.postgres.database}')"))
        fab(env, "backup", "--full", timeout=1800)  # the first full; what follows is measured
        scratch = root / "data" / "backup" / "bench"
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run(as_service_user(["mkdir", "-p", str(scratch)]), check=True)
        fig: dict[str, float] = {"db_bytes": size}

        # as a replica is cloned: the replication user over TCP (pg_hba admits replication there)
        repl = ["-h", spec.host, "-p", str(spec.postgres.port), "-U", spec.postgres.replication_user]
        fig["pg_basebackup_s"] = timed([f"{PG_BIN}/pg_basebackup", *repl, "-D", str(scratch / "base"), "-Ft",
                                        "-X", "fetch", "--checkpoint=fast", "--no-sync"],
                                       {"PGPASSFILE": str(root / "secrets/pgpass")}, "pg_basebackup")
        pgb = ["pgbackrest", f"--config={root}/conf/pgbackrest/pgbackrest.conf",
               f"--config-include-path={root}/secrets/pgbackrest", f"--stanza={spec.backup.stanza}"]
        fig["pgbackrest_full_s"] = timed([*pgb, "--type=full", "backup"], pgpass, "pgbackrest backup")
        t0 = time.monotonic()
        fab(env, "backup", "--full", timeout=1800)
        fig["fab_backup_full_s"] = time.monotonic() - t0

        # bare restore: pgbackrest restore into a scratch dir, then postgres on a spare port until writable
        target = scratch / "restore"
        fig["pgbackrest_restore_s"] = timed([*pgb, f"--pg1-path={target}", "--type=immediate",
                                             "--target-action=promote", "restore"], pgpass, "pgbackrest restore")
        port = spec.postgres.port + 50
        t0 = time.monotonic()
        pg = subprocess.Popen(as_service_user([f"{PG_BIN}/postgres", "-D", str(target), "-p", str(port),
                                               "-c", f"unix_socket_directories={scratch}", "-c", "archive_mode=off",
                                               "-c", "listen_addresses="]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while subprocess.run(as_service_user([f"{PG_BIN}/psql", "-h", str(scratch), "-p", str(port), "-U", "postgres",
                                              "-Atc", "SELECT txid_current() WHERE NOT pg_is_in_recovery()", "postgres"]),
                             capture_output=True, text=True, env={**os.environ, "PGPASSWORD": _su(root)}).stdout.strip() == "":
            time.sleep(0.1)
        fig["postgres_recovery_s"] = time.monotonic() - t0
        pg.terminate()
        pg.wait(timeout=60)
        fig["bare_restore_rto_s"] = fig["pgbackrest_restore_s"] + fig["postgres_recovery_s"]
        subprocess.run(as_service_user(["rm", "-rf", str(scratch)]), check=True)

        t0 = time.monotonic()
        report = json.loads(fab(env, "restore", "--yes", timeout=1800).stdout)
        fig["fab_restore_full_s"] = time.monotonic() - t0
        fig["fab_restore_db_rto_s"] = report["db_rto_s"]
        mib = size / 2**20
        print(json.dumps({k: round(v, 2) for k, v in fig.items()}, indent=1))
        print(f"\ndatabase {mib:.0f} MiB (pgbench scale {a.scale})")
        rows = [
            ("backup: fab backup --full vs pg_basebackup", fig["fab_backup_full_s"], fig["pg_basebackup_s"]),
            ("backup: fab backup --full vs bare pgbackrest", fig["fab_backup_full_s"], fig["pgbackrest_full_s"]),
            ("restore: fab restore db RTO vs bare pgbackrest restore + recovery",
             fig["fab_restore_db_rto_s"], fig["bare_restore_rto_s"]),
        ]
        for label, ours, bare in rows:
            print(f"  {label:68} {ours:6.1f}s vs {bare:6.1f}s  ratio {ours / bare:4.2f}  "
                  f"({mib / ours:6.0f} vs {mib / bare:6.0f} MiB/s)")
        print(f"  database RTO {fig['fab_restore_db_rto_s']:.1f}s (target <= 30s): "
              f"{'OK' if fig['fab_restore_db_rto_s'] <= 30 else 'MISSED'}")
        print(f"  full-system restore to healthy {fig['fab_restore_full_s']:.1f}s (target <= 90s): "
              f"{'OK' if fig['fab_restore_full_s'] <= 90 else 'MISSED'}")
    finally:
        if not a.keep:
            fab(env, "down", "--purge", "--yes", check=False)
            shutil.rmtree(state, ignore_errors=True)


def _su(root: Path) -> str:
    return json.loads((root / "secrets" / "secrets.json").read_text())["postgres_superuser"]


if __name__ == "__main__":
    main()
