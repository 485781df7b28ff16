"""Redis backup and restore, following Redis 7's documented procedures.

Backup (from the current master, found by asking each Redis its role):

1. RDB: note ``LASTSAVE``, ``BGSAVE``, wait until ``LASTSAVE`` changes and
   ``rdb_last_bgsave_status`` is ok, then copy ``dump.rdb`` (it is replaced atomically by
   rename, so a copy taken after the change is complete).
2. AOF (when ``appendonly`` is on): multi-part AOF lives in ``appenddirname``. Disable
   automatic rewrites (``auto-aof-rewrite-percentage 0``), wait until no rewrite is in
   progress, copy the directory (manifest + base + incr files), then restore the setting.
   Files of a rewrite that started meanwhile would be missing from the manifest, hence step 2's
   wait and a check that every file the manifest names was copied.

Restore (Redis stopped): into the primary's data dir. AOF on: the backup's AOF directory, or,
when the backup has only an RDB, an AOF directory whose manifest names that RDB as its base
(Redis 7 starts empty from an RDB alone when AOF is on). AOF off: ``dump.rdb``. Replicas'
files are removed so they resynchronise from the restored primary.
"""

from __future__ import annotations

import shlex
import time

from ops.errors import BackupError
from ops.executors import Executor

AOF_DIR = "appendonlydir"
BASE_NAME = "appendonly.aof.1.base.rdb"


class RedisCli:
    """redis-cli on the host, as ``user`` (an ACL user) with ``password`` in its environment."""

    def __init__(self, ex: Executor, host: str, port: int, password: str | None = None, user: str | None = None):
        self.ex, self.host, self.port, self.user = ex, host, port, user
        self.env = {"REDISCLI_AUTH": password} if password else None

    @property
    def base(self) -> list[str]:
        return ["redis-cli", "-h", self.host, "-p", str(self.port), "--no-auth-warning"] + \
            (["--user", self.user] if self.user else [])

    def __call__(self, *args: str, timeout: float = 30) -> str:
        cmd = shlex.join([*self.base, *args])
        out = self.ex.run(cmd, env=self.env, timeout=timeout).stdout.strip()
        if out.startswith("ERR") or out.startswith("(error)"):
            raise BackupError(f"redis {self.host}:{self.port} {' '.join(args)}: {out}")
        return out

    def info(self, section: str) -> dict[str, str]:
        out = {}
        for line in self("INFO", section).splitlines():
            if ":" in line and not line.startswith("#"):
                k, _, v = line.strip().partition(":")
                out[k] = v
        return out

    def config(self, key: str) -> str:
        lines = self("CONFIG", "GET", key).splitlines()
        return lines[1] if len(lines) > 1 else ""


def find_master(clis: list[RedisCli]) -> RedisCli:
    roles = []
    for cli in clis:
        try:
            role = cli.info("replication").get("role")
        except Exception as exc:  # a down replica is not the master; say which if none is
            roles.append(f"{cli.host}:{cli.port}: unreachable ({str(exc).splitlines()[0][:80]})")
            continue
        if role == "master":
            return cli
        roles.append(f"{cli.host}:{cli.port}: {role}")
    raise BackupError("no Redis master among " + "; ".join(roles))


def backup(cli: RedisCli, dest: str, timeout: float = 300) -> dict:
    """RDB (and AOF when on) of the master into ``dest`` on its host; returns manifest facts."""
    ex = cli.ex
    data_dir = cli.config("dir")
    # One round trip: BGSAVE and the LASTSAVE wait run on the host (each SSH call costs time).
    # POSIX sh: a container's shell may be dash (no $SECONDS).
    rc = shlex.join(cli.base)
    script = f"""set -u
before=$({rc} LASTSAVE)
deadline=$(($(date +%s) + {int(timeout)}))
while :; do out=$({rc} BGSAVE); case "$out" in *"in progress"*) sleep 0.1;; *) break;; esac
  [ "$(date +%s)" -gt $deadline ] && {{ echo "timeout: BGSAVE refused: $out"; exit 3; }}; done
case "$out" in *ERR*) echo "BGSAVE: $out"; exit 2;; esac
while :; do last=$({rc} LASTSAVE)
  if [ "$last" != "$before" ] && {rc} INFO persistence | grep -q '^rdb_bgsave_in_progress:0'; then break; fi
  [ "$(date +%s)" -gt $deadline ] && {{ echo "timeout: LASTSAVE did not change"; exit 3; }}; sleep 0.05; done
{rc} INFO persistence | grep '^rdb_last_bgsave_status:' | tr -d '\r'
echo "lastsave:$last"
"""
    res = ex.run(script, env=cli.env, timeout=timeout + 30, check=False)
    facts_out = dict(ln.split(":", 1) for ln in res.stdout.split() if ":" in ln)
    if res.exit_code != 0 or facts_out.get("rdb_last_bgsave_status") != "ok":
        raise BackupError(f"redis BGSAVE on {cli.host}:{cli.port} failed: {res.stdout.strip()[-300:]}")
    last = int(facts_out["lastsave"])
    dbfile = cli.config("dbfilename") or "dump.rdb"
    q = shlex.quote
    ex.run(f"mkdir -p {q(dest)} && cp {q(data_dir + '/' + dbfile)} {q(dest + '/dump.rdb')}")
    facts = {"source": f"{cli.host}:{cli.port}", "lastsave": last, "rdb": "dump.rdb", "aof": None,
             "appendonly": cli.config("appendonly") == "yes"}
    if facts["appendonly"]:
        facts["aof"] = _copy_aof(cli, data_dir, dest, timeout)
    return facts


def _copy_aof(cli: RedisCli, data_dir: str, dest: str, timeout: float) -> str:
    ex, q = cli.ex, shlex.quote
    aof_dir = cli.config("appenddirname") or AOF_DIR
    pct = cli.config("auto-aof-rewrite-percentage") or "100"
    cli("CONFIG", "SET", "auto-aof-rewrite-percentage", "0")
    try:
        t0 = time.monotonic()
        while cli.info("persistence").get("aof_rewrite_in_progress") != "0":
            if time.monotonic() - t0 > timeout:
                raise BackupError(f"redis {cli.host}:{cli.port}: an AOF rewrite is still running after {timeout:.0f}s")
            time.sleep(0.2)
        src, dst = f"{data_dir}/{aof_dir}", f"{dest}/{AOF_DIR}"
        ex.run(f"rm -rf {q(dst)} && cp -a {q(src)} {q(dst)}")
        manifest = ex.run(f"cat {q(dst)}/*.manifest").stdout
        named = [ln.split()[1] for ln in manifest.splitlines() if ln.startswith("file ")]
        have = set(ex.run(f"ls -1 {q(dst)}").stdout.split())
        missing = [n for n in named if n not in have]
        if missing:
            raise BackupError(f"redis AOF copy is missing files its manifest names: {missing}")
    finally:
        cli("CONFIG", "SET", "auto-aof-rewrite-percentage", pct)
    return AOF_DIR


def restore(ex: Executor, src: str, primary_dir: str, replica_dirs: list[str], appendonly: bool) -> str:
    """Put a backup's files in place (Redis stopped). Returns what was restored, for the log."""
    q = shlex.quote
    has_aof = ex.run(f"test -d {q(src + '/' + AOF_DIR)}", check=False).ok
    for d in [primary_dir, *replica_dirs]:
        ex.run(f"rm -rf {q(d + '/' + AOF_DIR)} {q(d + '/dump.rdb')}")
    ex.run(f"cp {q(src + '/dump.rdb')} {q(primary_dir + '/dump.rdb')}")
    if not appendonly:
        return "dump.rdb (AOF off)"
    if has_aof:
        ex.run(f"cp -a {q(src + '/' + AOF_DIR)} {q(primary_dir + '/' + AOF_DIR)}")
        return "AOF directory (AOF on)"
    aof = f"{primary_dir}/{AOF_DIR}"
    ex.run(f"mkdir -p {q(aof)} && cp {q(src + '/dump.rdb')} {q(aof + '/' + BASE_NAME)} && "
           f"printf 'file {BASE_NAME} seq 1 type b\\n' > {q(aof + '/appendonly.aof.manifest')}")
    return "RDB as the AOF base (AOF on, backup without AOF)"
