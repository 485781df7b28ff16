"""Pairing: the one-to-one rules (reference, amount_date, fuzzy) and the pairs frame they make.

One rule, in steps: candidates (a key join for the reference rule, a band join on amount and
date otherwise), deltas and score (plus text similarity for the fuzzy rule), the ambiguity
policy, then 1:1 best-first assignment of the contested rest.

The internal pairs frame (:data:`INTERNAL_PAIRS_SCHEMA`) is what the rule loop and the report
read: ids, ``_rule`` (the rule's index), ``_status`` (index in :data:`STATUS`), score, ``_da``
and ``_dd`` (signed deltas, right - left), ``_code`` (see :func:`~app.engine.scoring.criteria_code`)
and the records' own amounts and day numbers (``la ra ld rd lvd rvd``) and currency code. The
report builds discrepancies and summaries from these carried columns instead of joining the
full record frames again.

Trap: a right record with more candidates than ``max_candidates`` is as ambiguous as a left
one; the keyless rule drops it too, while the fuzzy rule keeps the nearest and lets the text
decide.
"""

from __future__ import annotations

import polars as pl

from app.engine.assignment import assign_pairs, rank
from app.engine.candidates import allowed_delta, band_join, text_key_join
from app.engine.rules import AmountDateRule, FuzzyRule, ReferenceRule
from app.engine.scoring import (
    closeness,
    criteria_code,
    criteria_table,
    with_shared_words,
    with_similarity,
)

PairRule = ReferenceRule | AmountDateRule | FuzzyRule

STATUS = ("confirmed", "suggested")
"""Status names by the code held in ``_status``."""

INTERNAL_PAIRS_SCHEMA = {
    "left_id": pl.Int64, "right_id": pl.Int64, "_rule": pl.Int16, "_status": pl.Int8, "score": pl.Float64,
    "_da": pl.Int64, "_dd": pl.Int64, "_code": pl.Int8, "la": pl.Int64, "ra": pl.Int64, "ld": pl.Int32,
    "rd": pl.Int32, "lvd": pl.Int32, "rvd": pl.Int32, "currency": pl.Int16,
}


def empty_pairs() -> pl.DataFrame:
    """An internal pairs frame without rows."""
    return pl.DataFrame(schema=INTERNAL_PAIRS_SCHEMA)


def pair_criteria(rule: PairRule) -> dict[int, str]:
    """The criteria strings of `rule`'s pairs, by criteria code."""
    fixed = {"reference": ["reference", "currency"], "fuzzy": ["text_similar", "currency"]}.get(rule.kind, ["currency"])
    return criteria_table(fixed, within="beyond_tolerance" if _beyond(rule) else "within_tolerance")


def _beyond(rule: PairRule) -> bool:
    """Whether `rule` pairs amounts *beyond* its tolerance (a discrepancy rule)."""
    return isinstance(rule, ReferenceRule) and rule.amounts == "beyond_tolerance"


def pair_rule(
    rule: PairRule,
    index: int,
    work_left: pl.DataFrame,
    work_right: pl.DataFrame,
    tolerances: pl.DataFrame,
    stat: dict[str, object],
) -> pl.DataFrame:
    """The pairs `rule` (at position `index` of the rule set) makes, as an internal pairs frame.

    Fills `stat` with the rule's candidates, pairs, suggested and skipped_ambiguous counts.
    """
    cands = _candidates(rule, work_left, work_right, tolerances, stat)
    cands = _scored(rule, cands, work_left, work_right, tolerances)
    cands = cands.with_columns(_unique=_no_rival(cands))
    stat["candidates"] = cands.height
    if rule.on_ambiguity == "skip":
        before = cands.height
        cands = cands.filter(pl.col("_unique"))
        stat["skipped_ambiguous"] = stat["skipped_ambiguous"] + before - cands.height  # type: ignore[operator]
    out = _pairs(rule, index, _assigned(cands))
    stat["pairs"] = out.height
    stat["suggested"] = out.filter(pl.col("_status") == 1).height
    return out


def _candidates(
    rule: PairRule, work_left: pl.DataFrame, work_right: pl.DataFrame, tolerances: pl.DataFrame, stat: dict[str, object]
) -> pl.DataFrame | pl.LazyFrame:
    """Candidate pairs with both records' amounts, days and the currency (see :func:`_pair_select`)."""
    if isinstance(rule, ReferenceRule):
        joined = text_key_join(
            work_left,
            work_right,
            column="reference",
            mode=rule.normalize,
            max_key_repeats=rule.max_key_repeats,
            carry=("amount", "d", "vd"),
        )
        return joined.select(_pair_select())
    band = band_join(
        work_left, work_right, tolerances=tolerances, window=rule.date_window_days, max_candidates=rule.max_candidates,
        overflow="nearest" if isinstance(rule, FuzzyRule) else "skip",
    )
    stat["skipped_ambiguous"] = band.skipped.len()
    cands = (
        band.pairs.join(work_left.select("id", "amount", "d", "vd", "currency"), left_on="q_id", right_on="id")
        .join(work_right.select("id", "amount", "d", "vd"), left_on="i_id", right_on="id", suffix="_r")
        .rename({"q_id": "id", "i_id": "id_r"})
        .select(_pair_select())
    )
    # a right record with too many candidates is as ambiguous as a left one (keyless rule only)
    crowded = cands.group_by("right_id").len().filter(pl.col("len") > rule.max_candidates)
    if crowded.height and not isinstance(rule, FuzzyRule):
        stat["skipped_ambiguous"] = stat["skipped_ambiguous"] + crowded.height  # type: ignore[operator]
        cands = cands.join(crowded.select("right_id"), on="right_id", how="anti")
    return cands


def _scored(
    rule: PairRule,
    cands: pl.DataFrame | pl.LazyFrame,
    work_left: pl.DataFrame,
    work_right: pl.DataFrame,
    tolerances: pl.DataFrame,
) -> pl.DataFrame:
    """The candidates within tolerance and window, with deltas and score (and similarity)."""
    window = rule.date_window_days
    score = closeness(rule.kind, window)
    if isinstance(rule, FuzzyRule):
        cands = with_similarity(rule, _deltas(cands, tolerances, window).collect(), work_left, work_right)
        cands = with_shared_words(rule, cands, work_left, work_right)
        return cands.with_columns(score=(score * pl.col("similarity")).round(6))
    return _deltas(cands, tolerances, window, beyond=_beyond(rule)).with_columns(score=score.round(6)).collect()


def _assigned(cands: pl.DataFrame) -> pl.LazyFrame:
    """The chosen candidates: every unrivalled one, then the contested rest best-first, 1:1.

    A candidate whose two records have no other candidate is chosen whatever the order; only
    the contested rest needs ranking and the best-first rounds.
    """
    contested = cands.filter(~pl.col("_unique"))
    ranked = rank(
        contested,
        [("score", True), ("_abs_da", False), ("_abs_dd", False), ("left_id", False), ("right_id", False)],
    )
    return pl.concat([cands.lazy().filter(pl.col("_unique")), assign_pairs(ranked).drop("_rank").lazy()])


def _pairs(rule: PairRule, index: int, chosen: pl.LazyFrame) -> pl.DataFrame:
    """The chosen candidates as an internal pairs frame, with status by the ambiguity policy."""
    status = pl.lit(STATUS.index(rule.status), dtype=pl.Int8)
    if rule.on_ambiguity == "suggest":
        status = pl.when(pl.col("_unique")).then(status).otherwise(pl.lit(1, dtype=pl.Int8))
    return chosen.select(
        "left_id",
        "right_id",
        _rule=pl.lit(index, dtype=pl.Int16),
        _status=status,
        score=pl.col("score"),
        _da=pl.col("_da"),
        _dd=pl.col("_dd"),
        _code=criteria_code(),
        la="la", ra="ra", ld="ld", rd="rd", lvd="lvd", rvd="rvd", currency="currency",
    ).collect()


def _no_rival(cands: pl.DataFrame) -> pl.Expr:
    """True where neither record of the candidate appears in another candidate.

    ``n_unique`` is a cheap test that usually proves there are no rivals at all, sparing the
    costlier per-row duplicate detection.
    """
    unique = pl.lit(True)
    for column in ("left_id", "right_id"):
        if cands.get_column(column).n_unique() < cands.height:
            unique = unique & ~pl.col(column).is_duplicated()
    return unique


def _pair_select() -> list[pl.Expr]:
    return [
        pl.col("id").alias("left_id"),
        pl.col("id_r").alias("right_id"),
        pl.col("amount").alias("la"),
        pl.col("amount_r").alias("ra"),
        pl.col("d").alias("ld"),
        pl.col("d_r").alias("rd"),
        pl.col("vd").alias("lvd"),
        pl.col("vd_r").alias("rvd"),
        "currency",
    ]


def _deltas(
    cands: pl.DataFrame | pl.LazyFrame, tolerances: pl.DataFrame, window: int, *, beyond: bool = False
) -> pl.LazyFrame:
    """Add _da/_dd (right - left), their magnitudes and `allowed`; keep what passes.

    With absolute tolerances only (the usual case) `allowed` is a per-currency constant looked
    up from a tiny map; the exact relative formula needs the tolerance columns joined in.

    `beyond` keeps the other pairs: amounts of the same sign more than `allowed` apart. Their
    `allowed` then becomes ``max(|left|, |right|)``, the largest difference two amounts of one
    sign can have, so that the score still measures how much of it the pair uses.
    """
    lazy = cands.lazy()
    if tolerances.get_column("tol_num").max() == 0:
        absolute = dict(zip(tolerances.get_column("currency").to_list(), tolerances.get_column("tol_abs").to_list()))
        if len(set(absolute.values())) <= 1:
            allowed = pl.lit(next(iter(absolute.values()), 0), dtype=pl.Int64)
        else:
            allowed = pl.col("currency").replace_strict(absolute, return_dtype=pl.Int64)
    else:
        lazy = lazy.join(tolerances.lazy(), on="currency", how="left")
        allowed = allowed_delta(pl.col("la"), pl.col("ra"))
    lazy = lazy.with_columns(
        _da=pl.col("ra") - pl.col("la"),
        _dd=(pl.col("rd") - pl.col("ld")).cast(pl.Int64),
        allowed=allowed,
    ).with_columns(_abs_da=pl.col("_da").abs(), _abs_dd=pl.col("_dd").abs())
    if not beyond:
        return lazy.filter((pl.col("_abs_da") <= pl.col("allowed")) & (pl.col("_abs_dd") <= window))
    return lazy.filter(
        (pl.col("_abs_da") > pl.col("allowed"))
        & (pl.col("la").sign() == pl.col("ra").sign())
        & (pl.col("_abs_dd") <= window)
    ).with_columns(allowed=pl.max_horizontal(pl.col("la").abs(), pl.col("ra").abs()))
