"""The rule loop: run each rule on what is still unmatched, then assemble the result frames.

Each rule sees only the records that the rules before it left unmatched. One-to-one rules are
in :mod:`~app.engine.pairing`, group rules in :mod:`~app.engine.grouping`, the score they share
in :mod:`~app.engine.scoring`, discrepancies and summary in :mod:`~app.engine.report`.
"""

from __future__ import annotations

import time

import polars as pl

from app.engine.candidates import prepare, tolerance_columns, without_ids
from app.engine.grouping import group_rule, links, number_groups
from app.engine.pairing import STATUS, empty_pairs, pair_criteria, pair_rule
from app.engine.report import discrepancies, summary
from app.engine.result import PAIRS_SCHEMA, RULE_STATS_SCHEMA, MatchResult
from app.engine.rules import AmountDateRule, FuzzyRule, ReferenceRule, RuleSet
from app.records import CURRENCY_EXPONENTS, validate_records


def run(left: pl.DataFrame, right: pl.DataFrame, rules: RuleSet) -> MatchResult:
    """Match `left` against `right` with `rules`; see :func:`app.engine.match` for the contract."""
    left = validate_records(left, name="left")
    right = validate_records(right, name="right")
    currencies = sorted(
        set(left.get_column("currency").unique().to_list()) | set(right.get_column("currency").unique().to_list())
    )
    work_left, work_right = prepare(left, currencies), prepare(right, currencies)

    pair_parts: list[pl.DataFrame] = []
    group_parts: list[pl.DataFrame] = []
    criteria_text: dict[int, str] = {}
    stats: list[dict[str, object]] = []
    used_parts: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    for index, rule in enumerate(rules.rules):
        started = time.perf_counter()
        tolerances = tolerance_columns(currencies, lambda c, r=rule: rules.tolerance_for(r, c))
        stat = {"rule": rule.label, "kind": rule.kind, "candidates": 0, "pairs": 0, "groups": 0,
                "suggested": 0, "skipped_ambiguous": 0}
        one_to_one = isinstance(rule, (ReferenceRule, AmountDateRule, FuzzyRule))
        if one_to_one:
            criteria_text.update({index * 8 + code: text for code, text in pair_criteria(rule).items()})
        if work_left.height and work_right.height:
            if one_to_one:
                pairs = pair_rule(rule, index, work_left, work_right, tolerances, stat)
                pair_parts.append(pairs)
                used_left, used_right = pairs.select(id="left_id"), pairs.select(id="right_id")
            else:
                groups = group_rule(rule, work_left, work_right, tolerances, stat)
                group_parts.append(groups)
                grouped = links(groups)
                used_left, used_right = grouped.select(id="left_id").unique(), grouped.select(id="right_id").unique()
            used_parts.append((used_left, used_right))
            if index + 1 < len(rules.rules):  # the last rule's leftovers are computed once, below
                work_left = without_ids(work_left, used_left.get_column("id"))
                work_right = without_ids(work_right, used_right.get_column("id"))
        stat["seconds"] = round(time.perf_counter() - started, 4)
        stats.append(stat)

    internal = (pl.concat(pair_parts) if pair_parts else empty_pairs()).sort("left_id")
    pairs = _public_pairs(internal, rules, criteria_text)
    groups = number_groups(group_parts)
    used_left = pl.concat([u for u, _ in used_parts]) if used_parts else pl.DataFrame(schema={"id": pl.Int64})
    used_right = pl.concat([u for _, u in used_parts]) if used_parts else pl.DataFrame(schema={"id": pl.Int64})
    unmatched_left = without_ids(left, used_left.get_column("id")).sort("id")
    unmatched_right = without_ids(right, used_right.get_column("id")).sort("id")
    exponents = {code: CURRENCY_EXPONENTS[currency] for code, currency in enumerate(currencies)}
    return MatchResult(
        pairs=pairs,
        groups=groups,
        unmatched_left=unmatched_left,
        unmatched_right=unmatched_right,
        discrepancies=discrepancies(internal, pairs, groups, left, right, exponents, rules),
        summary=summary(internal, groups, unmatched_left, unmatched_right, left, right, currencies),
        rule_stats=pl.DataFrame(stats, schema=RULE_STATS_SCHEMA, orient="row"),
    )


def _public_pairs(internal: pl.DataFrame, rules: RuleSet, criteria_text: dict[int, str]) -> pl.DataFrame:
    """The internal pairs frame as :data:`~app.engine.result.PAIRS_SCHEMA`: codes become names."""
    labels = {index: rule.label for index, rule in enumerate(rules.rules)}
    return internal.select(
        "left_id",
        "right_id",
        rule=pl.col("_rule").replace_strict(labels, return_dtype=pl.Utf8),
        status=pl.col("_status").replace_strict(dict(enumerate(STATUS)), return_dtype=pl.Utf8),
        score="score",
        amount_delta_minor="_da",
        date_delta_days="_dd",
        criteria=(pl.col("_rule").cast(pl.Int64) * 8 + pl.col("_code")).replace_strict(
            criteria_text, return_dtype=pl.Utf8
        ),
    ).cast(dict(PAIRS_SCHEMA))
