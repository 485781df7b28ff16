"""The ``reconcile`` job: load both sides from PostgreSQL, run the engine, store the result.

Payload: ``{"run_id": int}``. Steps, each reported as progress (processed / total records):

1. ``load``: both sides' records of the reconciliation, minus those pinned by reviewed,
   confirmed matches of the previous run (people's decisions survive a re-run).
2. ``match``: :func:`app.engine.match` with the run's rules.
3. ``store``: one transaction writes matches, match items, discrepancies, refreshes the bulk
   tables' statistics, stores the results summary that ``/summary`` serves right after the
   run, the run's summary and the fenced job completion; a crash before its commit leaves
   nothing behind and the job is retried. A dry run stores only the run's summary.
4. After the commit: the run's read position (``runs.results_lsn``), from which a replica
   may answer for its results (:mod:`app.db.results`).

Trap: record ids given to the engine are the ``records.id`` primary keys (unique across all
imports of a side), not the importer's per-file ids (kept in ``records.source_id``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from typing import Any

import polars as pl
import psycopg

from app import metrics
from app.db import results
from app.jobs.worker import JobContext, PermanentJobError
from app.records import RECORD_SCHEMA

log = logging.getLogger(__name__)

_LOAD_COLUMNS = "id, side, reference, amount_minor, currency, booking_date, value_date, counterparty, " \
                "description, coalesce(raw, ''), coalesce(line, 0)::bigint"


def load_side(conn: psycopg.Connection, recon_id: int, side: str, exclude: set[int]) -> pl.DataFrame:
    """Records of one side as a :data:`RECORD_SCHEMA` frame, via ``COPY ... TO STDOUT`` (fast)."""
    buf = io.BytesIO()
    with conn.cursor().copy(
        f"COPY (SELECT {_LOAD_COLUMNS} FROM records WHERE reconciliation_id = %s AND side = %s ORDER BY id) "
        "TO STDOUT (FORMAT csv)", (recon_id, side)
    ) as copy:
        for chunk in copy:
            buf.write(chunk)
    if buf.tell() == 0:
        return pl.DataFrame(schema=RECORD_SCHEMA)
    buf.seek(0)
    frame = pl.read_csv(buf, has_header=False, new_columns=list(RECORD_SCHEMA), schema=RECORD_SCHEMA,
                        try_parse_dates=False)
    frame = frame.with_columns(pl.col("raw").fill_null(""))
    if exclude:
        frame = frame.filter(~pl.col("id").is_in(list(exclude)))
    return frame


def _copy_frame(conn: psycopg.Connection, table: str, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    with conn.cursor().copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buf.getvalue())



def _json_lists(series: pl.Series) -> pl.Series:
    """Criteria (a list of names, or one comma-separated string) -> JSON array text.

    Goes through the (few) distinct values, so there is no per-row Python.
    """
    joined = series.list.join(",") if isinstance(series.dtype, pl.List) else series.cast(pl.Utf8)
    uniques = joined.unique().to_list()
    mapping = {u: json.dumps([part.strip() for part in u.split(",") if part.strip()]) for u in uniques if u is not None}
    return joined.replace_strict(mapping, default=None, return_dtype=pl.Utf8)


def _alloc_ids(conn: psycopg.Connection, n: int) -> list[int]:
    if n == 0:
        return []
    rows = conn.execute("SELECT nextval('matches_id_seq') FROM generate_series(1, %s)", (n,)).fetchall()
    return [r[0] for r in rows]


def store_result(conn: psycopg.Connection, run_id: int, recon_id: int, result: Any,
                 amounts: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Write the engine's pairs, groups and discrepancies for ``run_id`` (caller's transaction)."""
    pairs: pl.DataFrame = result.pairs
    groups: pl.DataFrame = result.groups
    ids = _alloc_ids(conn, pairs.height + groups.height)
    left_amt = amounts["left"].select(pl.col("id"), pl.col("amount_minor").alias("l_amt"), pl.col("currency"))
    right_amt = amounts["right"].select(pl.col("id"), pl.col("amount_minor").alias("r_amt"))

    p = pairs.with_columns(pl.Series("match_id", ids[: pairs.height], dtype=pl.Int64))
    p = p.join(left_amt, left_on="left_id", right_on="id", how="left").join(
        right_amt, left_on="right_id", right_on="id", how="left")
    p_rows = p.select(
        pl.col("match_id").alias("id"), pl.lit(run_id).alias("run_id"), pl.lit(recon_id).alias("reconciliation_id"),
        pl.lit("pair").alias("kind"), "status", pl.lit("engine").alias("origin"), "rule", "score",
        _json_lists(p.get_column("criteria")).alias("criteria"), "amount_delta_minor", "date_delta_days",
        pl.col("l_amt").alias("left_amount_minor"), pl.col("r_amt").alias("right_amount_minor"), "currency",
    )
    g = groups.with_columns(pl.Series("match_id", ids[pairs.height:], dtype=pl.Int64))
    links = result.group_links().join(g.select("group_id", "match_id"), on="group_id")
    link_amounts = links.join(left_amt, left_on="left_id", right_on="id", how="left").join(
        right_amt, left_on="right_id", right_on="id", how="left")
    # The one-side record appears in every link of its group: count each record once per group.
    g_left = link_amounts.unique(["match_id", "left_id"]).group_by("match_id").agg(
        pl.col("l_amt").sum().alias("left_amount_minor"), pl.col("currency").first())
    g_right = link_amounts.unique(["match_id", "right_id"]).group_by("match_id").agg(
        pl.col("r_amt").sum().alias("right_amount_minor"))
    g = g.join(g_left, on="match_id", how="left").join(g_right, on="match_id", how="left")
    g_rows = g.select(
        pl.col("match_id").alias("id"), pl.lit(run_id).alias("run_id"), pl.lit(recon_id).alias("reconciliation_id"),
        pl.lit("group").alias("kind"), "status", pl.lit("engine").alias("origin"), "rule", "score",
        _json_lists(g.get_column("criteria")).alias("criteria") if g.height else pl.lit(None, pl.Utf8).alias("criteria"),
        "amount_delta_minor", "date_delta_days", "left_amount_minor", "right_amount_minor", "currency",
    )
    _copy_frame(conn, "matches", pl.concat([p_rows, g_rows.cast(p_rows.schema)]) if g.height else p_rows)

    items = pl.concat([
        p.select(pl.col("match_id"), pl.col("left_id").alias("record_id"), pl.lit("left").alias("side")),
        p.select(pl.col("match_id"), pl.col("right_id").alias("record_id"), pl.lit("right").alias("side")),
        links.select(pl.col("match_id"), pl.col("left_id").alias("record_id"), pl.lit("left").alias("side")),
        links.select(pl.col("match_id"), pl.col("right_id").alias("record_id"), pl.lit("right").alias("side")),
    ]).unique(["match_id", "record_id"]).with_columns(pl.lit(run_id).alias("run_id")).sort("match_id", "record_id")
    _copy_frame(conn, "match_items", items.select("match_id", "run_id", "record_id", "side"))

    disc: pl.DataFrame = result.discrepancies
    if disc.height:
        pair_keys = p.select("left_id", "right_id", pl.col("match_id").alias("pair_match"))
        d = disc.join(pair_keys, on=["left_id", "right_id"], how="left").join(
            g.select("group_id", pl.col("match_id").alias("group_match")), on="group_id", how="left")
        d_rows = d.select(
            pl.lit(run_id).alias("run_id"), pl.coalesce("pair_match", "group_match").alias("match_id"),
            "field", "left_value", "right_value", pl.col("delta").cast(pl.Utf8),
        )
        _copy_frame(conn, "discrepancies", d_rows)
    return {"matches": len(ids), "items": items.height, "discrepancies": disc.height}


def _pinned(conn: psycopg.Connection, prev_run: int | None) -> list[dict[str, Any]]:
    if prev_run is None:
        return []
    rows = conn.execute(
        "SELECT m.id, m.kind, m.origin, m.rule, m.score, m.criteria, m.amount_delta_minor, m.date_delta_days, "
        "m.left_amount_minor, m.right_amount_minor, m.currency, m.reviewed_by, m.reviewed_at, "
        "array_agg(mi.record_id ORDER BY mi.record_id), array_agg(mi.side ORDER BY mi.record_id) "
        "FROM matches m JOIN match_items mi ON mi.match_id = m.id AND mi.active "
        "WHERE m.run_id = %s AND m.status = 'confirmed' AND m.reviewed_by IS NOT NULL GROUP BY m.id ORDER BY m.id",
        (prev_run,)).fetchall()
    keys = ("id", "kind", "origin", "rule", "score", "criteria", "amount_delta_minor", "date_delta_days",
            "left_amount_minor", "right_amount_minor", "currency", "reviewed_by", "reviewed_at", "records", "sides")
    return [dict(zip(keys, r)) for r in rows]


def _copy_pinned(conn: psycopg.Connection, run_id: int, recon_id: int, pinned: list[dict[str, Any]]) -> None:
    for m in pinned:
        row = conn.execute(
            "INSERT INTO matches (run_id, reconciliation_id, kind, status, origin, rule, score, criteria, "
            "amount_delta_minor, date_delta_days, left_amount_minor, right_amount_minor, currency, reviewed_by, "
            "reviewed_at) VALUES (%s,%s,%s,'confirmed',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (run_id, recon_id, m["kind"], m["origin"], m["rule"], m["score"],
             json.dumps(m["criteria"]) if m["criteria"] is not None else None, m["amount_delta_minor"],
             m["date_delta_days"], m["left_amount_minor"], m["right_amount_minor"], m["currency"],
             m["reviewed_by"], m["reviewed_at"])).fetchone()
        assert row is not None
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO match_items (match_id, run_id, record_id, side) VALUES (%s, %s, %s, %s)",
                            [(row[0], run_id, rid, side) for rid, side in zip(m["records"], m["sides"])])


def warm_up() -> None:
    """Import the engine and run it once on two tiny frames, at worker start.

    The first match in a fresh process otherwise pays ~0.3 s of imports (numpy, rapidfuzz,
    engine modules) on the clock of the first user's job.
    """
    import datetime as dt

    from app.engine import match

    def frame(side: str) -> pl.DataFrame:
        return pl.DataFrame({
            "id": [1, 2], "side": [side, side], "reference": ["W1", None], "amount_minor": [100, 250],
            "currency": ["EUR", "EUR"], "booking_date": [dt.date(2026, 1, 1)] * 2, "value_date": [None, None],
            "counterparty": ["warm", "up"], "description": ["warm up", "warm up"], "raw": ["", ""], "line": [1, 2],
        }, schema=RECORD_SCHEMA)

    match(frame("left"), frame("right"))


def handle(ctx: JobContext) -> None:
    from app.engine import RuleSet, match

    run_id = int(ctx.job.payload["run_id"])
    started = time.perf_counter()
    with ctx.db.primary() as conn:
        row = conn.execute(
            "SELECT r.reconciliation_id, r.dry_run, r.rules, c.current_run_id FROM runs r "
            "JOIN reconciliations c ON c.id = r.reconciliation_id WHERE r.id = %s", (run_id,)).fetchone()
        if row is None:
            raise PermanentJobError(f"run {run_id} does not exist (deleted after it was queued?)")
        recon_id, dry_run, rules_json, prev_run = row
        conn.execute("UPDATE runs SET status = 'running', started_at = now(), error = NULL WHERE id = %s", (run_id,))
        if not dry_run:
            conn.execute("UPDATE reconciliations SET status = 'running', updated_at = now() WHERE id = %s",
                         (recon_id,))
    try:
        rules = RuleSet.model_validate(rules_json) if rules_json else RuleSet()
    except ValueError as exc:
        raise PermanentJobError(f"run {run_id}: invalid rules: {exc}") from exc

    ctx.progress("load", 0, 0, force=True)
    t_load = time.perf_counter()
    with ctx.db.primary() as conn:
        pinned = [] if dry_run else _pinned(conn, prev_run)
        exclude = {rid for m in pinned for rid in m["records"]}
        left = load_side(conn, recon_id, "left", exclude)
        right = load_side(conn, recon_id, "right", exclude)
    total = left.height + right.height
    ctx.check()
    ctx.progress("match", 0, total, force=True)
    t_match = time.perf_counter()
    load_seconds = t_match - t_load
    try:
        result = match(left, right, rules)
    except ValueError as exc:  # InvalidRecords and rule errors: retrying will not help
        raise PermanentJobError(f"run {run_id}: {exc}") from exc
    match_seconds = time.perf_counter() - t_match
    ctx.check()
    ctx.progress("store", total, total, force=True)

    counts = result.counts()
    summary = {
        "counts": counts,
        "match_rate": round(result.match_rate, 6),
        "pairs": result.pairs.height,
        "groups": result.groups.height,
        "discrepancies": result.discrepancies.height,
        "pinned_matches": len(pinned),
        "amounts": result.summary.to_dicts(),
        "rules": result.rule_stats.to_dicts(),
        "match_seconds": round(match_seconds, 3),
        "load_seconds": round(load_seconds, 3),
    }
    t_store = time.perf_counter()
    with ctx.db.primary() as conn:
        with conn.transaction():
            # Serialises with a concurrent DELETE of the reconciliation (which locks its runs first).
            if conn.execute("SELECT 1 FROM runs WHERE id = %s FOR UPDATE", (run_id,)).fetchone() is None:
                raise PermanentJobError(f"run {run_id} was deleted while it ran; nothing stored")
            if not dry_run:
                store_result(conn, run_id, recon_id, result, {"left": left, "right": right})
                _copy_pinned(conn, run_id, recon_id, pinned)
                t_analyze = time.perf_counter()
                results.refresh_statistics(conn)
                summary["analyze_seconds"] = round(time.perf_counter() - t_analyze, 3)
                results.store_summary(conn, recon_id, run_id, summary["rules"])
            summary["store_seconds"] = round(time.perf_counter() - t_store, 3)
            summary["seconds"] = round(time.perf_counter() - started, 3)
            conn.execute("UPDATE runs SET status = 'succeeded', finished_at = now(), summary = %s WHERE id = %s",
                         (json.dumps(summary), run_id))
            if not dry_run:
                conn.execute("UPDATE reconciliations SET status = 'succeeded', current_run_id = %s, "
                             "updated_at = now() WHERE id = %s", (run_id, recon_id))
            conn.execute("UPDATE jobs SET processed = %s, total = %s WHERE id = %s", (total, total, ctx.job.id))
            ctx.finish(conn)
        if not dry_run:
            _record_read_position(conn, run_id)
    ctx.progress("done", total, total)
    elapsed = time.perf_counter() - started
    metrics.RECONCILIATION_SECONDS.observe(elapsed)
    metrics.RECONCILIATIONS.labels("succeeded").inc()
    metrics.RECORDS_PROCESSED.inc(total)
    metrics.MATCH_RATE.set(result.match_rate)
    log.info("reconciliation stored", extra={"run_id": run_id, "records": total, "seconds": round(elapsed, 3),
                                             "match_rate": summary["match_rate"], "dry_run": dry_run})


def _record_read_position(conn: psycopg.Connection, run_id: int) -> None:
    """Committed: replicas that have replayed this far may answer for the run's results.

    Best effort: the job has succeeded whatever happens here. Without a position readers use
    the primary and record one themselves (:func:`app.web.results.reading`).
    """
    try:
        results.record_read_position(conn, run_id)
        conn.commit()
    except psycopg.Error as exc:
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
        log.warning("read position not recorded; results are read from the primary until a reader records it",
                    extra={"run_id": run_id, "error": str(exc)})


def on_failure(ctx: JobContext, error: str) -> None:
    """The job failed for good: mark the run (and reconciliation) failed with the reason."""
    run_id = int(ctx.job.payload.get("run_id", 0))
    metrics.RECONCILIATIONS.labels("failed").inc()
    with ctx.db.primary() as conn:
        row = conn.execute("UPDATE runs SET status = 'failed', error = %s, finished_at = now() WHERE id = %s "
                           "RETURNING reconciliation_id, dry_run", (error[:4000], run_id)).fetchone()
        if row is not None and not row[1]:
            conn.execute("UPDATE reconciliations SET status = 'failed', updated_at = now() WHERE id = %s", (row[0],))
