"""Blocking: build candidate pairs with joins and binary searches, never a loop per record.

Working frames (see :func:`prepare`) carry ``id, amount, currency, d`` where `d` is the booking
date as Int32 days since 1970-01-01, so date arithmetic stays integer arithmetic.

Two shapes of candidate search:

* :func:`text_key_join`: equality on a normalised key column plus currency (the reference
  rule).
* :func:`band_join`: no key; same currency, amount within a tolerance band and date within a
  window. The index side is sorted by ``amount * 2**K + day`` (K bits hold the day span), so one
  binary search finds, for one query record, the contiguous run of index records with exactly
  amount ``a + k`` and day in ``[d - w, d + w]``; small tolerances enumerate k. Wide bands
  (relative tolerances) sort by ``day * 2**41 + amount`` instead and enumerate the days.

The trap of band joins is a blow-up on common amounts (a thousand lines of 9.99 in a week): a
query record whose candidate count passes the cap is reported as skipped rather than expanded.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import polars as pl

from app.engine.rules import Tolerance

EXPLODE = {"empty_as_null": False} if "empty_as_null" in inspect.signature(pl.DataFrame.explode).parameters else {}
"""Keyword for ``explode``: an empty list gives no row (the polars 2 default, stated so that
polars 1.x behaves the same and does not warn)."""

_MAX_ENUMERATED_TOLERANCE = 16
"""Tolerances up to this many minor units are searched one exact amount at a time."""



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
    # replace() rather than when(len > 0).then(out): the latter evaluates `out` (two string
    # passes with a regex) twice on an eager frame
    return out.replace("", None)


def normalise_series(values: pl.Series, mode: str) -> pl.Series:
    """:func:`normalise_text` for a whole column, faster for the common "alnum" case.

    Dashes and spaces (nearly all the punctuation real references carry) are removed with
    literal replaces; the Unicode regex runs only if anything else is left, which one cheap
    scan tells. The result equals ``normalise_text(values, mode)``.
    """
    if mode != "alnum":
        return values.to_frame("v").select(normalise_text(pl.col("v"), mode)).to_series().rename(values.name)
    out = values.to_frame("v").select(_alnum_literal(pl.col("v"))).to_series().rename(values.name)
    if out.str.contains(_NOT_ALNUM).any():
        out = out.str.replace_all(_NOT_ALNUM, "")
    return out.replace("", None)


_NOT_ALNUM = r"[^\p{L}\p{N}]"


def _alnum_literal(expr: pl.Expr) -> pl.Expr:
    """Upper case without dashes and spaces: "alnum" for references that carry no other punctuation."""
    return expr.str.to_uppercase().str.replace_all("-", "", literal=True).str.replace_all(" ", "", literal=True)


def without_ids(frame: pl.DataFrame, ids: pl.Series) -> pl.DataFrame:
    """The rows of `frame` whose ``id`` is not in `ids` (ids unique on both sides).

    Dense ids (the usual 1..n) are looked up in a boolean table indexed by id; sparse ones by
    binary search in the sorted ids: hashing a million ids to drop most of them costs several
    times more than either.
    """
    if ids.len() == 0 or frame.height == 0:
        return frame
    own = frame.get_column("id")
    low, high = own.min(), own.max()
    if high - low < 4 * (frame.height + ids.len()) + 1024:  # type: ignore[operator]
        # dense ids (the usual 1..n): one boolean per possible id, set by scatter, read by gather
        inside = ids.filter((ids >= low) & (ids <= high)) - low
        taken = pl.zeros(high - low + 1, pl.Boolean, eager=True).scatter(inside, True)  # type: ignore[operator]
        return frame.filter(~taken.gather(own - low))
    used = ids.sort()
    position = used.search_sorted(own, side="left").cast(pl.Int64).clip(0, used.len() - 1)
    return frame.filter(used.gather(position) != own)


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


def text_key_join(
    left: pl.DataFrame,
    right: pl.DataFrame,
    *,
    column: str,
    mode: str,
    max_key_repeats: int | None = None,
    carry: tuple[str, ...] = ("amount", "d"),
) -> pl.LazyFrame:
    """Inner join on ``normalise_text(column, mode)`` + currency; null and empty keys never join.

    Returns (lazily, so the caller can fuse its next steps into the same query) id, id_r,
    currency and the `carry` columns of both sides (right ones suffixed ``_r``). The key is
    computed, hashed and narrowed in one query per side, both sides collected together, and
    never materialised as a column of the working frames: on a million references a side that
    is about twice as fast as normalising the column first. For "alnum", dashes and spaces are
    removed with literal replaces; the Unicode regex runs only if anything else is left (one
    cheap scan tells), as in :func:`normalise_series`.

    The join is on a 64-bit hash of the key over narrow frames (joining wide frames on strings
    is several times slower); a second, independently seeded hash must agree too, so a false
    pair needs a 128-bit collision. Keys occurring more than `max_key_repeats` times on either
    side are dropped first, so a non-identifying key ("SALARY") cannot turn the join quadratic.
    """
    def narrow(frame: pl.DataFrame, key: pl.Expr) -> pl.LazyFrame:
        return (
            frame.lazy()
            .select("id", *carry, "currency", _key=key)
            .filter(pl.col("_key").is_not_null() & (pl.col("_key") != ""))
            .with_columns(_h=pl.col("_key").hash(seed=_SEED_1), _h2=pl.col("_key").hash(seed=_SEED_2))
            # both sides sorted on the join key let polars merge instead of hashing: the two
            # sorts run side by side and cost less than the hash join they spare. Row order
            # never reaches the result (every later order is total, ending in the ids).
            .sort("_h")
        )

    fast = mode == "alnum"
    key = _alnum_literal(pl.col(column)) if fast else normalise_text(pl.col(column), mode)
    narrowed = pl.collect_all([narrow(left, key), narrow(right, key)])
    if fast and any(
        frame.get_column("_key").str.join("").str.contains(_NOT_ALNUM).any() for frame in narrowed
    ):
        key = normalise_text(pl.col(column), mode)
        narrowed = pl.collect_all([narrow(left, key), narrow(right, key)])
    return _hash_join(*(_without_crowded(frame.drop("_key"), max_key_repeats) for frame in narrowed))


_SEED_1, _SEED_2 = 0x5EED, 0xC0FFEE


def _without_crowded(frame: pl.DataFrame, max_key_repeats: int | None) -> pl.DataFrame:
    """Drop the rows whose key hash `_h` occurs more than `max_key_repeats` times."""
    # height - n_unique bounds how often any key can repeat: usually no counting is needed
    if max_key_repeats is not None and frame.height - frame.get_column("_h").n_unique() >= max_key_repeats:
        # run lengths of the sorted hashes: sorting a u64 column is far cheaper than grouping
        runs = frame.get_column("_h").sort().rle()
        crowded = runs.filter(runs.struct.field("len") > max_key_repeats).struct.field("value")
        if crowded.len():
            frame = frame.filter(~pl.col("_h").is_in(crowded.implode()))
    return frame


def _hash_join(left: pl.DataFrame, right: pl.DataFrame) -> pl.LazyFrame:
    """Join narrowed frames (id, carry, currency, _h, _h2) on `_h`; a merge join if both are sorted."""
    # a second, independent 64-bit hash must agree too: a false match needs a 128-bit collision
    return (
        left.lazy()
        .join(right.lazy(), on="_h", how="inner", suffix="_r")
        .filter((pl.col("_h2") == pl.col("_h2_r")) & (pl.col("currency") == pl.col("currency_r")))
        .drop("_h", "_h2", "_h2_r", "currency_r")
    )


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
    overflow: str = "skip",
) -> BandResult:
    """Pairs with equal currency, |amount delta| within the band and |day delta| <= `window`.

    `query` and `index` need columns id, amount, currency, d. `tolerances` is the frame from
    :func:`tolerance_columns`. Dates are exact; amounts are exact for absolute tolerances and
    a slight superset for relative ones (the band is computed generously from the query
    amount), so the caller filters with :func:`allowed_delta`.

    A query record with more than `max_candidates` candidates is, with ``overflow="skip"``,
    reported in `skipped` and gets none; with ``overflow="nearest"`` it keeps the
    `max_candidates` closest in amount (then day, then id). "nearest" suits rules that decide
    on something else (text similarity); "skip" suits rules for which a crowd means ambiguity.
    """
    if overflow not in ("skip", "nearest"):
        raise ValueError(f"overflow must be 'skip' or 'nearest', got {overflow!r}")
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
        piece, skip = _band_one_currency(q, ix, tol, window, max_candidates, overflow)
        pieces.append(piece)
        skipped.append(skip)
    if not pieces:
        return BandResult(pl.DataFrame(schema={"q_id": pl.Int64, "i_id": pl.Int64}), pl.Series("id", [], pl.Int64))
    return BandResult(pl.concat(pieces), pl.concat(skipped))


_AMOUNT_BITS = 41
"""Day-major keys hold ``amount + 2**40`` in the low 41 bits: |amount| < 2**40 (about 1.1e12
minor units, eleven billion euros) fits; larger records fall back to an exact-amount join."""


def _band_one_currency(
    q: pl.DataFrame, ix: pl.DataFrame, tol: dict, window: int, max_candidates: int, overflow: str = "skip"
) -> tuple[pl.DataFrame, pl.Series]:
    """Band join within one currency by binary search over a composite sort key.

    Two exact layouts; the one needing fewer searches wins:

    * amount-major (``amount * 2**B + day``): one search per amount offset ``k`` in
      ``[-band, band]``, each giving exactly the records with amount ``a + k`` and day within
      the window. Cheap for small absolute tolerances.
    * day-major (``day * 2**41 + amount``): one search per day offset in ``[-w, w]``, each
      giving exactly the records of that day with amount in the band. Used for wide bands
      (relative tolerances), where enumerating amounts would be hopeless.
    """
    day_min = min(q.get_column("d").min(), ix.get_column("d").min()) - window - 1  # type: ignore[operator]
    day_max = max(q.get_column("d").max(), ix.get_column("d").max()) + window + 1  # type: ignore[operator]
    day_bits = int(day_max - day_min).bit_length()
    q = q.with_columns(band=_band(tol).cast(pl.Int64), dd=(pl.col("d") - day_min).cast(pl.Int64))
    ix = ix.with_columns(dd=(pl.col("d") - day_min).cast(pl.Int64))
    max_band = int(q.get_column("band").max() or 0)
    amount_major = 2 * max_band + 1 <= 2 * window + 1 and max_band <= _MAX_ENUMERATED_TOLERANCE

    # records too large for the composite key are matched on exact amount by a plain join
    limit = (1 << (61 - day_bits)) if amount_major else (1 << (_AMOUNT_BITS - 1))
    too_big_q = pl.col("amount").abs() + pl.col("band") >= limit
    extra = _exact_amount_pairs(q.filter(too_big_q), ix.filter(pl.col("amount").abs() >= limit), window)
    q, ix = q.filter(~too_big_q), ix.filter(pl.col("amount").abs() < limit)
    if amount_major:
        ix = ix.sort("amount", "dd", "id")
        ranges = _amount_major_ranges(q, ix, max_band, window, day_bits)
    else:
        ix = ix.sort("dd", "amount", "id")
        ranges = _day_major_ranges(q, ix, window)
    if not ranges:
        empty = pl.DataFrame(schema={"q_id": pl.Int64, "i_id": pl.Int64})
        return (extra if extra.height else empty), pl.Series("id", [], pl.Int64)
    spans, skipped = _spans(ranges, max_candidates, overflow)
    pairs = _expand(spans, q, ix, max_candidates, overflow)
    if extra.height:
        pairs = pl.concat([pairs, extra])
    return pairs, skipped.rename("id")


def _band(tol: dict) -> pl.Expr:
    """Per query record, the amount band to search: wide enough for ``allowed(l, r)``, which
    depends on ``max(|l|, |r|)``, hence the generous ``num / (den - num)`` for relative ones."""
    numerator, denominator, absolute = tol["tol_num"], tol["tol_den"], tol["tol_abs"]
    if numerator:
        return pl.max_horizontal(
            pl.lit(absolute),
            floor_mul_div(pl.col("amount").abs(), pl.lit(numerator), pl.lit(denominator - numerator)) + 1,
        )
    return pl.lit(absolute, dtype=pl.Int64)


def _exact_amount_pairs(big_q: pl.DataFrame, big_ix: pl.DataFrame, window: int) -> pl.DataFrame:
    """Pairs of records too large for the composite key: equal amount, day within the window."""
    return (
        big_q.join(big_ix, on="amount", suffix="_i")
        .filter((pl.col("d") - pl.col("d_i")).abs() <= window)
        .select(pl.col("id").alias("q_id"), pl.col("id_i").alias("i_id"))
    )


def _amount_major_ranges(
    q: pl.DataFrame, ix: pl.DataFrame, max_band: int, window: int, day_bits: int
) -> list[pl.DataFrame]:
    """Index ranges (lo, hi, mid) per query and amount offset; `ix` sorted by amount, dd, id."""
    ranges = []
    shift = 1 << day_bits
    index_key = ix.get_column("amount") * shift + ix.get_column("dd")
    for offset in range(-max_band, max_band + 1):
        part = q.filter(pl.col("band") >= abs(offset)) if offset else q
        if part.height == 0:
            continue
        centre = (part.get_column("amount") + offset) * shift + part.get_column("dd")
        lo = index_key.search_sorted(centre - window, side="left")
        hi = index_key.search_sorted(centre + window, side="right")
        mid = index_key.search_sorted(centre, side="left")
        ranges.append(pl.DataFrame({"q_id": part.get_column("id"), "lo": lo, "hi": hi, "mid": mid}))
    return ranges


def _day_major_ranges(q: pl.DataFrame, ix: pl.DataFrame, window: int) -> list[pl.DataFrame]:
    """Index ranges (lo, hi, mid) per query and day offset; `ix` sorted by dd, amount, id."""
    ranges = []
    shift = 1 << _AMOUNT_BITS
    bias = 1 << (_AMOUNT_BITS - 1)
    index_key = ix.get_column("dd") * shift + (ix.get_column("amount") + bias)
    amount, qband = q.get_column("amount"), q.get_column("band")
    for offset in range(-window, window + 1):
        day = (q.get_column("dd") + offset) * shift
        lo = index_key.search_sorted(day + (amount - qband + bias).clip(0, shift - 1), side="left")
        hi = index_key.search_sorted(day + (amount + qband + bias).clip(0, shift - 1), side="right")
        mid = index_key.search_sorted(day + (amount + bias).clip(0, shift - 1), side="left")
        ranges.append(pl.DataFrame({"q_id": q.get_column("id"), "lo": lo, "hi": hi, "mid": mid}))
    return ranges


def _spans(ranges: list[pl.DataFrame], max_candidates: int, overflow: str) -> tuple[pl.DataFrame, pl.Series]:
    """Non-empty ranges, and the overflow policy applied: crowded queries skipped or clipped."""
    spans = (
        pl.concat(ranges)
        .with_columns(pl.col("lo").cast(pl.Int64), pl.col("hi").cast(pl.Int64), pl.col("mid").cast(pl.Int64))
        .filter(pl.col("hi") > pl.col("lo"))
    )
    spans = spans.with_columns(total=(pl.col("hi") - pl.col("lo")).sum().over("q_id"))
    crowded = pl.col("total") > max_candidates
    if overflow == "skip":
        skipped = spans.filter(crowded).get_column("q_id").unique().sort()
        return spans.filter(~crowded), skipped
    # each range is sorted by closeness along its own axis around `mid`: clip it to the
    # max_candidates positions either side, expand, then keep the closest overall
    spans = spans.with_columns(
        lo=pl.when(crowded).then(pl.max_horizontal("lo", pl.col("mid") - max_candidates)).otherwise("lo"),
        hi=pl.when(crowded).then(pl.min_horizontal("hi", pl.col("mid") + max_candidates)).otherwise("hi"),
    )
    return spans, pl.Series("q_id", [], pl.Int64)


def _expand(spans: pl.DataFrame, q: pl.DataFrame, ix: pl.DataFrame, max_candidates: int, overflow: str) -> pl.DataFrame:
    """(q_id, i_id) for every index position in the spans; "nearest" keeps the closest per query."""
    exploded = spans.select("q_id", pl.int_ranges("lo", "hi").alias("pos")).explode("pos", **EXPLODE)
    pairs = exploded.select("q_id", i_id=ix.get_column("id").gather(exploded.get_column("pos")))
    if overflow == "nearest" and pairs.height:
        positions = exploded.get_column("pos")
        closeness = pairs.with_columns(
            _ia=ix.get_column("amount").gather(positions), _id=ix.get_column("d").gather(positions)
        ).join(q.select(pl.col("id").alias("q_id"), _qa="amount", _qd="d"), on="q_id")
        pairs = (
            closeness.with_columns(_da=(pl.col("_ia") - pl.col("_qa")).abs(), _dd=(pl.col("_id") - pl.col("_qd")).abs())
            .sort("q_id", "_da", "_dd", "i_id")
            .filter(pl.int_range(pl.len()).over("q_id") < max_candidates)
            .select("q_id", "i_id")
        )
    return pairs


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
    ).explode("_day", **EXPLODE)
    index = index.with_columns(_day=pl.col("d"))
    return shifted.join(index, on=[*keys, "_day"], how="inner", suffix="_r").drop("_day")
