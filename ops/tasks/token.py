"""``fab token.create``, ``fab token.list``, ``fab token.revoke``: API tokens, without the
service's environment by hand. People sign in to the UI (``/ui``) with these tokens.

    fab token.create --role operator --name alice   the token, once, on stdout (nothing else there)
    fab token.list [--stack S]                      id, role, state, prefix, name; never a value
    fab token.revoke ID --yes                       revoke; its UI sessions end at once
    fab token.first-admin                           the UI's address and the first admin token's file

Where it runs: ``python -m app token ...`` (app/__main__.py), the service's own command.

    local target                 on this machine, with the stack's service environment
                                 (``infra.local.processes.run_app``, as ``fab demo`` does)
    docker / kubernetes targets  in a backend container, through the stack's inventory executor
                                 (``docker exec`` / ``kubectl exec``), whose environment is the service's

create and revoke print their plan with ``--dry-run`` and append a record to the stack's run log
(who, when, role and name or id, the command, exit code, duration); the token itself never
enters the log or stderr. revoke is destructive (it cannot be undone) and needs ``--yes``.

:func:`first_admin_token` keeps the stack's first admin token in a 0600 file of its secrets
(``<state>/secrets/admin-token``), created once, so that ``make up`` can say where it is.

Trap: a token's value exists only in the output of ``token.create`` (and in that file for the
first admin); the database keeps its SHA-256. Lost means: revoke it and create another.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from invoke import Collection, task

from ops.console import progress, table
from ops.errors import InventoryError, OpsError, TargetFailed, UsageError
from ops.tasks.shared import STACK_HELP, guarded, spec_of

ROLES = ("viewer", "operator", "admin")


class TokenCommandFailed(OpsError):
    """``python -m app token ...`` ran and refused; the message is its own ``error:`` line only
    (never its stdout, which holds the token on success)."""

FIRST_ADMIN = "admin-token"
"""File name of the first admin token under the local stack's secrets directory."""


class TokenCommand:
    """``python -m app token ARGS`` on the stack's backend; returns (exit code, stdout, stderr)."""

    def __init__(self, spec) -> None:  # type: ignore[no-untyped-def]
        self.spec = spec

    def where(self) -> str:
        return "this machine (local target)" if self.spec.target == "local" else f"a backend of {self.spec.name!r}"

    def run(self, *args: str) -> tuple[int, str, str]:
        if self.spec.target == "local":
            return self._local(*args)
        return self._remote(*args)

    def _local(self, *args: str) -> tuple[int, str, str]:
        from ops.tasks.app import app_command
        from ops.tasks.shared import local_target

        target = local_target(self.spec, "token")
        if not target.supervisor.running():
            raise TargetFailed(f"stack {self.spec.name!r} is not running; start it with `fab up`")
        res = app_command(target, "token", *args, capture=True)
        return res.returncode, res.stdout, res.stderr

    def _remote(self, *args: str) -> tuple[int, str, str]:
        from ops.inventory import load_inventory

        backends = load_inventory(self.spec).of_kind("backend")
        if not backends:
            raise InventoryError(f"stack {self.spec.name!r} has no backend in its inventory to run "
                                 "`python -m app token` on")
        res = backends[0].executor.run(shlex.join(["python", "-m", "app", "token", *args]), check=False)
        return res.exit_code, res.stdout, res.stderr


def _failed(code: int, stderr: str) -> TokenCommandFailed:
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    reason = last[-1].removeprefix("error: ") if last else "no message"
    return TokenCommandFailed(f"`python -m app token` exited {code}: {reason}")


def _run_log(spec):  # type: ignore[no-untyped-def]
    from ops.inventory import load_inventory

    return load_inventory(spec).run_log


def create_token(spec, role: str, name: str, *, dry_run: bool = False) -> str | None:  # type: ignore[no-untyped-def]
    """Create a token on the stack; its value (``None`` on a dry run). Errors name the bad value."""
    from ops.runlog import Run

    if role not in ROLES:
        raise UsageError(f"--role: got {role!r}; one of {', '.join(ROLES)}")
    if not name or not name.strip() or len(name) > 200:
        raise UsageError(f"--name: got {name!r}; 1 to 200 characters")
    cmd = TokenCommand(spec)
    argv = ["create", "--role", role, "--name", name]
    out: dict[str, str] = {}
    with Run(_run_log(spec), "token.create", {"stack": spec.name, "role": role, "name": name},
             dry_run=dry_run) as run:
        def go() -> int:
            code, stdout, stderr = cmd.run(*argv)
            if code != 0:
                raise _failed(code, stderr)
            out["token"] = stdout.strip().splitlines()[-1]
            return 0

        run.step(f"create a {role} token named {name!r} on {cmd.where()}",
                 shlex.join(["python", "-m", "app", "token", *argv]), go)
    return out.get("token")


def first_admin_token(target) -> Path:  # type: ignore[no-untyped-def]
    """The local stack's first admin token file (0600), created once; returns its path."""
    from infra.local.secrets import write_secret_file

    path = Path(target.root) / "secrets" / FIRST_ADMIN
    if path.exists() and path.read_text().strip():
        return path
    token = create_token(target.spec, "admin", "first admin (make up)")
    assert token is not None
    write_secret_file(path, token + "\n")
    return path


@task(help={"role": f"one of {', '.join(ROLES)}", "name": "who or what the token is for (shown in the audit trail)",
            "stack": STACK_HELP, "dry-run": "print the command, create nothing"})
def create(c, role, name, stack=None, dry_run=False):  # type: ignore[no-untyped-def]
    """Create an API token and print it once on stdout (the UI's sign-in takes it)."""
    spec = spec_of(stack)
    token = guarded(lambda: create_token(spec, role, name, dry_run=dry_run))
    if token is not None:
        print(token)
        progress(f"{role} token {name!r} created; it is shown only this once. Sign in at /ui/ with it.")


@task(name="list", help={"stack": STACK_HELP})
def list_(c, stack=None):  # type: ignore[no-untyped-def]
    """List the stack's tokens: id, role, state, prefix, name (never a token's value)."""
    spec = spec_of(stack)

    def go() -> None:
        code, stdout, stderr = TokenCommand(spec).run("list")
        if code != 0:
            raise _failed(code, stderr)
        rows = []
        for line in stdout.splitlines():
            parts = line.split("\t")
            if len(parts) >= 6:
                rows.append({"id": parts[0], "role": parts[1], "state": parts[2], "prefix": parts[3],
                             "name": parts[4], "created": parts[5].removeprefix("created ")})
        print(table(rows, ["id", "role", "state", "prefix", "name", "created"]))

    guarded(go)


@task(help={"id": "the token's id (fab token.list)", "stack": STACK_HELP, "yes": "confirm: revoking cannot be undone",
            "dry-run": "print the command, revoke nothing"})
def revoke(c, id, stack=None, yes=False, dry_run=False):  # type: ignore[no-untyped-def]
    """Revoke a token: the API refuses it and its UI sessions end (needs --yes)."""
    from ops.runlog import Run

    spec = spec_of(stack)
    cmd = TokenCommand(spec)

    def go() -> None:
        if not str(id).isdigit():
            raise UsageError(f"token id: got {id!r}; a number from `fab token.list`")
        with Run(_run_log(spec), "token.revoke", {"stack": spec.name, "id": int(id)}, dry_run=dry_run,
                 yes=yes) as run:
            def step() -> int:
                code, stdout, stderr = cmd.run("revoke", str(id))
                if code != 0:
                    raise _failed(code, stderr)
                return 0

            run.step(f"revoke token {id} on {cmd.where()}", f"python -m app token revoke {int(id)}", step,
                     destructive=True)
        if not dry_run:
            progress(f"token {id} revoked")

    guarded(go)


def ui_address(spec) -> str:  # type: ignore[no-untyped-def]
    """The UI's address through the stack's Nginx."""
    if spec.nginx.tls:
        return f"https://{spec.host}:{spec.nginx.https_port}/ui/"
    return f"http://{spec.host}:{spec.nginx.http_port}/ui/"


@task(name="first-admin", help={"stack": STACK_HELP})
def first_admin(c, stack=None):  # type: ignore[no-untyped-def]
    """Say where the UI is and where the first admin token is kept (created on first call; local target)."""
    from ops.tasks.shared import local_target

    spec = spec_of(stack)
    target = local_target(spec, "token.first-admin")
    path = guarded(lambda: first_admin_token(target))
    print(f"UI:                {ui_address(spec)}")
    print(f"first admin token: {path} (mode 0600; sign in with it, then give people their own: "
          "fab token.create --role operator --name NAME)")


token_ns = Collection("token", create, list_, revoke, first_admin)
