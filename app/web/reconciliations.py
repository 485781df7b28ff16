"""Reconciliations, uploads (imports) and runs."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import importers, jobs, metrics
from app.auth import Principal
from app.db import Database
from app.engine import RuleSet
from app.web.deps import audit, content_disposition, database, error, require, services
from app.web.middleware import UPLOAD_OVERHEAD_BYTES, text_problems
from app.web.services import Services

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["reconciliations"])

_RECON_COLS = "id, name, status, rules, current_run_id, created_by, created_at, updated_at"
_IMPORT_COLS = ("id, reconciliation_id, side, filename, format, content_sha256, size_bytes, options, balances, "
                "record_count, created_by, created_at")


MAX_RULES = 100
"""Most rules one rule set may hold. The engine tries every rule on every record, and a list of
two million once held a backend for an hour (issue #12)."""
MAX_TOLERANCES = 1000
"""Most tolerance entries (currency -> tolerance) in one rule set, its own and its rules' together."""


def _bounded_rules(value: Any) -> Any:
    """Refuse an oversized rule set before any rule is validated (validation runs on the event loop)."""
    if not isinstance(value, dict):
        return value
    rules = value.get("rules")
    if isinstance(rules, list) and len(rules) > MAX_RULES:
        raise ValueError(f"{len(rules)} rules; a rule set holds at most {MAX_RULES}")
    tables = [value.get("tolerances"), *(rule.get("tolerances") for rule in rules or () if isinstance(rule, dict))]
    entries = sum(len(table) for table in tables if isinstance(table, dict))
    if entries > MAX_TOLERANCES:
        raise ValueError(f"{entries} tolerance entries; a rule set holds at most {MAX_TOLERANCES}")
    return value


class ReconciliationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    rules: RuleSet | None = Field(default=None, description=f"matching rules (at most {MAX_RULES}); default: "
                                  "the engine's defaults")

    _bounded = field_validator("rules", mode="before")(_bounded_rules)


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = Field(default=False, description="compute and report the summary, store no matches")
    rules: RuleSet | None = Field(default=None, description="override the reconciliation's rules for this run "
                                  f"(at most {MAX_RULES})")

    _bounded = field_validator("rules", mode="before")(_bounded_rules)


def _row(cur_row: Any, cols: str) -> dict[str, Any]:
    names = [c.strip() for c in cols.split(",")]
    return dict(zip(names, cur_row))


def get_reconciliation(db: Database, recon_id: int) -> dict[str, Any]:
    with db.primary() as conn:
        row = conn.execute(f"SELECT {_RECON_COLS} FROM reconciliations WHERE id = %s", (recon_id,)).fetchone()
    if row is None:
        raise HTTPException(404, f"reconciliation {recon_id} does not exist")
    return _row(row, _RECON_COLS)


@router.post("/reconciliations", status_code=201, summary="Create a reconciliation")
def create_reconciliation(body: ReconciliationIn, request: Request, db: Database = Depends(database),
                          who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    rules = body.rules.model_dump(mode="json") if body.rules else None
    with db.primary() as conn:
        row = conn.execute(f"INSERT INTO reconciliations (name, rules, created_by) VALUES (%s, %s, %s) "
                           f"RETURNING {_RECON_COLS}", (body.name, json.dumps(rules) if rules else None,
                                                        who.name)).fetchone()
        rec = _row(row, _RECON_COLS)
        audit(conn, request, who, "reconciliation.create", "reconciliation", rec["id"], after=rec)
    return rec


@router.get("/reconciliations", summary="List reconciliations, newest first")
def list_reconciliations(db: Database = Depends(database), _: Principal = Depends(require("viewer")),
                         limit: int = 50, before: int | None = None) -> dict[str, Any]:
    if not 1 <= limit <= 500:
        raise HTTPException(422, f"limit={limit} is out of range 1..500")
    with db.reader() as conn:
        rows = conn.execute(f"SELECT {_RECON_COLS} FROM reconciliations WHERE (%s::bigint IS NULL OR id < %s) "
                            "ORDER BY id DESC LIMIT %s", (before, before, limit)).fetchall()
    items = [_row(r, _RECON_COLS) for r in rows]
    return {"items": items, "next_before": items[-1]["id"] if len(items) == limit else None}


@router.get("/reconciliations/{recon_id}", summary="One reconciliation with its imports and latest runs")
def show_reconciliation(recon_id: int, db: Database = Depends(database),
                        _: Principal = Depends(require("viewer"))) -> dict[str, Any]:
    rec = get_reconciliation(db, recon_id)
    with db.primary() as conn:
        rec["imports"] = [_row(r, _IMPORT_COLS) for r in conn.execute(
            f"SELECT {_IMPORT_COLS} FROM imports WHERE reconciliation_id = %s ORDER BY id", (recon_id,))]
        rec["runs"] = [dict(zip(("id", "status", "dry_run", "created_at", "finished_at"), r)) for r in conn.execute(
            "SELECT id, status, dry_run, created_at, finished_at FROM runs WHERE reconciliation_id = %s "
            "ORDER BY id DESC LIMIT 20", (recon_id,))]
    return rec


@router.delete("/reconciliations/{recon_id}", status_code=204, summary="Delete a reconciliation and all its data")
def delete_reconciliation(recon_id: int, request: Request, db: Database = Depends(database),
                          who: Principal = Depends(require("admin"))) -> Response:
    rec = get_reconciliation(db, recon_id)
    with db.primary() as conn:
        # Lock order shared with uploads (FK key-share on the reconciliation) and the worker's
        # store transaction (run row): wait for them to commit, then see and delete their rows.
        # The bulk tables have no row-level foreign keys (migration 0003), hence explicit deletes.
        conn.execute("SELECT id FROM reconciliations WHERE id = %s FOR UPDATE", (recon_id,))
        runs = [r[0] for r in conn.execute("SELECT id FROM runs WHERE reconciliation_id = %s FOR UPDATE",
                                           (recon_id,))]
        conn.execute("DELETE FROM discrepancies WHERE run_id = ANY(%s)", (runs,))
        conn.execute("DELETE FROM match_items WHERE run_id = ANY(%s)", (runs,))
        conn.execute("DELETE FROM matches WHERE run_id = ANY(%s)", (runs,))
        conn.execute("DELETE FROM records WHERE reconciliation_id = %s", (recon_id,))
        conn.execute("DELETE FROM reconciliations WHERE id = %s", (recon_id,))
        audit(conn, request, who, "reconciliation.delete", "reconciliation", recon_id, before=rec)
    return Response(status_code=204)


# -- uploads ---------------------------------------------------------------------------------

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file", "side"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                "side": {"type": "string", "enum": ["left", "right"]},
                "options": {"type": "string", "description": "JSON object of ImportOptions (format, delimiter, "
                            "decimal, thousands, date_format, columns, sign, default_currency, sheet, ...)"},
            }}}},
    },
}
_UPLOAD_RESPONSES = {
    **error(409, "the same bytes were already imported into this reconciliation; body.existing_import is that "
            "import"),
    **error(413, "larger than RECON_MAX_UPLOAD_BYTES"),
    **error(415, "not multipart/form-data, or a file in no supported format"),
    **error(422, "malformed form or file: body.problems lists every problem (field, or line, column, reason)"),
}


def _reject(status: int, outcome: str, body: dict[str, Any]) -> HTTPException:
    metrics.UPLOADS.labels(outcome).inc()
    return HTTPException(status, body)


@router.post("/reconciliations/{recon_id}/imports", status_code=201, summary="Upload one side's file",
             openapi_extra=_UPLOAD_BODY, responses=_UPLOAD_RESPONSES)
async def upload(recon_id: int, request: Request, svc: Services = Depends(services),
                 who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    """All-or-nothing: the file's bytes, the import row and every record commit together.

    Duplicate policy: the same bytes (SHA-256) uploaded again into the same reconciliation are
    refused with **409** and the existing import in ``existing_import``; nothing is stored twice.
    """
    limit = svc.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + UPLOAD_OVERHEAD_BYTES:
        raise _reject(413, "too_large", {"detail": f"upload of {declared} bytes exceeds the limit of {limit} bytes "
                                         "(RECON_MAX_UPLOAD_BYTES)"})
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise _reject(415, "unsupported", {"detail": f"content type {ctype.split(';')[0]!r} is not accepted; send "
                                           "multipart/form-data with fields file, side and optional options"})
    try:
        form = await request.form(max_files=1, max_fields=10)
    except StarletteHTTPException as exc:  # Starlette's own, for a malformed multipart body
        if exc.status_code != 400:  # 413 from the request guard
            raise
        raise _reject(422, "rejected", {"detail": "invalid upload request", "problems": [
            {"field": "body", "reason": f"malformed multipart/form-data: {exc.detail}"}]}) from exc
    try:
        file = form.get("file")
        side = form.get("side")
        problems, options = _upload_form_problems(file, side, form.get("options"))
        if problems:
            raise _reject(422, "rejected", {"detail": "invalid upload request", "problems": problems})
        assert file is not None and not isinstance(file, str)
        data = await file.read(limit + 1)
        filename = file.filename or "upload"
    finally:
        await form.close()
    if len(data) > limit:
        raise _reject(413, "too_large", {"detail": f"file {filename!r} exceeds the limit of {limit} bytes "
                                         "(RECON_MAX_UPLOAD_BYTES)"})
    return await run_in_threadpool(_store_upload, svc, request, who, recon_id, str(side), filename, data, options)


def _upload_form_problems(file: Any, side: Any, raw_options: Any) -> tuple[list[dict[str, Any]],
                                                                           importers.ImportOptions]:
    """Every problem with the form's fields (none is the database's to find), and the options."""
    problems: list[dict[str, Any]] = []
    if file is None or isinstance(file, str):
        problems.append({"field": "file", "reason": "required: the file to import (a multipart file part)"})
    else:
        problems += text_problems(file.filename or "", "file.filename")
    if side not in ("left", "right"):
        problems.append({"field": "side", "reason": f"{side!r} is not one of 'left', 'right'"})
    options = importers.ImportOptions()
    if raw_options in (None, ""):
        return problems, options
    try:
        parsed = json.loads(str(raw_options))
    except ValueError as exc:
        problems.append({"field": "options", "reason": f"not JSON: {exc}"})
        return problems, options
    bad_text = text_problems(parsed, "options")
    if bad_text:
        return problems + bad_text, options
    try:
        options = importers.ImportOptions.model_validate(parsed)
    except ValidationError as exc:
        problems += [_option_problem(err) for err in exc.errors()]
    return problems, options


def _option_problem(err: Any) -> dict[str, Any]:
    """An ImportOptions error in the user's terms: an unknown key is quoted with the valid ones."""
    loc = [str(p) for p in err["loc"]]
    field = ".".join(["options", *loc])
    if err["type"] == "extra_forbidden":
        model: Any = importers.ImportOptions
        for part in loc[:-1]:
            model = model.model_fields[part].annotation
        valid = ", ".join(model.model_fields)
        where = f"in {'.'.join(['options', *loc[:-1]])}"
        return {"field": field, "reason": f"unknown key {loc[-1]!r} {where}; valid keys: {valid}"}
    reason = str(err["msg"]).removeprefix("Value error, ")
    return {"field": field, "reason": reason}


def _existing(conn: Any, recon_id: int, sha: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {_IMPORT_COLS} FROM imports WHERE reconciliation_id = %s AND content_sha256 = %s",
                       (recon_id, sha)).fetchone()
    return None if row is None else _row(row, _IMPORT_COLS)


def _duplicate(existing: dict[str, Any], filename: str) -> HTTPException:
    return _reject(409, "duplicate", {
        "detail": f"{filename!r} has the same content (sha256 {existing['content_sha256'][:12]}...) as import "
                  f"{existing['id']} ({existing['filename']!r}, {existing['side']}); it was not imported again",
        "existing_import": existing})


def _store_upload(svc: Services, request: Request, who: Principal, recon_id: int, side: str, filename: str,
                  data: bytes, options: importers.ImportOptions) -> dict[str, Any]:
    db = svc.require_db()
    get_reconciliation(db, recon_id)
    sha = importers.content_sha256(data)
    with db.primary() as conn:
        existing = _existing(conn, recon_id, sha)
    if existing is not None:
        raise _duplicate(existing, filename)
    try:
        t_parse = time.perf_counter()
        result = importers.parse(data, filename=filename, side=side, options=options)
        parse_seconds = time.perf_counter() - t_parse
    except importers.UnsupportedFormat as exc:
        raise _reject(415, "unsupported", {"detail": str(exc)}) from exc
    except importers.ImportRejected as exc:
        raise _reject(422, "rejected", {"detail": f"{filename!r} was not imported: {len(exc.problems)} problem(s)",
                                        "problems": [p.as_dict() for p in exc.problems]}) from exc
    balances = [{"statement": b.statement, "currency": b.currency, "opening_minor": b.opening_minor,
                 "closing_minor": b.closing_minor, "lines_minor": b.lines_minor, "line_count": b.line_count,
                 "checked": b.checked} for b in result.balances]
    frame = result.records
    t_store = time.perf_counter()
    with db.primary() as conn:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO imports (reconciliation_id, side, filename, format, content_sha256, size_bytes, options, "
                "balances, record_count, data, created_by) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                f"ON CONFLICT ON CONSTRAINT imports_same_file_once DO NOTHING RETURNING {_IMPORT_COLS}",
                (recon_id, side, filename, result.format, sha, len(data), options.model_dump_json(),
                 json.dumps(balances), frame.height, data, who.name)).fetchone()
            if row is None:  # a concurrent upload of the same bytes won the race
                existing = _existing(conn, recon_id, sha)
                assert existing is not None
                raise _duplicate(existing, filename)
            imp = _row(row, _IMPORT_COLS)
            copy_records(conn, recon_id, imp["id"], side, frame)
            imp["warnings"] = list(result.warnings)
            audit(conn, request, who, "import.create", "import", imp["id"],
                  after={k: imp[k] for k in ("reconciliation_id", "side", "filename", "format", "content_sha256",
                                             "size_bytes", "record_count")})
    imp["timings"] = {"parse_seconds": round(parse_seconds, 3), "store_seconds": round(time.perf_counter() - t_store, 3)}
    metrics.UPLOADS.labels("success").inc()
    metrics.RECORDS_IMPORTED.labels(side).inc(frame.height)
    log.info("import stored", extra={"import_id": imp["id"], "records": frame.height, "format": result.format,
                                     **imp["timings"]})
    return imp


def copy_records(conn: Any, recon_id: int, import_id: int, side: str, frame: pl.DataFrame) -> None:
    """Bulk-insert an importer's frame with ``COPY FROM STDIN`` (CSV; dates ISO, nulls empty).

    ``records.source_id`` is the file's own id of the line when the importer found one (a mapped
    id column, :data:`app.records.SOURCE_ID`), else the importer's 1..n.
    """
    out = frame.select(
        pl.lit(recon_id).alias("reconciliation_id"), pl.lit(import_id).alias("import_id"), pl.lit(side).alias("side"),
        (pl.col("source_id") if "source_id" in frame.columns else pl.col("id")).cast(pl.Utf8).alias("source_id"),
        "line", "reference", "amount_minor", "currency",
        "booking_date", "value_date", "counterparty", "description", "raw",
    )
    buf = io.BytesIO()
    out.write_csv(buf, include_header=False)
    with conn.cursor().copy(f"COPY records ({', '.join(out.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buf.getvalue())


@router.get("/reconciliations/{recon_id}/imports", summary="Imports of a reconciliation")
def list_imports(recon_id: int, db: Database = Depends(database),
                 _: Principal = Depends(require("viewer"))) -> list[dict[str, Any]]:
    get_reconciliation(db, recon_id)
    with db.primary() as conn:
        return [_row(r, _IMPORT_COLS) for r in conn.execute(
            f"SELECT {_IMPORT_COLS} FROM imports WHERE reconciliation_id = %s ORDER BY id", (recon_id,))]


@router.get("/imports/{import_id}/file", summary="Download the original uploaded bytes",
            response_class=Response)
def download_import(import_id: int, db: Database = Depends(database),
                    _: Principal = Depends(require("viewer"))) -> Response:
    with db.primary() as conn:
        row = conn.execute("SELECT filename, data FROM imports WHERE id = %s", (import_id,)).fetchone()
    if row is None:
        raise HTTPException(404, f"import {import_id} does not exist")
    return Response(bytes(row[1]), media_type="application/octet-stream",
                    headers={"Content-Disposition": content_disposition(row[0])})


# -- runs --------------------------------------------------------------------------------------

_RUN_COLS = ("id, reconciliation_id, status, dry_run, rules, summary, error, job_id, created_by, created_at, "
             "started_at, finished_at")


@router.post("/reconciliations/{recon_id}/runs", status_code=202, summary="Queue a matching run",
             tags=["runs"], responses=error(409, "a side has no import yet, or a run is in progress (body.run_id)"))
def start_run(recon_id: int, request: Request, body: RunIn | None = None, svc: Services = Depends(services),
              who: Principal = Depends(require("operator"))) -> dict[str, Any]:
    """Queue a durable job. Poll ``GET /api/v1/runs/{id}`` for progress and the summary."""
    body = body or RunIn()
    db = svc.require_db()
    rec = get_reconciliation(db, recon_id)
    rules = body.rules.model_dump(mode="json") if body.rules else rec["rules"]
    with db.primary() as conn:
        # Serialise concurrent run requests for one reconciliation (the in-progress check below).
        conn.execute("SELECT id FROM reconciliations WHERE id = %s FOR UPDATE", (recon_id,))
        counts = dict(conn.execute("SELECT side, count(*) FROM imports WHERE reconciliation_id = %s GROUP BY side",
                                   (recon_id,)).fetchall())
        missing = [s for s in ("left", "right") if not counts.get(s)]
        if missing:
            raise HTTPException(409, f"reconciliation {recon_id} has no import for side(s) {missing}; "
                                "upload both sides before running")
        active = conn.execute("SELECT id FROM runs WHERE reconciliation_id = %s AND status IN ('queued', 'running') "
                              "AND NOT dry_run", (recon_id,)).fetchone()
        if active is not None and not body.dry_run:
            raise HTTPException(409, {"detail": f"run {active[0]} of reconciliation {recon_id} is still in progress",
                                      "run_id": active[0]})
        row = conn.execute("INSERT INTO runs (reconciliation_id, dry_run, rules, created_by) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", (recon_id, body.dry_run, json.dumps(rules) if rules else None,
                                            who.name)).fetchone()
        run_id = int(row[0])
        job_id = jobs.enqueue(conn, "reconcile", {"run_id": run_id}, max_attempts=svc.settings.job_max_attempts)
        conn.execute("UPDATE runs SET job_id = %s WHERE id = %s", (job_id, run_id))
        if not body.dry_run:
            conn.execute("UPDATE reconciliations SET status = 'queued', updated_at = now() WHERE id = %s", (recon_id,))
        audit(conn, request, who, "run.create", "run", run_id,
              after={"reconciliation_id": recon_id, "dry_run": body.dry_run, "job_id": job_id})
    return {"id": run_id, "job_id": job_id, "status": "queued", "dry_run": body.dry_run,
            "links": {"run": f"/api/v1/runs/{run_id}"}}


@router.get("/runs/{run_id}", summary="A run's status, progress (processed/total) and summary", tags=["runs"])
def show_run(run_id: int, svc: Services = Depends(services),
             _: Principal = Depends(require("viewer"))) -> dict[str, Any]:
    db = svc.require_db()
    with db.primary() as conn:
        row = conn.execute(f"SELECT {_RUN_COLS} FROM runs WHERE id = %s", (run_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"run {run_id} does not exist")
        run = _row(row, _RUN_COLS)
        job = conn.execute("SELECT status, attempts, stage, processed, total, last_error FROM jobs WHERE id = %s",
                           (run["job_id"],)).fetchone()
    progress: dict[str, Any] | None = None
    if job is not None:
        progress = {"stage": job[2], "processed": job[3], "total": job[4], "source": "database"}
        if run["status"] in ("queued", "running"):
            live = svc.cache.get_progress(run["job_id"])
            if live:
                progress = {"stage": live["stage"], "processed": live["processed"], "total": live["total"],
                            "source": "redis"}
        run["job"] = {"status": job[0], "attempts": job[1], "last_error": job[5]}
    run["progress"] = progress
    return run
