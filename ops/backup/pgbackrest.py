"""The pgBackRest command line, run on the database host through an executor.

Every call is ``pgbackrest --config=<rendered conf> --config-include-path=<secrets>/pgbackrest
--stanza=<stanza> <command>``. The cipher passes come from ``cipher.conf`` in the include
path (0600, written by the target from the stack's secrets), or, when the operator sets
``backup.cipher_pass`` (``RECON_BACKUP__CIPHER_PASS``), from ``PGBACKREST_REPO<n>_CIPHER_PASS``
in the command's environment, which pgBackRest ranks above its config files. Neither is ever
on argv, in the rendered config or in the run log.

Trap: pgBackRest reaches PostgreSQL only through its unix socket; libpq looks the password up
in ``<include>/pgpass`` under the socket directory's path, not under "localhost".
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from infra.pgbackrest import BackupPaths, base_argv
from ops.backup.hostjob import HostJob
from ops.errors import BackupError
from ops.executors import CommandFailed, Executor, Result

BACKUP_TYPES = ("full", "diff", "incr")
WAL_FILE = re.compile(r"^[0-9A-F]{24}(-[0-9a-f]{40})?(\.\w+)?$")
SEGMENTS_PER_LOG = 0x100  # 16 MiB segments: 256 per 4 GiB "log" file number


def segment_number(name: str) -> int:
    """Absolute position of a WAL segment, whatever its timeline: ``000000020000000100000003`` -> 259."""
    return int(name[8:16], 16) * SEGMENTS_PER_LOG + int(name[16:24], 16)


def wal_name(timeline: int, number: int) -> str:
    return f"{timeline:08X}{number // SEGMENTS_PER_LOG:08X}{number % SEGMENTS_PER_LOG:08X}"


@dataclass
class BackupInfo:
    label: str
    type: str
    repo: int
    start: int
    stop: int
    lsn_start: str | None
    lsn_stop: str | None
    wal_start: str | None
    wal_stop: str | None
    size: int
    repo_size: int
    prior: str | None


class PgBackRest:
    """pgBackRest on one host, through ``executor``."""

    def __init__(self, executor: Executor, paths: BackupPaths, stanza: str, cipher_pass: str | None = None):
        self.ex = executor
        self.paths = paths
        self.stanza = stanza
        self._cipher = cipher_pass

    @property
    def env(self) -> dict[str, str]:
        env = {"PGPASSFILE": self.paths.pgpass}
        if self._cipher:
            env["PGBACKREST_REPO1_CIPHER_PASS"] = self._cipher
            env["PGBACKREST_REPO2_CIPHER_PASS"] = self._cipher
        return env

    def argv(self, *args: str) -> str:
        return shlex.join(base_argv(self.paths, self.stanza) + list(args))

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> Result:
        return self.ex.run(self.argv(*args), env=self.env, timeout=timeout, check=check)

    def version(self) -> str:
        return self.ex.run("pgbackrest version", timeout=30).stdout.strip()

    def info(self, repo: int | None = None) -> dict:
        args = ["info", "--output=json"] + ([f"--repo={repo}"] if repo else [])
        try:
            doc = json.loads(self.run(*args, timeout=60).stdout, strict=False)
        except CommandFailed as exc:
            raise BackupError(f"pgbackrest info failed: {_reason(exc.result)}") from exc
        for st in doc:
            if st["name"] == self.stanza:
                if st["status"]["code"] not in (0, 2, 4):  # 2: no valid backups yet, 4: repos differ
                    raise BackupError(f"stanza {self.stanza!r}: {st['status']['message']}")
                for repo_st in st.get("repo", []):
                    if repo_st["status"]["code"] not in (0, 2):
                        raise BackupError(f"stanza {self.stanza!r} repo{repo_st['key']}: "
                                          f"{repo_st['status']['message']}")
                return st
        raise BackupError(f"stanza {self.stanza!r} not found in the repository")

    def backups(self) -> list[BackupInfo]:
        out = []
        for b in self.info().get("backup", []):
            out.append(BackupInfo(
                label=b["label"], type=b["type"], repo=b["database"]["repo-key"],
                start=b["timestamp"]["start"], stop=b["timestamp"]["stop"],
                lsn_start=(b.get("lsn") or {}).get("start"), lsn_stop=(b.get("lsn") or {}).get("stop"),
                wal_start=(b.get("archive") or {}).get("start"), wal_stop=(b.get("archive") or {}).get("stop"),
                size=b["info"]["size"], repo_size=b["info"]["repository"]["delta"], prior=b.get("prior")))
        return out

    def start_backup(self, type_: str, repo: int) -> HostJob:
        if type_ not in BACKUP_TYPES:
            raise ValueError(f"unknown backup type {type_!r}; one of {BACKUP_TYPES}")
        cmd = self.argv(f"--repo={repo}", f"--type={type_}", "backup")
        return HostJob.start(self.ex, self.paths.jobs, f"backup-{type_}", cmd, env=self.env)

    def verify(self, repo: int) -> Result:
        return self.run(f"--repo={repo}", "verify", "--log-level-console=info", timeout=3600, check=False)

    def check(self) -> Result:
        return self.run("check", timeout=120, check=False)

    def archive_segments(self, timeline: int | None = None) -> list[tuple[int, str, float]]:
        """Archived WAL segments in any repository (archive-get falls back from one to the next):
        (absolute segment number, file name, archived at), oldest first, one entry per number.

        ``timeline``: the segments a recovery on that timeline reads: its own, and below its first
        segment its ancestors' (the newest lower timeline's). A segment number that only another
        branch has (a timeline a PITR abandoned, with WAL past the branch point; or a higher one a
        rolled-back restore left) must not fill a gap in it. None: the newest timeline's per
        number. Posix repositories only."""
        archs = " ".join(shlex.quote(f"{self.paths.repo(n)}/archive/{self.stanza}") for n in (1, 2))
        res = self.ex.run(f"find {archs} -type f -name '0*' -printf '%f %T@\\n' 2>/dev/null",
                          timeout=60, check=False)
        files = []
        for line in res.stdout.split("\n"):
            fname, _, stamp = line.strip().partition(" ")
            if WAL_FILE.match(fname):  # not .history, .partial, backup labels
                files.append((segment_number(fname), int(fname[:8], 16), fname, float(stamp)))
        if timeline is not None:
            first = min((n for n, tl, _, _ in files if tl == timeline), default=None)
            files = [f for f in files if f[1] == timeline or (f[1] < timeline and (first is None or f[0] < first))]
        by_number: dict[int, tuple[int, str, float]] = {}
        for number, tl, name, mtime in files:
            if number not in by_number or tl > by_number[number][0]:
                by_number[number] = (tl, name, mtime)
        return [(n, by_number[n][1], by_number[n][2]) for n in sorted(by_number)]

    def wal_coverage(self, backup: BackupInfo, timeline: int | None = None) -> tuple[float, float, str | None]:
        """(from, to, first missing segment) that WAL archived since ``backup`` lets a restore reach
        on ``timeline`` (None: the newest): ``to`` is when the last segment before the first gap
        was archived (None: no gap)."""
        start = segment_number(backup.wal_start) if backup.wal_start else None
        segments = [s for s in self.archive_segments(timeline) if start is None or s[0] >= start]
        covered_to, missing, expected = float(backup.stop), None, start
        for number, _, mtime in segments:
            if expected is not None and number != expected:
                missing = wal_name(1, expected)[8:]
                break
            covered_to, expected = max(covered_to, mtime), number + 1
        return float(backup.stop), covered_to, missing

    def restore_argv(self, pg_path: str, *, set_label: str | None, target_time: str | None,
                     repo: int, restore_cmd: str, timeline: int | None = None) -> str:
        """``timeline``: follow this timeline (the live primary's), not the newest in the archive,
        which may be an abandoned branch (a restore that was rolled back promoted once)."""
        args = [f"--repo={repo}", f"--pg1-path={pg_path}", "--archive-mode=preserve",
                f"--recovery-option=restore_command={restore_cmd}"]
        if timeline:
            args.append(f"--target-timeline={timeline}")
        if set_label:
            args.append(f"--set={set_label}")
        if target_time:
            args += ["--type=time", f"--target={target_time}", "--target-action=promote"]
        else:
            args += ["--type=default"]
        return self.argv(*args, "restore")


def _reason(res: Result) -> str:
    text = (res.stderr or res.stdout).strip()
    lines = [ln for ln in text.splitlines() if "ERROR" in ln] or text.splitlines()[-3:]
    return " / ".join(ln.strip() for ln in lines)[-600:]
