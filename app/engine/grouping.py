"""Grouping: the one-to-many and many-to-one rules (group, subset_sum) and the groups frame.

One rule, in steps: group keys on both sides, candidates in each direction the rule allows
(:func:`_key_groups` for a shared key, :func:`_subset_groups` for a bounded subset-sum
search), score, the ambiguity policy, then best-first assignment over hyperedges (a group
uses its one record and every member, so two groups conflict when they share any record).

A group candidate holds ``one_side``, ``one_id`` (the single record), ``many_ids`` (the
members, sorted), ``_da`` (signed, right - left, the members' sum standing for their side),
``allowed``, ``one_d`` and the members' ``min_d``/``max_d`` day numbers.

Every member's booking date must lie within the window of the one record's; the date delta
reported is the member difference with the largest magnitude.

Trap: the subset search sees only the ``max_candidates`` same-sign, smaller records closest in
date to its target; a split payment with a member outside that set is not found as a group.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from app.engine.assignment import assign_hyperedges, rank
from app.engine.candidates import (
    EXPLODE,
    allowed_delta,
    band_join,
    day_window_join,
    normalise_text,
)
from app.engine.result import GROUPS_SCHEMA
from app.engine.rules import GroupRule, SubsetSumRule
from app.engine.scoring import closeness, criteria_code, criteria_table

_TEXT_MODE = {"reference": "alnum", "counterparty": "casefold", "description": "casefold"}


def group_rule(
    rule: GroupRule | SubsetSumRule,
    work_left: pl.DataFrame,
    work_right: pl.DataFrame,
    tolerances: pl.DataFrame,
    stat: dict[str, object],
) -> pl.DataFrame:
    """Groups (:data:`~app.engine.result.GROUPS_SCHEMA`, group_id still null) that `rule` makes.

    Candidates for one-to-many (one left) and many-to-one (one right) are assigned together.
    Fills `stat` with the rule's candidates, groups, suggested and skipped_ambiguous counts.
    """
    cands = _scored(rule, _candidates(rule, work_left, work_right, tolerances))
    stat["candidates"] = cands.height
    if cands.height == 0:
        return pl.DataFrame(schema={**GROUPS_SCHEMA, "group_id": pl.Int64})
    members = _members(cands)
    cands = cands.with_columns(pl.col("cand").cast(pl.Int64)).join(_unrivalled(members), on="cand")
    if rule.on_ambiguity == "skip":
        before = cands.height
        cands = cands.filter(pl.col("_unique"))
        stat["skipped_ambiguous"] = before - cands.height
        members = members.join(cands.select("cand"), on="cand", how="semi")
    out = _groups(rule, _assigned(cands, members))
    stat["groups"] = out.height
    stat["suggested"] = out.filter(pl.col("status") == "suggested").height
    return out


def links(groups: pl.DataFrame) -> pl.DataFrame:
    """Groups as (left_id, right_id, status) links, one per member."""
    exploded = groups.select("status", "one_side", "one_id", "many_ids").explode("many_ids", **EXPLODE)
    one_left = pl.col("one_side") == "left"
    return exploded.select(
        left_id=pl.when(one_left).then(pl.col("one_id")).otherwise(pl.col("many_ids")),
        right_id=pl.when(one_left).then(pl.col("many_ids")).otherwise(pl.col("one_id")),
        status=pl.col("status"),
    )


def number_groups(parts: list[pl.DataFrame]) -> pl.DataFrame:
    """The groups of every rule in one frame, group_id 1..n in (one_side, one_id) order."""
    if not parts:
        return pl.DataFrame(schema=GROUPS_SCHEMA)
    groups = pl.concat(parts).sort("one_side", "one_id")
    return groups.with_columns(group_id=pl.int_range(1, groups.height + 1, dtype=pl.Int64)).select(list(GROUPS_SCHEMA))


def _candidates(
    rule: GroupRule | SubsetSumRule, work_left: pl.DataFrame, work_right: pl.DataFrame, tolerances: pl.DataFrame
) -> pl.DataFrame:
    """Group candidates in each direction `rule` allows, one-left first."""
    build: Callable[..., pl.DataFrame] = _key_groups if isinstance(rule, GroupRule) else _subset_groups
    # normalise the grouping/blocking fields once per side, not once per direction
    fields = rule.group_by if isinstance(rule, GroupRule) else rule.block_on
    work_left = work_left.with_columns([_group_key(field) for field in fields])
    work_right = work_right.with_columns([_group_key(field) for field in fields])
    parts = []
    if rule.direction in ("both", "one_left"):
        parts.append(build(rule, work_left, work_right, tolerances, "left"))
    if rule.direction in ("both", "one_right"):
        parts.append(build(rule, work_right, work_left, tolerances, "right"))
    return pl.concat(parts) if parts else _empty_candidates()


def _scored(rule: GroupRule | SubsetSumRule, cands: pl.DataFrame) -> pl.DataFrame:
    """Candidates with their ranking columns, score and a row number ``cand``."""
    cands = cands.with_columns(
        _abs_da=pl.col("_da").abs(),
        _abs_dd=pl.max_horizontal((pl.col("min_d") - pl.col("one_d")).abs(), (pl.col("max_d") - pl.col("one_d")).abs()),
        _size=pl.col("many_ids").list.len(),
        _ids_key=pl.col("many_ids").cast(pl.List(pl.Utf8)).list.join(","),
    )
    size_penalty = 0.02 * (pl.col("_size") - 2) if isinstance(rule, SubsetSumRule) else pl.lit(0.0)
    return cands.with_columns(
        score=(closeness(rule.kind, rule.date_window_days) - size_penalty).round(6)
    ).with_row_index("cand")


def _members(cands: pl.DataFrame) -> pl.DataFrame:
    """Every record each candidate uses: (cand, side, id), the one record and its members."""
    return pl.concat(
        [
            cands.select("cand", side=pl.col("one_side"), id=pl.col("one_id")),
            cands.select(
                "cand",
                side=pl.when(pl.col("one_side") == "left").then(pl.lit("right")).otherwise(pl.lit("left")),
                id=pl.col("many_ids"),
            ).explode("id", **EXPLODE),
        ]
    ).with_columns(pl.col("cand").cast(pl.Int64))


def _unrivalled(members: pl.DataFrame) -> pl.DataFrame:
    """Per candidate, ``_unique``: none of its records is used by another candidate."""
    return (
        members.with_columns(_n=pl.len().over("side", "id"))
        .group_by("cand")
        .agg(_unique=(pl.col("_n") == 1).all())
    )


def _assigned(cands: pl.DataFrame, members: pl.DataFrame) -> pl.DataFrame:
    """The candidates chosen best-first such that no record is in two chosen groups."""
    ranked = rank(
        cands,
        [("score", True), ("_abs_da", False), ("_size", False), ("_abs_dd", False), ("one_side", False),
         ("one_id", False), ("_ids_key", False)],
    ).with_columns(pl.col("_rank").cast(pl.Int64))
    chosen_ids = assign_hyperedges(members, ranked.select("cand", "_rank"))
    return ranked.join(pl.DataFrame({"cand": chosen_ids}), on="cand", how="semi")


def _groups(rule: GroupRule | SubsetSumRule, chosen: pl.DataFrame) -> pl.DataFrame:
    """The chosen candidates as group rows: status, signed date delta and criteria."""
    status = pl.lit(rule.status)
    if rule.on_ambiguity == "suggest":
        status = pl.when(pl.col("_unique")).then(status).otherwise(pl.lit("suggested"))
    signed_dd = pl.when((pl.col("max_d") - pl.col("one_d")).abs() >= (pl.col("min_d") - pl.col("one_d")).abs()).then(
        pl.col("max_d") - pl.col("one_d")
    ).otherwise(pl.col("min_d") - pl.col("one_d"))
    return chosen.with_columns(
        group_id=pl.lit(None, dtype=pl.Int64),
        rule=pl.lit(rule.label),
        status=status,
        amount_delta_minor=pl.col("_da"),
        date_delta_days=signed_dd.cast(pl.Int64),
        criteria=criteria_code().replace_strict(
            criteria_table([*_fixed_criteria(rule), "currency"], ("sum", "dates")), return_dtype=pl.Utf8
        ),
    ).select(list(GROUPS_SCHEMA))


def _fixed_criteria(rule: GroupRule | SubsetSumRule) -> list[str]:
    """What every group of `rule` shares, e.g. ``same_reference``, ``grouped_by_reference``."""
    fixed = [f"same_{field}" for field in getattr(rule, "match_on", ())]
    if isinstance(rule, SubsetSumRule):
        return fixed + [f"same_{field}" for field in rule.block_on] + ["subset_sum"]
    return fixed + [f"grouped_by_{field}" for field in rule.group_by]


def _empty_candidates() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "one_side": pl.Utf8, "one_id": pl.Int64, "many_ids": pl.List(pl.Int64), "_da": pl.Int64,
            "allowed": pl.Int64, "one_d": pl.Int32, "min_d": pl.Int32, "max_d": pl.Int32,
        }
    )


def _group_key(field: str) -> pl.Expr:
    if field == "booking_date":
        return pl.col("d").alias(f"_g_{field}")
    if field == "value_date":
        return pl.col("vd").alias(f"_g_{field}")
    return normalise_text(pl.col(field), _TEXT_MODE[field]).alias(f"_g_{field}")


def _key_groups(
    rule: GroupRule, one: pl.DataFrame, many: pl.DataFrame, tolerances: pl.DataFrame, one_side: str
) -> pl.DataFrame:
    keys = [f"_g_{field}" for field in rule.group_by]
    grouped = (
        many
        .drop_nulls(keys)
        .group_by([*keys, "currency"])
        .agg(
            many_ids=pl.col("id").sort(),
            total=pl.col("amount").sum(),
            min_d=pl.col("d").min(),
            max_d=pl.col("d").max(),
            _n=pl.len(),
        )
        .filter((pl.col("_n") >= 2) & (pl.col("_n") <= rule.max_size))
    )
    if grouped.height == 0:
        return _empty_candidates()
    window = rule.date_window_days
    if rule.match_on:
        on = [f"_g_{field}" for field in rule.match_on]
        one_keyed = one.drop_nulls(on)
        joined = one_keyed.join(grouped.drop([k for k in keys if k not in on]), on=[*on, "currency"], how="inner")
    else:
        index = grouped.with_row_index("gid").with_columns(pl.col("gid").cast(pl.Int64))
        band = band_join(
            one,
            index.select(pl.col("gid").alias("id"), pl.col("total").alias("amount"), "currency", pl.col("min_d").alias("d")),
            tolerances=tolerances,
            window=window,
            max_candidates=1_000,
        )
        joined = band.pairs.join(one, left_on="q_id", right_on="id").rename({"q_id": "id"}).join(
            index.drop("currency"), left_on="i_id", right_on="gid"
        )
    return _finish_candidates(joined, tolerances, window, one_side)


def _subset_groups(
    rule: SubsetSumRule, one: pl.DataFrame, many: pl.DataFrame, tolerances: pl.DataFrame, one_side: str
) -> pl.DataFrame:
    """Bounded subset-sum: combinations of 2..max_size blocked candidates, built by self-joins."""
    window = rule.date_window_days
    keys = [f"_g_{field}" for field in rule.block_on]
    pool = many.filter(pl.col("amount") != 0)
    paired = day_window_join(one, pool, on=keys, window=window)
    pool_cands = (
        paired.filter(
            (pl.col("amount").sign() == pl.col("amount_r").sign())
            & (pl.col("amount_r").abs() < pl.col("amount").abs())
        )
        .with_columns(_adist=(pl.col("d_r") - pl.col("d")).abs())
        .sort("id", "_adist", "id_r")
        .with_columns(_k=pl.int_range(pl.len()).over("id"))
        .filter(pl.col("_k") < rule.max_candidates)
        .select("id", "amount", "d", "currency", "_k", c_id="id_r", c_amount="amount_r", c_d="d_r")
    )
    if pool_cands.height == 0:
        return _empty_candidates()
    target_info = pool_cands.select("id", "amount", "d", "currency").unique("id")
    members = pool_cands.select("id", "_k", "c_id", "c_amount", "c_d")
    tol_by_target = target_info.join(tolerances, on="currency", how="left").select(
        "id", "tol_abs", "tol_num", "tol_den", "amount"
    )
    combos = members.select(
        "id",
        _last=pl.col("_k"),
        many_ids=pl.concat_list("c_id"),
        total=pl.col("c_amount"),
        min_d=pl.col("c_d"),
        max_d=pl.col("c_d"),
    )
    found: list[pl.DataFrame] = []
    for _size in range(2, rule.max_size + 1):
        combos = (
            combos.join(members, on="id")
            .filter(pl.col("_k") > pl.col("_last"))
            .select(
                "id",
                _last=pl.col("_k"),
                many_ids=pl.concat_list("many_ids", "c_id"),
                total=pl.col("total") + pl.col("c_amount"),
                min_d=pl.min_horizontal("min_d", "c_d"),
                max_d=pl.max_horizontal("max_d", "c_d"),
            )
            .join(tol_by_target, on="id")
        )
        limit = allowed_delta(pl.col("amount"), pl.col("total"))
        found.append(combos.filter((pl.col("amount") - pl.col("total")).abs() <= limit).drop(tol_by_target.columns[1:]))
        # same-sign members only grow the sum: prune partial sums already past the target
        combos = combos.filter(pl.col("total").abs() < pl.col("amount").abs()).drop(tol_by_target.columns[1:])
        if combos.height == 0:
            break
    valid = pl.concat(found).with_columns(pl.col("many_ids").list.sort())
    joined = valid.join(target_info, on="id")
    return _finish_candidates(joined, tolerances, window, one_side)


def _finish_candidates(joined: pl.DataFrame, tolerances: pl.DataFrame, window: int, one_side: str) -> pl.DataFrame:
    """Common tail: tolerance and window checks, signed delta right - left."""
    delta = pl.col("total") - pl.col("amount") if one_side == "left" else pl.col("amount") - pl.col("total")
    return (
        joined.join(tolerances, on="currency", how="left")
        .with_columns(_da=delta, allowed=allowed_delta(pl.col("amount"), pl.col("total")))
        .filter(
            (pl.col("_da").abs() <= pl.col("allowed"))
            & ((pl.col("min_d") - pl.col("d")).abs() <= window)
            & ((pl.col("max_d") - pl.col("d")).abs() <= window)
        )
        .select(
            one_side=pl.lit(one_side),
            one_id=pl.col("id"),
            many_ids=pl.col("many_ids"),
            _da=pl.col("_da"),
            allowed=pl.col("allowed"),
            one_d=pl.col("d"),
            min_d=pl.col("min_d"),
            max_d=pl.col("max_d"),
        )
    )
