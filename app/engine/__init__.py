"""The matching engine: two record frames in, a :class:`MatchResult` out. Pure: no I/O, no state.

``match(left, right, rules)`` runs the rules of `rules` in priority order. Each rule only sees
records that earlier rules left unmatched, builds candidate pairs with polars joins (never a
Python loop per record), scores them and assigns them 1:1 best-first. Deterministic: the output
depends on the records' ids and values only, not on row order, and ties break by
(score desc, |amount delta|, |date delta|, left_id, right_id).

A dry run is the caller's concern: ``match`` never persists anything, so "dry run" means
calling it and not storing the result.

Modules, in import order::

    rules        configuration: rules, tolerances, rule sets
    candidates   blocking joins (key, band, day window) and the working columns
    assignment   best-first selection, 1:1 and over hyperedges (groups)
    result       output schemas and MatchResult
    scoring      score, text similarity, criteria codes
    pairing      the one-to-one rules (reference, amount_date, fuzzy)
    grouping     the group rules (group, subset_sum)
    report       discrepancies and summary
    matcher      the rule loop that runs them all
"""

from __future__ import annotations

import polars as pl

from app.engine.result import (
    DISCREPANCIES_SCHEMA,
    GROUPS_SCHEMA,
    PAIRS_SCHEMA,
    RULE_STATS_SCHEMA,
    SUMMARY_SCHEMA,
    MatchResult,
    match_rate,
)
from app.engine.rules import (
    DEFAULT_TOLERANCES,
    AmountDateRule,
    FuzzyRule,
    GroupRule,
    ReferenceRule,
    Rule,
    RuleSet,
    SubsetSumRule,
    Tolerance,
    default_rules,
)


def match(left: pl.DataFrame, right: pl.DataFrame, rules: RuleSet | None = None) -> MatchResult:
    """Match `left` against `right` (both :data:`app.records.RECORD_SCHEMA` frames).

    Raises :class:`app.records.InvalidRecords` when a frame does not follow the schema (missing
    column, wrong dtype, duplicate id, unknown currency). Records are only ever matched within
    one currency; an amount is never converted.
    """
    from app.engine.matcher import run

    return run(left, right, rules or RuleSet())


__all__ = [
    "AmountDateRule",
    "DEFAULT_TOLERANCES",
    "DISCREPANCIES_SCHEMA",
    "FuzzyRule",
    "GROUPS_SCHEMA",
    "GroupRule",
    "MatchResult",
    "PAIRS_SCHEMA",
    "RULE_STATS_SCHEMA",
    "ReferenceRule",
    "Rule",
    "RuleSet",
    "SUMMARY_SCHEMA",
    "SubsetSumRule",
    "Tolerance",
    "default_rules",
    "match",
    "match_rate",
]
