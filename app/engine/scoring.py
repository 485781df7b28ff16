"""Scoring: how good a candidate is (score, text similarity) and why (criteria codes).

Scores (0..1, higher is better) share one shape so that they read the same in every rule::

    score = base * (1 - 0.2 * |amount delta| / (allowed + 1) - 0.1 * |date delta| / (window + 1))

with base 1.0 (reference), 0.9 (amount_date), 0.85 (group), 0.8 (subset_sum, minus 0.02 per
member beyond two) and 0.7 * similarity (fuzzy). An exact pair on the same day scores the base.
The score orders candidates within a rule; across rules, priority decides, not the score.

A fuzzy candidate also needs evidence beyond its score (:func:`with_shared_words`): enough
shared words, one of them distinctive.

The expressions read the candidate columns ``_abs_da`` (|amount delta|), ``_abs_dd`` (|date
delta|), ``allowed`` (the tolerance in minor units), ``_da`` (signed amount delta) and
``_unique`` (no rival candidate).
"""

from __future__ import annotations

import polars as pl

from app.engine.candidates import EXPLODE, normalise_text
from app.engine.rules import FuzzyRule

BASE = {"reference": 1.0, "amount_date": 0.9, "group": 0.85, "subset_sum": 0.8, "fuzzy": 0.7}
"""The score of an exact, same-day candidate of each rule kind."""


def closeness(kind: str, window: int) -> pl.Expr:
    """The score before rounding: the kind's base, less the share of tolerance and window used."""
    return BASE[kind] * (
        1 - 0.2 * pl.col("_abs_da") / (pl.col("allowed") + 1) - 0.1 * pl.col("_abs_dd") / (window + 1)
    )


def with_similarity(
    rule: FuzzyRule, cands: pl.DataFrame, work_left: pl.DataFrame, work_right: pl.DataFrame
) -> pl.DataFrame:
    """Text similarity 0..1 of each candidate pair, computed by rapidfuzz in C over all pairs.

    Adds the column ``similarity`` (rounded to 4 places) and keeps the pairs reaching
    ``rule.min_similarity``.
    """
    from rapidfuzz import fuzz, process

    def texts(work: pl.DataFrame, id_name: str) -> pl.DataFrame:
        return work.select(pl.col("id").alias(id_name), _text(rule).alias(f"_text_{id_name}"))

    cands = cands.join(texts(work_left, "left_id"), on="left_id").join(texts(work_right, "right_id"), on="right_id")
    if cands.height == 0:
        return cands.with_columns(similarity=pl.lit(0.0)).drop("_text_left_id", "_text_right_id")
    left_texts = cands.get_column("_text_left_id").to_list()
    right_texts = cands.get_column("_text_right_id").to_list()
    # token_sort first: it costs about half of token_set, which then sees only the survivors
    scorers = (fuzz.token_sort_ratio, fuzz.token_set_ratio) if rule.scorer == "balanced" else (getattr(fuzz, rule.scorer),)
    # a mean of n scores (each <= 100) reaches m only if every score reaches n*m - (n-1)*100:
    # rapidfuzz may stop early below that cutoff (it then returns 0, which keeps the mean below m)
    # Each scorer after the first runs only on the pairs still in the race.
    cutoff = max(0.0, 100.0 * (len(scorers) * rule.min_similarity - (len(scorers) - 1)))
    total = pl.Series("similarity", [0.0] * cands.height, dtype=pl.Float64)
    alive = pl.Series("alive", [True] * cands.height)
    for scorer in scorers:
        positions = alive.arg_true()
        lefts = [left_texts[i] for i in positions.to_list()] if positions.len() < cands.height else left_texts
        rights = [right_texts[i] for i in positions.to_list()] if positions.len() < cands.height else right_texts
        raw = pl.Series(process.cpdist(lefts, rights, scorer=scorer, score_cutoff=cutoff, workers=-1), dtype=pl.Float64)
        total = total.scatter(positions, total.gather(positions) + raw)
        alive = alive.scatter(positions, raw >= cutoff)
        if not alive.any():
            break
    similarity = pl.Series("similarity", alive, dtype=pl.Boolean).cast(pl.Float64) * total / (100.0 * len(scorers))
    return (
        cands.with_columns(similarity=similarity.round(4))
        .filter(pl.col("similarity") >= rule.min_similarity)
        .drop("_text_left_id", "_text_right_id")
    )


def _text(rule: FuzzyRule) -> pl.Expr:
    """The text a fuzzy rule compares: its fields, normalised ("casefold") and joined."""
    parts = [normalise_text(pl.col(f), "casefold") for f in rule.fields]
    return pl.concat_str(parts, separator=" ", ignore_nulls=True).fill_null("")


_WORD = r"[\p{L}\p{N}]+"


def with_shared_words(
    rule: FuzzyRule, cands: pl.DataFrame, work_left: pl.DataFrame, work_right: pl.DataFrame
) -> pl.DataFrame:
    """The candidates whose texts share at least ``rule.min_shared_words`` words, one of them
    distinctive: on at most ``rule.common_word_lines`` lines of each side's `work` frame.

    Words are runs of letters and digits of the normalised text. The candidates are few by now
    (they passed the similarity); the word counts cover every line the rule sees.
    """
    if cands.height == 0:
        return cands
    left_words, right_words = _words(rule, work_left), _words(rule, work_right)
    shared = (
        cands.select("left_id", "right_id")
        .join(left_words.rename({"id": "left_id", "_words": "_lw"}), on="left_id")
        .join(right_words.rename({"id": "right_id", "_words": "_rw"}), on="right_id")
        .select("left_id", "right_id", _shared=pl.col("_lw").list.set_intersection("_rw"))
        .filter(pl.col("_shared").list.len() >= rule.min_shared_words)
    )
    if rule.common_word_lines is not None:
        common = pl.concat([_common(left_words, rule.common_word_lines), _common(right_words, rule.common_word_lines)])
        shared = (
            shared.explode("_shared", **EXPLODE)
            .join(common, left_on="_shared", right_on="word", how="anti")
            .select("left_id", "right_id")
            .unique()
        )
    return cands.join(shared.select("left_id", "right_id"), on=["left_id", "right_id"], how="semi")


def _words(rule: FuzzyRule, work: pl.DataFrame) -> pl.DataFrame:
    """Per line: id and ``_words``, the distinct words of its text."""
    return work.select("id", _words=_text(rule).str.extract_all(_WORD).list.unique())


def _common(words: pl.DataFrame, max_lines: int) -> pl.DataFrame:
    """The words (column ``word``) found on more than `max_lines` lines."""
    counts = words.select(word=pl.col("_words")).explode("word", **EXPLODE).group_by("word").len()
    return counts.filter(pl.col("len") > max_lines).select("word")


def criteria_table(
    fixed: list[str], words: tuple[str, str] = ("amount", "date"), within: str = "within_tolerance"
) -> dict[int, str]:
    """The 8 possible comma-separated criteria strings of a rule, by :func:`criteria_code`.

    `within` names an amount that is not exact: ``within_tolerance``, or ``beyond_tolerance``
    for a discrepancy rule. Building strings row by row costs seconds on a million pairs; a
    3-bit code per row and a lookup at the end cost milliseconds.
    """
    amount, date = words
    table = {}
    for code in range(8):
        parts = list(fixed)
        parts.append(f"{amount}_exact" if code & 4 else f"{amount}_{within}")
        parts.append(f"{date}_exact" if code & 2 else f"{date}_within_window")
        if code & 1:
            parts.append("unique_candidate")
        table[code] = ",".join(parts)
    return table


def criteria_code() -> pl.Expr:
    """Per candidate, 3 bits: amount exact (4), date exact (2), no rival candidate (1)."""
    return (
        (pl.col("_da") == 0).cast(pl.Int8) * 4
        + (pl.col("_abs_dd") == 0).cast(pl.Int8) * 2
        + pl.col("_unique").cast(pl.Int8)
    ).cast(pl.Int8)
