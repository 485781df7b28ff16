"""Report: the discrepancies inside each match and the summary per category and currency.

Both are built from the columns the rules already carried (see
:data:`~app.engine.pairing.INTERNAL_PAIRS_SCHEMA`), not by joining the full record frames
again: on a million pairs those joins cost more than the matching. The exceptions are the
references of pairs that no reference rule made, and the one record of each group.

Trap: discrepancy values are text (exact decimal amounts, ISO dates), never floats; the
delta beside them is an integer (minor units or days, right - left).
"""

from __future__ import annotations

import polars as pl

from app.engine.candidates import normalise_text
from app.engine.grouping import links
from app.engine.pairing import STATUS
from app.engine.result import DISCREPANCIES_SCHEMA, SUMMARY_SCHEMA
from app.engine.rules import RuleSet
from app.records import CURRENCY_EXPONENTS


def discrepancies(
    internal: pl.DataFrame,
    pairs: pl.DataFrame,
    groups: pl.DataFrame,
    left: pl.DataFrame,
    right: pl.DataFrame,
    exponents: dict[int, int],
    rules: RuleSet,
) -> pl.DataFrame:
    """Fields that differ inside each match (:data:`~app.engine.result.DISCREPANCIES_SCHEMA`).

    `internal` is the internal pairs frame and `pairs` its public form (same rows, same order);
    `exponents` maps the engine's currency codes to their minor-unit exponents.
    """
    carried = internal.with_columns(rule=pairs.get_column("rule"))
    parts = _pair_differences(carried, exponents)
    parts += _reference_differences(carried, left, right, rules)
    if groups.height:
        parts += _group_differences(groups, left, right)
    # parts are each in left_id (or group_id) order already; concatenating them is deterministic
    # and spares a sort of a million rows with text columns
    return pl.concat([part.select(list(DISCREPANCIES_SCHEMA)).cast(dict(DISCREPANCIES_SCHEMA)) for part in parts])


def summary(
    internal: pl.DataFrame,
    groups: pl.DataFrame,
    unmatched_left: pl.DataFrame,
    unmatched_right: pl.DataFrame,
    left: pl.DataFrame,
    right: pl.DataFrame,
    currencies: list[str],
) -> pl.DataFrame:
    """Counts and sums per (category, currency) plus a ``total`` row per currency.

    Categories in order: confirmed, suggested, unmatched, total. Pairs are aggregated from
    carried columns; group members and unmatched records from their record frames.
    """
    parts = [_pair_totals(internal, currencies)]
    if groups.height:
        parts += _group_totals(groups, left, right)
    parts += [_unmatched_totals(unmatched_left, "left"), _unmatched_totals(unmatched_right, "right")]
    columns = list(SUMMARY_SCHEMA)
    by_category = (
        pl.concat([part.select(columns).cast(dict(SUMMARY_SCHEMA)) for part in parts])
        .group_by("category", "currency")
        .agg(pl.exclude("category", "currency").sum())
    )
    totals = by_category.group_by("currency").agg(pl.exclude("category", "currency").sum()).with_columns(
        category=pl.lit("total")
    )
    order = {"confirmed": 0, "suggested": 1, "unmatched": 2, "total": 3}
    return (
        pl.concat([by_category, totals.select(by_category.columns)])
        .with_columns(_o=pl.col("category").replace_strict(order, return_dtype=pl.Int64))
        .sort("_o", "currency")
        .select(columns)
    )


# --------------------------------------------------------------------------- discrepancies


def _pair_base() -> list[pl.Expr]:
    return [pl.col("left_id"), pl.col("right_id"), pl.lit(None, dtype=pl.Int64).alias("group_id"), pl.col("rule")]


def _pair_differences(carried: pl.DataFrame, exponents: dict[int, int]) -> list[pl.DataFrame]:
    """Amount, booking date and value date differences of pairs, from the carried columns."""
    exponent = pl.col("currency").replace_strict(exponents, return_dtype=pl.Int64)
    day_text = _day_texts(carried, ["ld", "rd", "lvd", "rvd"])

    def as_text(days: pl.Expr) -> pl.Expr:
        return days.replace_strict(day_text, default=None, return_dtype=pl.Utf8)

    base = _pair_base()
    return [
        carried.filter(pl.col("_da") != 0).select(
            *base,
            field=pl.lit("amount"),
            left_value=_amount_text(pl.col("la"), exponent),
            right_value=_amount_text(pl.col("ra"), exponent),
            delta=pl.col("_da"),
        ),
        carried.filter(pl.col("_dd") != 0).select(
            *base,
            field=pl.lit("booking_date"),
            left_value=as_text(pl.col("ld")),
            right_value=as_text(pl.col("rd")),
            delta=pl.col("_dd"),
        ),
        carried.filter(pl.col("lvd") != pl.col("rvd")).select(
            *base,
            field=pl.lit("value_date"),
            left_value=as_text(pl.col("lvd")),
            right_value=as_text(pl.col("rvd")),
            delta=(pl.col("rvd") - pl.col("lvd")).cast(pl.Int64),
        ),
    ]


def _reference_differences(
    carried: pl.DataFrame, left: pl.DataFrame, right: pl.DataFrame, rules: RuleSet
) -> list[pl.DataFrame]:
    """Differing references of pairs made by rules other than a reference rule (none or one part)."""
    by_reference = [i for i, rule in enumerate(rules.rules) if rule.kind == "reference"]
    keyless = carried.filter(~pl.col("_rule").is_in(by_reference)).select("left_id", "right_id", "rule")
    if not keyless.height:
        return []
    refs = keyless.join(left.select(left_id="id", left_ref="reference"), on="left_id").join(
        right.select(right_id="id", right_ref="reference"), on="right_id"
    )
    return [
        refs.filter(
            normalise_text(pl.col("left_ref"), "alnum") != normalise_text(pl.col("right_ref"), "alnum")
        ).sort("left_id").select(
            *_pair_base(), field=pl.lit("reference"), left_value="left_ref", right_value="right_ref",
            delta=pl.lit(None, dtype=pl.Int64),
        )
    ]


def _group_differences(groups: pl.DataFrame, left: pl.DataFrame, right: pl.DataFrame) -> list[pl.DataFrame]:
    """Amount and booking date differences of groups: the one record against its members' sum
    (amount) and the farthest member date (``up to ...``)."""
    one_left = pl.col("one_side") == "left"
    columns = [pl.col("id").alias("one_id"), "amount_minor", "currency", "booking_date"]
    one = pl.concat(
        [
            groups.filter(one_left).join(left.select(columns), on="one_id"),
            groups.filter(~one_left).join(right.select(columns), on="one_id"),
        ]
    ).sort("group_id")
    # the group's side of the comparison: sum = one's amount +/- delta (delta is right - left)
    group_sum = pl.when(one_left).then(pl.col("amount_minor") + pl.col("amount_delta_minor")).otherwise(
        pl.col("amount_minor") - pl.col("amount_delta_minor")
    )
    exponent = pl.col("currency").replace_strict(CURRENCY_EXPONENTS, return_dtype=pl.Int64)
    base = [
        pl.when(one_left).then(pl.col("one_id")).alias("left_id"),
        pl.when(~one_left).then(pl.col("one_id")).alias("right_id"),
        pl.col("group_id"),
        pl.col("rule"),
    ]
    one_text = _amount_text(pl.col("amount_minor"), exponent)
    sum_text = pl.concat_str(pl.lit("sum "), _amount_text(group_sum, exponent))
    one_date = pl.col("booking_date").cast(pl.Utf8)
    direction = pl.when(one_left).then(1).otherwise(-1)
    far_date = pl.concat_str(
        pl.lit("up to "),
        (pl.col("booking_date") + pl.duration(days=pl.col("date_delta_days") * direction)).cast(pl.Utf8),
    )
    return [
        one.filter(pl.col("amount_delta_minor") != 0).select(
            *base,
            field=pl.lit("amount"),
            left_value=pl.when(one_left).then(one_text).otherwise(sum_text),
            right_value=pl.when(one_left).then(sum_text).otherwise(one_text),
            delta=pl.col("amount_delta_minor"),
        ),
        one.filter(pl.col("date_delta_days") != 0).select(
            *base,
            field=pl.lit("booking_date"),
            left_value=pl.when(one_left).then(one_date).otherwise(far_date),
            right_value=pl.when(one_left).then(far_date).otherwise(one_date),
            delta=pl.col("date_delta_days"),
        ),
    ]


def _amount_text(amount: pl.Expr, exponent: pl.Expr) -> pl.Expr:
    """Exact decimal text of minor units: (-123456, exponent 2) -> "-1234.56"."""
    scale = pl.lit(10, dtype=pl.Int64).pow(exponent)
    magnitude = amount.abs()
    whole = (magnitude // scale).cast(pl.Utf8)
    fraction = (magnitude % scale).cast(pl.Utf8).str.zfill(exponent)
    sign = pl.when(amount < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.when(exponent == 0).then(pl.concat_str(sign, whole)).otherwise(
        pl.concat_str(sign, whole, pl.lit("."), fraction)
    )


def _day_texts(frame: pl.DataFrame, columns: list[str]) -> dict[int, str]:
    """ISO text of every distinct day number in `columns`.

    Formatting dates row by row costs ~0.7 s per million; a statement spans a few hundred
    distinct days, so format those once and look them up.
    """
    days = pl.concat([frame.get_column(c).drop_nulls().unique() for c in columns]).unique()
    return dict(zip(days.to_list(), days.cast(pl.Date).cast(pl.Utf8).to_list()))


# --------------------------------------------------------------------------- summary


def _pair_totals(internal: pl.DataFrame, currencies: list[str]) -> pl.DataFrame:
    names = dict(enumerate(currencies))
    status_name = pl.col("_status").replace_strict(dict(enumerate(STATUS)), return_dtype=pl.Utf8)
    return internal.group_by("_status", "currency").agg(
        left_count=pl.len().cast(pl.Int64),
        right_count=pl.len().cast(pl.Int64),
        left_amount_minor=pl.col("la").sum(),
        right_amount_minor=pl.col("ra").sum(),
    ).select(
        category=status_name,
        currency=pl.col("currency").replace_strict(names, return_dtype=pl.Utf8),
        left_count="left_count", right_count="right_count",
        left_amount_minor="left_amount_minor", right_amount_minor="right_amount_minor",
    )


def _group_totals(groups: pl.DataFrame, left: pl.DataFrame, right: pl.DataFrame) -> list[pl.DataFrame]:
    """Members of groups per (status, currency), one part per side; the one record counts too."""
    zero = pl.lit(0, dtype=pl.Int64)
    grouped = links(groups)
    parts = []
    for column, frame, prefix in (("left_id", left, "left"), ("right_id", right, "right")):
        other = "right" if prefix == "left" else "left"
        members = grouped.select(id=pl.col(column), category="status").unique("id")
        parts.append(
            members.join(frame.select("id", "currency", "amount_minor"), on="id")
            .group_by("category", "currency")
            .agg(pl.len().cast(pl.Int64).alias(f"{prefix}_count"), pl.col("amount_minor").sum().alias(f"{prefix}_amount_minor"))
            .with_columns(zero.alias(f"{other}_count"), zero.alias(f"{other}_amount_minor"))
        )
    return parts


def _unmatched_totals(frame: pl.DataFrame, prefix: str) -> pl.DataFrame:
    zero = pl.lit(0, dtype=pl.Int64)
    other = "right" if prefix == "left" else "left"
    return (
        frame.group_by("currency")
        .agg(pl.len().cast(pl.Int64).alias(f"{prefix}_count"), pl.col("amount_minor").sum().alias(f"{prefix}_amount_minor"))
        .with_columns(category=pl.lit("unmatched"), **{f"{other}_count": zero, f"{other}_amount_minor": zero})
    )
