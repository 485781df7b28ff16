"""The backup schedule: cron entries rendered from ``backup.schedule_*`` and installed on the
database host (``/etc/cron.d/recon-backup-<stack>``; a systemd-less host is the norm here).

Trap: the weekly full and the daily differential schedules must not fire at the same minute
on the same day, or the second finds pgBackRest's lock and fails; the defaults split the week
(full on Sunday, differential Monday to Saturday). Checked at render time.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from infra.render import render as render_template
from infra.services import is_secret_name
from infra.spec import REPO_ROOT, StackSpec
from ops.errors import BadInput

CRON_DIR = "/etc/cron.d"
LOCAL_ONLY = ("RECON_OPERATOR", "RECON_STACK", "RECON_TEST_STACK", "RECON_TEST_ALLOW_NO_STACK")
"""Variables that say who runs a task or pick a stack by name (the cron line names it)."""
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
FIELD_NAMES = ["minute", "hour", "day of month", "month", "day of week"]


def path(spec: StackSpec) -> str:
    return f"{CRON_DIR}/recon-backup-{spec.name}"


def check_field(key: str, text: str) -> None:
    """Each cron field is *, */n, a number, a range or a list of them, inside its range."""
    for i, (field, (lo, hi)) in enumerate(zip(text.split(), RANGES)):
        for part in field.split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                raise BadInput(f"{key}: {FIELD_NAMES[i]} {field!r} has step {step!r}; allowed: a number")
            if base == "*":
                continue
            for n in base.split("-"):
                if not n.isdigit() or not lo <= int(n) <= hi:
                    raise BadInput(f"{key}: {FIELD_NAMES[i]} {field!r}; allowed: *, numbers {lo}..{hi}, "
                                   f"ranges a-b, lists a,b and steps */n")


def stack_environment(environ: dict[str, str]) -> dict[str, str]:
    """The ``RECON_*`` overrides that define this stack beyond its file: the cron lines need
    them, or they back up another stack (the file's, with the default state directory and
    ports). Secrets never go into a cron file: a stack that needs one there is refused."""
    env = {k: v for k, v in sorted(environ.items()) if k.startswith("RECON_") and k not in LOCAL_ONLY}
    secret = [k for k in env if is_secret_name(k)]
    if secret:
        raise BadInput(f"this stack is defined with secret overrides in the environment ({', '.join(secret)}); "
                       "allowed: a schedule for a stack whose secrets live in its secrets store. Unset them, "
                       "or run the backups from your own scheduler with that environment")
    bad = [k for k, v in env.items() if "\n" in v or "%" in v]
    if bad:
        raise BadInput(f"environment overrides {', '.join(bad)} hold a newline or '%'; allowed: values a cron "
                       "line can carry")
    return env


def render(spec: StackSpec, user: str = "root", environ: dict[str, str] | None = None) -> str:
    """The cron file; ``environ`` (the operator's environment) supplies the stack's RECON_* overrides."""
    env = stack_environment(environ or {})
    b = spec.backup
    for key in ("schedule_full", "schedule_diff", "schedule_incr", "schedule_archive"):
        check_field(f"backup.{key}", getattr(b, key))
    if b.schedule_full == b.schedule_diff:
        raise BadInput(f"backup.schedule_diff {b.schedule_diff!r} equals backup.schedule_full; allowed: "
                       "different times (both would take pgBackRest's lock at once)")
    fab = shlex.quote(str(Path(sys.executable).parent / "fab"))
    return render_template("cron/recon-backup.cron.j2", spec=spec, repo=shlex.quote(str(REPO_ROOT)), fab=fab,
                           user=user, log_dir=shlex.quote(str(spec.state_path / "log")), env=env)




def install(site, text: str) -> str:
    """Write the cron file on the database host, 0644, atomically (as the admin user). On the
    docker target, on this machine: the one whose engine runs the containers and whose cron
    runs ``fab backup --stack <stack>`` through it (containers run no cron)."""
    import base64

    from ops.executors import executor
    blob = base64.b64encode(text.encode()).decode()
    dest = path(site.spec)
    ex = site.ex if site.spec.target == "local" else executor("local")
    ex.run(f"printf %s {blob} | base64 -d > {shlex.quote(dest + '.tmp')} && chmod 0644 "
                f"{shlex.quote(dest + '.tmp')} && mv {shlex.quote(dest + '.tmp')} {shlex.quote(dest)}",
                user=site.admin_user)
    return dest
