"""What one matching run returns: polars frames with fixed schemas, plus summary helpers.

Sign conventions for every delta: ``right - left``. ``amount_delta_minor = 3`` means the right
side's amount is 3 minor units larger; ``date_delta_days = -1`` means the right side was booked a
day earlier. For a group the "right" value of a one-left group is the sum of its members (and
the other way round for a one-right group: ``delta = right - sum(left members)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from app.engine.candidates import EXPLODE

PAIRS_SCHEMA = pl.Schema(
    {
        "left_id": pl.Int64,
        "right_id": pl.Int64,
        "rule": pl.Utf8,
        "status": pl.Utf8,
        "score": pl.Float64,
        "amount_delta_minor": pl.Int64,
        "date_delta_days": pl.Int64,
        "criteria": pl.Utf8,
    }
)
"""One-to-one matches: one row per pair, sorted by left_id. `criteria` is a comma-separated
list of what held, e.g. ``reference,currency,amount_exact,date_within_window,unique_candidate``
(a string, not a list column: a million list values cost seconds to build and sort)."""

GROUPS_SCHEMA = pl.Schema(
    {
        "group_id": pl.Int64,
        "rule": pl.Utf8,
        "status": pl.Utf8,
        "score": pl.Float64,
        "one_side": pl.Utf8,
        "one_id": pl.Int64,
        "many_ids": pl.List(pl.Int64),
        "amount_delta_minor": pl.Int64,
        "date_delta_days": pl.Int64,
        "criteria": pl.Utf8,
    }
)
"""One-to-many / many-to-one matches: one row per group; `one_side` holds the single record.
`date_delta_days` is the member date difference with the largest magnitude (signed).
group_id is 1..n in (one_side, one_id) order."""

DISCREPANCIES_SCHEMA = pl.Schema(
    {
        "left_id": pl.Int64,
        "right_id": pl.Int64,
        "group_id": pl.Int64,
        "rule": pl.Utf8,
        "field": pl.Utf8,
        "left_value": pl.Utf8,
        "right_value": pl.Utf8,
        "delta": pl.Int64,
    }
)
"""Fields that differ inside a match. For a pair both ids are set and group_id is null; for a
group, group_id is set and only the single record's id is. Order: pairs by field (amount,
booking_date, value_date, reference) and left_id, then groups by field and group_id. `field` is one of amount (delta in
minor units), booking_date, value_date (delta in days), reference, counterparty (delta null).
Reference and counterparty are listed only when both sides have one and they differ after
normalisation."""

SUMMARY_SCHEMA = pl.Schema(
    {
        "category": pl.Utf8,
        "currency": pl.Utf8,
        "left_count": pl.Int64,
        "right_count": pl.Int64,
        "left_amount_minor": pl.Int64,
        "right_amount_minor": pl.Int64,
    }
)
"""Counts and amount sums per category (confirmed, suggested, unmatched) and currency."""

RULE_STATS_SCHEMA = pl.Schema(
    {
        "rule": pl.Utf8,
        "kind": pl.Utf8,
        "candidates": pl.Int64,
        "pairs": pl.Int64,
        "groups": pl.Int64,
        "suggested": pl.Int64,
        "skipped_ambiguous": pl.Int64,
        "seconds": pl.Float64,
    }
)
"""Per rule: candidate pairs considered, matches made, and wall time (for tuning, not truth)."""


def match_rate(counts: Mapping[str, int]) -> float:
    """The match rate: the share of all records, both sides, that are in a *confirmed* match.

    `counts` holds record counts by ``{status}_{side}``: ``confirmed_left``, ``confirmed_right``,
    ``suggested_left``, ``suggested_right``, ``unmatched_left``, ``unmatched_right`` (missing
    keys count 0), as :meth:`MatchResult.counts` returns them and as the API's ``/summary``
    counts them live after review. Suggested matches, discrepancy pairs among them, wait for a
    person and do not count as matched; confirming one raises the rate. With no records at all
    the rate is 1.0. This is the one definition: every figure called match_rate comes from here.
    """
    statuses = ("confirmed", "suggested", "unmatched")
    total = sum(counts.get(f"{status}_{side}", 0) for status in statuses for side in ("left", "right"))
    confirmed = counts.get("confirmed_left", 0) + counts.get("confirmed_right", 0)
    return confirmed / total if total else 1.0


@dataclass(frozen=True)
class MatchResult:
    """The outcome of :func:`app.engine.match`: pure data, nothing persisted.

    Every left and right id appears exactly once across `pairs`, `groups` and the unmatched
    frames: no record is used twice and none is lost.
    """

    pairs: pl.DataFrame
    groups: pl.DataFrame
    unmatched_left: pl.DataFrame
    unmatched_right: pl.DataFrame
    discrepancies: pl.DataFrame
    summary: pl.DataFrame
    rule_stats: pl.DataFrame

    def group_links(self) -> pl.DataFrame:
        """Groups in long form: one row per (group_id, left_id, right_id) link, for storage."""
        exploded = self.groups.select("group_id", "rule", "status", "one_side", "one_id", "many_ids").explode(
            "many_ids", **EXPLODE
        )
        one_left = pl.col("one_side") == "left"
        return exploded.select(
            "group_id",
            "rule",
            "status",
            pl.when(one_left).then(pl.col("one_id")).otherwise(pl.col("many_ids")).alias("left_id"),
            pl.when(one_left).then(pl.col("many_ids")).otherwise(pl.col("one_id")).alias("right_id"),
        ).sort("group_id", "left_id", "right_id")

    def counts(self) -> dict[str, int]:
        """Record counts: matched per status and side, unmatched per side, totals."""
        links = self.group_links()
        out: dict[str, int] = {}
        for status in ("confirmed", "suggested"):
            pairs = self.pairs.filter(pl.col("status") == status)
            group_links = links.filter(pl.col("status") == status)
            out[f"{status}_left"] = pairs.height + group_links.get_column("left_id").n_unique() if group_links.height else pairs.height
            out[f"{status}_right"] = pairs.height + group_links.get_column("right_id").n_unique() if group_links.height else pairs.height
        out["unmatched_left"] = self.unmatched_left.height
        out["unmatched_right"] = self.unmatched_right.height
        out["total_left"] = out["confirmed_left"] + out["suggested_left"] + out["unmatched_left"]
        out["total_right"] = out["confirmed_right"] + out["suggested_right"] + out["unmatched_right"]
        return out

    @property
    def match_rate(self) -> float:
        """Share of all records (both sides) in a confirmed match, 0..1: see :func:`match_rate`."""
        return match_rate(self.counts())

    @property
    def match_rate_with_suggested(self) -> float:
        """Share of all records (both sides) in a confirmed or suggested match, 0..1.

        Not a match rate (suggestions wait for review): the share linked at all. Kept while
        app/jobs still records it; report :attr:`match_rate`.
        """
        c = self.counts()
        total = c["total_left"] + c["total_right"]
        matched = c["confirmed_left"] + c["confirmed_right"] + c["suggested_left"] + c["suggested_right"]
        return matched / total if total else 1.0
