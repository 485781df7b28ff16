"""Blocking: build candidate pairs with joins and binary searches, never a loop per record.

Working frames (see :func:`prepare`) carry ``id, amount, currency, d`` where `d` is the booking
date as Int32 days since 1970-01-01, so date arithmetic stays integer arithmetic.

Two shapes of candidate search:

* :func:`key_join`: equality on a key column plus currency (the reference rule, group rules).
* :func:`band_join`: no key; same currency, amount within a tolerance band and date within a
  window. The index side is sorted by ``amount * 2**K + day`` (K bits hold the day span), so one
  binary search finds, for one query record, the contiguous run of index records with exactly
  amount ``a + k`` and day in ``[d - w, d + w]``. Small tolerances enumerate k (exact ranges);
  large ones search the whole amount band and filter dates afterwards.

The trap of band joins is a blow-up on common amounts (a thousand lines of 9.99 in a week): a
query record whose candidate count passes the cap is reported as skipped rather than expanded.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from app.engine.rules import Tolerance

_MAX_ENUMERATED_TOLERANCE = 16
"""Tolerances up to this many minor units are searched one exact amount at a time."""

_PREFILTER_FACTOR = 50
"""For wide bands the pre-date-filter count may exceed the cap by this factor before a query
record is skipped (the date filter usually removes most of them)."""


def normalise_text(expr: pl.Expr, mode: str) -> pl.Expr:
    """Normalise a key or text column for comparison; empty results become null.

    alnum: upper case, letters and digits only; casefold: trimmed, upper case, inner runs of
    whitespace collapsed; exact: unchanged (but empty strings are still null).
    """
    if mode == "alnum":
        out = expr.str.to_uppercase().str.replace_all(r"[^\p{L}\p{N}]", "")
    elif mode == "casefold":
        out = expr.str.strip_chars().str.to_uppercase().str.replace_all(r"\s+", " ")
    elif mode == "exact":
        out = expr
    else:  # pragma: no cover - guarded by the pydantic Literal
        raise ValueError(f"unknown normalisation {mode!r}; allowed: alnum, casefold, exact")
    return pl.when(out.str.len_bytes() > 0).then(out)


def prepare(records: pl.DataFrame, currencies: list[str]) -> pl.DataFrame:
    """The engine's working columns for one side (the full records stay with the caller).

    `currency` becomes an Int16 code (its index in `currencies`): joins, sorts and hashes on a
    small integer are much cheaper than on strings, and codes never leave the engine.
    """
    codes = {currency: code for code, currency in enumerate(currencies)}
    return records.select(
        "id",
        pl.col("amount_minor").alias("amount"),
        pl.col("currency").replace_strict(codes, return_dtype=pl.Int16),
        pl.col("booking_date").cast(pl.Int32).alias("d"),
        pl.col("value_date").cast(pl.Int32).alias("vd"),
        "reference",
        "counterparty",
        "description",
    )


def tolerance_columns(currencies: list[str], tolerance_for) -> pl.DataFrame:  # noqa: ANN001
    """A small frame: currency code -> tol_abs, tol_num, tol_den (relative as an exact fraction)."""
    rows = []
    for code, currency in enumerate(currencies):
        tolerance: Tolerance = tolerance_for(currency)
        numerator, denominator = tolerance.ratio()
        rows.append((code, tolerance.absolute_minor, numerator, denominator))
    return pl.DataFrame(
        rows,
        schema={"currency": pl.Int16, "tol_abs": pl.Int64, "tol_num": pl.Int64, "tol_den": pl.Int64},
        orient="row",
    )


def floor_mul_div(value: pl.Expr, numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``floor(value * numerator / denominator)`` for value >= 0, exact and overflow-safe.

    Splitting value into ``q * den + r`` keeps every product far below 2**63 for any amount a
    record can hold and any relative tolerance up to 0.5 with a reasonable denominator.
    """
    return (value // denominator) * numerator + ((value % denominator) * numerator) // denominator


def allowed_delta(left_amount: pl.Expr, right_amount: pl.Expr) -> pl.Expr:
    """Allowed |difference| per pair; needs tol_abs/tol_num/tol_den columns present."""
    biggest = pl.max_horizontal(left_amount.abs(), right_amount.abs())
    relative = floor_mul_div(biggest, pl.col("tol_num"), pl.col("tol_den"))
    return pl.max_horizontal(pl.col("tol_abs"), relative)


def key_join(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    on: list[str],
    max_key_repeats: int | None = None,
    carry: tuple[str, ...] = ("amount", "d"),
) -> pl.DataFrame:
    """Inner join on `on` + currency; null keys never join. Returns id, id_r, currency and
    the `carry` columns of both sides (right ones suffixed ``_r``).

    Joins on one 64-bit hash of the key columns over narrow frames (joining wide frames on
    strings is several times slower), then drops hash collisions by comparing the real keys,
    gathered by row position. Keys occurring more than `max_key_repeats` times on either side
    are dropped first, so a non-identifying key ("SALARY") cannot turn the join quadratic.
    """
    keys = [*on, "currency"]
    hashed = pl.struct(keys).hash(seed=0x5EED).alias("_h")

    def narrow(frame: pl.DataFrame) -> pl.DataFrame:
        frame = frame.drop_nulls(on).with_row_index("_pos").with_columns(hashed)
        if max_key_repeats is not None:
            crowded = frame.get_column("_h").is_duplicated()
            if crowded.any():
                counts = frame.filter(crowded).group_by("_h").len().filter(pl.col("len") > max_key_repeats)
                frame = frame.join(counts.select("_h"), on="_h", how="anti")
        return frame

    left, right = narrow(left), narrow(right)
    joined = left.select("_pos", "_h", "id", "currency", *carry).join(
        right.select("_pos", "_h", "id", *carry), on="_h", how="inner", suffix="_r"
    )
    positions_l, positions_r = joined.get_column("_pos"), joined.get_column("_pos_r")
    same = None
    for key in keys:
        equal = left.get_column(key).gather(positions_l) == right.get_column(key).gather(positions_r)
        same = equal if same is None else same & equal
    return joined.filter(same).drop("_h", "_pos", "_pos_r")


@dataclass(frozen=True)
class BandResult:
    """Candidate (query row, index row) positions, and the query ids skipped for too many."""

    pairs: pl.DataFrame  # q_id, i_id
    skipped: pl.Series  # query ids


def band_join(
    query: pl.DataFrame,
    index: pl.DataFrame,
    *,
    tolerances: pl.DataFrame,
    window: int,
    max_candidates: int,
) -> BandResult:
    """Pairs with equal currency, |amount delta| within the band and |day delta| <= `window`.

    `query` and `index` need columns id, amount, currency, d. `tolerances` is the frame from
    :func:`tolerance_columns`. The result is a superset for relative tolerances (the band is
    computed from the query amount, generously) and must be filtered with
    :func:`allowed_delta` by the caller; for absolute tolerances and dates it is exact.
    """
    pieces: list[pl.DataFrame] = []
    skipped: list[pl.Series] = []
    currencies = sorted(
        set(query.get_column("currency").unique().to_list())
        & set(index.get_column("currency").unique().to_list())
    )
    for currency in currencies:
        q = query.filter(pl.col("currency") == currency).select("id", "amount", "d")
        ix = index.filter(pl.col("currency") == currency).select("id", "amount", "d")
        tol = tolerances.filter(pl.col("currency") == currency).row(0, named=True)
        piece, skip = _band_one_currency(q, ix, tol, window, max_candidates)
        pieces.append(piece)
        skipped.append(skip)
    if not pieces:
        return BandResult(pl.DataFrame(schema={"q_id": pl.Int64, "i_id": pl.Int64}), pl.Series("id", [], pl.Int64))
    return BandResult(pl.concat(pieces), pl.concat(skipped))


def _band_one_currency(
    q: pl.DataFrame, ix: pl.DataFrame, tol: dict, window: int, max_candidates: int
) -> tuple[pl.DataFrame, pl.Series]:
    empty = pl.DataFrame(schema={"q_id": pl.Int64, "i_id": pl.Int64})
    day_min = min(q.get_column("d").min(), ix.get_column("d").min()) - window - 1  # type: ignore[operator]
    day_max = max(q.get_column("d").max(), ix.get_column("d").max()) + window + 1  # type: ignore[operator]
    bits = int(day_max - day_min).bit_length()
    shift = 1 << bits
    limit = 1 << (61 - bits)  # |amount| + band below this keeps amount * 2**bits inside Int64

    numerator, denominator, absolute = tol["tol_num"], tol["tol_den"], tol["tol_abs"]
    if numerator:
        # band for the query side that covers allowed(l, r) computed on max(|l|, |r|)
        band = pl.max_horizontal(
            pl.lit(absolute),
            floor_mul_div(pl.col("amount").abs(), pl.lit(numerator), pl.lit(denominator - numerator)) + 1,
        )
    else:
        band = pl.lit(absolute, dtype=pl.Int64)
    q = q.with_columns(band=band.cast(pl.Int64), dd=(pl.col("d") - day_min).cast(pl.Int64))
    ix = ix.with_columns(dd=(pl.col("d") - day_min).cast(pl.Int64))

    # records too large for the composite key are matched on exact amount by a plain join
    big_q = q.filter(pl.col("amount").abs() + pl.col("band") >= limit)
    big_ix = ix.filter(pl.col("amount").abs() >= limit)
    q = q.filter(pl.col("amount").abs() + pl.col("band") < limit)
    ix = ix.filter(pl.col("amount").abs() < limit)
    extra = (
        big_q.join(big_ix, on="amount", suffix="_i")
        .filter((pl.col("d") - pl.col("d_i")).abs() <= window)
        .select(pl.col("id").alias("q_id"), pl.col("id_i").alias("i_id"))
    )

    ix = ix.sort("amount", "dd", "id")
    index_key = (ix.get_column("amount") * shift + ix.get_column("dd")).rename("key")
    index_ids = ix.get_column("id")
    max_band = q.get_column("band").max() if q.height else 0

    ranges: list[pl.DataFrame] = []
    if max_band is not None and max_band <= _MAX_ENUMERATED_TOLERANCE:
        for offset in range(-int(max_band), int(max_band) + 1):
            part = q.filter(pl.col("band") >= abs(offset)) if offset else q
            if part.height == 0:
                continue
            centre = (part.get_column("amount") + offset) * shift
            lo = index_key.search_sorted(centre + part.get_column("dd") - window, side="left")
            hi = index_key.search_sorted(centre + part.get_column("dd") + window, side="right")
            ranges.append(pl.DataFrame({"q_id": part.get_column("id"), "lo": lo, "hi": hi}))
        exact_dates = True
        cap = max_candidates
    else:
        lo = index_key.search_sorted((q.get_column("amount") - q.get_column("band")) * shift, side="left")
        hi = index_key.search_sorted(
            (q.get_column("amount") + q.get_column("band")) * shift + (shift - 1), side="right"
        )
        ranges.append(pl.DataFrame({"q_id": q.get_column("id"), "lo": lo, "hi": hi}))
        exact_dates = False
        cap = max_candidates * _PREFILTER_FACTOR
    if not ranges:
        return (extra if extra.height else empty), pl.Series("id", [], pl.Int64)
    spans = pl.concat(ranges).with_columns(
        pl.col("lo").cast(pl.Int64), pl.col("hi").cast(pl.Int64)
    ).filter(pl.col("hi") > pl.col("lo"))
    spans = spans.with_columns(total=(pl.col("hi") - pl.col("lo")).sum().over("q_id"))
    skipped = spans.filter(pl.col("total") > cap).get_column("q_id").unique().sort()
    spans = spans.filter(pl.col("total") <= cap)
    exploded = spans.select("q_id", pl.int_ranges("lo", "hi").alias("pos")).explode("pos")
    pairs = exploded.select("q_id", i_id=index_ids.gather(exploded.get_column("pos")))
    if not exact_dates:
        q_days = q.select(pl.col("id").alias("q_id"), pl.col("d").alias("q_d"))
        i_days = ix.select(pl.col("id").alias("i_id"), pl.col("d").alias("i_d"))
        pairs = (
            pairs.join(q_days, on="q_id").join(i_days, on="i_id")
            .filter((pl.col("q_d") - pl.col("i_d")).abs() <= window)
            .select("q_id", "i_id")
        )
    if extra.height:
        pairs = pl.concat([pairs, extra])
    return pairs, skipped.rename("id")


def day_window_join(
    query: pl.DataFrame,
    index: pl.DataFrame,
    *,
    on: list[str],
    window: int,
) -> pl.DataFrame:
    """Equality on `on` + currency and |day delta| <= window, by exploding the query's days.

    Each query row is repeated 2*window+1 times (one per shifted day) and equi-joined on the
    day, so the join never pairs records more than `window` days apart. Columns of `index` get
    the suffix ``_r``; the query keeps its own names.
    """
    keys = [*on, "currency"]
    if on:
        query, index = query.drop_nulls(on), index.drop_nulls(on)
    shifted = query.with_columns(
        _day=pl.int_ranges(pl.col("d") - window, pl.col("d") + window + 1, dtype=pl.Int32)
    ).explode("_day")
    index = index.with_columns(_day=pl.col("d"))
    return shifted.join(index, on=[*keys, "_day"], how="inner", suffix="_r").drop("_day")
