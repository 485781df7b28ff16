"""Command line: ``python -m app serve|worker|migrate|token|demo``.

Every command reads settings from ``RECON_*`` once and exits non-zero with a one-line,
operator-readable message on failure (no traceback for expected failures).
"""

from __future__ import annotations

import argparse
import sys

from app.settings import SettingsError, get_settings


class CliError(Exception):
    """An expected failure: printed as ``error: ...`` and exit status 1."""


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.logging import configure_logging
    from app.web import create_app

    settings = get_settings()
    configure_logging(settings.log_level, json_logs=settings.log_json, slot=settings.slot, version=settings.version)
    app = create_app(settings)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False,
                proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips, timeout_graceful_shutdown=20)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from app.jobs.worker import run_worker
    from app.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, json_logs=settings.log_json, slot=settings.slot, version=settings.version)
    return run_worker(settings, once=args.once, name=args.name)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from app.db import connect
    from app.db.migrate import MigrationError, migrate, unknown_versions

    settings = get_settings()
    try:
        with connect(settings) as conn:
            done = migrate(conn)
            unknown = unknown_versions(conn)
    except MigrationError as exc:
        raise CliError(str(exc)) from exc
    for mig in done:
        print(f"applied {mig.version:04d}_{mig.name}")
    if not done:
        print("database schema is up to date")
    if unknown:
        print(f"warning: database has migrations {unknown} unknown to this release (newer release ran)",
              file=sys.stderr)
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    from app import auth
    from app.db import connect

    settings = get_settings()
    with connect(settings) as conn:
        _require_schema(conn)
        if args.token_cmd == "create":
            try:
                token_id, token = auth.create_token(conn, name=args.name, role=args.role)
            except ValueError as exc:
                raise CliError(str(exc)) from exc
            conn.execute(
                "INSERT INTO audit_log (actor, action, entity, entity_id, after) VALUES "
                "('cli', 'token.create', 'api_token', %s, jsonb_build_object('name', %s::text, 'role', %s::text))",
                (str(token_id), args.name, args.role))
            conn.commit()
            print(token)
            print(f"token {token_id} ({args.role}, {args.name!r}) created; it is shown only once", file=sys.stderr)
        elif args.token_cmd == "revoke":
            if not auth.revoke_token(conn, args.id):
                raise CliError(f"no active token with id {args.id}")
            conn.execute("INSERT INTO audit_log (actor, action, entity, entity_id) VALUES "
                         "('cli', 'token.revoke', 'api_token', %s)", (str(args.id),))
            conn.commit()
            print(f"token {args.id} revoked")
        else:  # list
            rows = conn.execute("SELECT id, name, role, prefix, created_at, revoked_at, last_used_at "
                                "FROM api_tokens ORDER BY id").fetchall()
            for r in rows:
                state = "revoked" if r[5] else "active"
                print(f"{r[0]}\t{r[2]}\t{state}\t{r[3]}...\t{r[1]}\tcreated {r[4]:%Y-%m-%d %H:%M}")
    return 0


def _require_schema(conn) -> None:  # type: ignore[no-untyped-def]
    from app.db.migrate import applied

    if not applied(conn):
        raise CliError("the database has no schema yet; run `python -m app migrate` first")


def _cmd_demo(args: argparse.Namespace) -> int:
    from app.demo import DemoError, run_demo

    try:
        return run_demo(args.base_url, token=args.token, cacert=args.cacert, timeout=args.timeout)
    except DemoError as exc:
        raise CliError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description="Reconciliation service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                       help="proxies trusted for X-Forwarded-* (default: 127.0.0.1)")
    serve.set_defaults(func=_cmd_serve)

    worker = sub.add_parser("worker", help="run the durable job worker")
    worker.add_argument("--once", action="store_true", help="process at most one job, then exit")
    worker.add_argument("--name", default=None, help="worker name in job rows (default: host:pid)")
    worker.set_defaults(func=_cmd_worker)

    mig = sub.add_parser("migrate", help="apply versioned database migrations (idempotent)")
    mig.set_defaults(func=_cmd_migrate)

    token = sub.add_parser("token", help="manage API tokens")
    tsub = token.add_subparsers(dest="token_cmd", required=True)
    tcreate = tsub.add_parser("create", help="create a token and print it once")
    tcreate.add_argument("--role", required=True, choices=["admin", "operator", "viewer"])
    tcreate.add_argument("--name", required=True)
    trevoke = tsub.add_parser("revoke", help="revoke a token by id")
    trevoke.add_argument("id", type=int)
    tsub.add_parser("list", help="list tokens (never their values)")
    token.set_defaults(func=_cmd_token)

    demo = sub.add_parser("demo", help="upload the sample files, run a reconciliation, print the summary")
    demo.add_argument("--base-url", required=True)
    demo.add_argument("--cacert", default=None, help="CA bundle to verify the server's TLS certificate")
    demo.add_argument("--token", default=None, help="API token (operator or admin); default $RECON_TOKEN")
    demo.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the run")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # translate known lower-layer failures into one line
        from app.db import DatabaseUnavailable

        if isinstance(exc, DatabaseUnavailable):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
