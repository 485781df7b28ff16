"""The engine against generated data with planted truth: precision/recall per kind, determinism, accounting.

Both sides go through the CSV importer first (format, delimiter, columns and dates detected;
decimal point with English headers, decimal comma with German ones) and are matched with the
default rules: what an upload with no configuration gets.
"""

from __future__ import annotations

import polars as pl
import pytest

from app import datagen
from app.engine import ReferenceRule, RuleSet, match

TARGET = 0.99
"""Precision and recall every planted kind must reach (issue 12), here at 10,000 records per
side; the benchmark shows the same table at 100,000."""


@pytest.fixture(scope="module")
def generated() -> datagen.Dataset:
    return datagen.generate(10_000, seed=11)


@pytest.fixture(scope="module", params=[".", ","], ids=["decimal-point", "decimal-comma"])
def dataset(request: pytest.FixtureRequest, generated: datagen.Dataset) -> datagen.Dataset:
    return datagen.through_importer(generated, decimal=request.param)


@pytest.fixture(scope="module")
def result(dataset: datagen.Dataset):  # noqa: ANN201
    return match(dataset.left, dataset.right)


@pytest.fixture(scope="module")
def scores(dataset: datagen.Dataset, result) -> dict[str, dict[str, float]]:  # noqa: ANN001
    return {row["kind"]: row for row in datagen.evaluate(dataset, result).iter_rows(named=True)}


def test_import_keeps_ids_and_values(generated: datagen.Dataset, dataset: datagen.Dataset) -> None:
    columns = ["id", "reference", "amount_minor", "currency", "booking_date", "value_date", "counterparty", "description"]
    assert dataset.left.select(columns).equals(generated.left.select(columns))
    assert dataset.right.select(columns).equals(generated.right.select(columns))


@pytest.mark.parametrize("kind", datagen.KINDS)
def test_default_rules_find_every_planted_kind(scores: dict[str, dict[str, float]], kind: str) -> None:
    row = scores[kind]
    assert row["planted"] >= 50, row
    assert row["precision"] >= TARGET and row["recall"] >= TARGET, row


def test_no_record_used_twice_and_none_lost(dataset: datagen.Dataset, result) -> None:  # noqa: ANN001
    assert datagen.records_used_twice(result) == 0
    links = result.group_links()
    left_seen = pl.concat(
        [result.pairs.get_column("left_id"), links.get_column("left_id").unique(), result.unmatched_left.get_column("id")]
    )
    right_seen = pl.concat(
        [result.pairs.get_column("right_id"), links.get_column("right_id").unique(), result.unmatched_right.get_column("id")]
    )
    assert left_seen.sort().to_list() == dataset.left.get_column("id").sort().to_list()
    assert right_seen.sort().to_list() == dataset.right.get_column("id").sort().to_list()


def test_summary_adds_up(dataset: datagen.Dataset, result) -> None:  # noqa: ANN001
    summary = result.summary
    totals = summary.filter(pl.col("category") == "total").sort("currency")
    parts = summary.filter(pl.col("category") != "total").group_by("currency").agg(pl.exclude("category").sum()).sort("currency")
    assert totals.drop("category").rows() == parts.select(totals.drop("category").columns).rows()
    by_currency = dataset.left.group_by("currency").agg(pl.col("amount_minor").sum()).sort("currency")
    assert totals.get_column("left_amount_minor").to_list() == by_currency.get_column("amount_minor").to_list()


def test_same_input_in_any_row_order_gives_the_same_output(dataset: datagen.Dataset, result) -> None:  # noqa: ANN001
    again = match(dataset.left.sample(fraction=1.0, shuffle=True, seed=1),
                  dataset.right.sample(fraction=1.0, shuffle=True, seed=2))
    for name in ("pairs", "groups", "unmatched_left", "unmatched_right", "discrepancies", "summary"):
        assert getattr(again, name).equals(getattr(result, name)), name


def test_exact_pass_alone_matches_only_exact_and_tolerance_pairs(dataset: datagen.Dataset) -> None:
    alone = match(dataset.left, dataset.right, RuleSet(rules=[ReferenceRule()]))
    planted = (
        dataset.truth_pairs.filter(pl.col("kind").is_in(["exact", "tolerance"])).select("left_id", "right_id").sort("left_id")
    )
    assert alone.pairs.select("left_id", "right_id").equals(planted)


def test_result_frames_follow_the_published_schemas(result) -> None:  # noqa: ANN001
    from app.engine import DISCREPANCIES_SCHEMA, GROUPS_SCHEMA, PAIRS_SCHEMA, RULE_STATS_SCHEMA, SUMMARY_SCHEMA
    from app.records import RECORD_SCHEMA

    assert result.pairs.schema == PAIRS_SCHEMA
    assert result.groups.schema == GROUPS_SCHEMA
    assert result.discrepancies.schema == DISCREPANCIES_SCHEMA
    assert result.summary.schema == SUMMARY_SCHEMA
    assert result.rule_stats.schema == RULE_STATS_SCHEMA
    assert result.unmatched_left.schema == RECORD_SCHEMA and result.unmatched_right.schema == RECORD_SCHEMA


def test_evaluate_scores_a_perfect_answer_perfectly_and_a_mislabelled_one_as_wrong(generated: datagen.Dataset) -> None:
    from types import SimpleNamespace

    rule_of = {"exact": "reference", "tolerance": "reference", "discrepancy": "amount_discrepancy",
               "keyless": "amount_date", "fuzzy": "fuzzy", "split_key": "group", "split_subset": "subset_sum"}
    truth = generated.truth_pairs.join(generated.left.select(left_id="id", la="amount_minor"), on="left_id").join(
        generated.right.select(right_id="id", ra="amount_minor"), on="right_id"
    )
    pairs = truth.select("left_id", "right_id", rule=pl.col("kind").replace_strict(rule_of),
                         amount_delta_minor=pl.col("ra") - pl.col("la"))
    groups = generated.truth_groups.select("one_side", "one_id", "many_ids", rule=pl.col("kind").replace_strict(rule_of))
    perfect = SimpleNamespace(
        pairs=pairs, groups=groups,
        unmatched_left=generated.left.filter(pl.col("id").is_in(generated.missing_left.implode())),
        unmatched_right=generated.right.filter(pl.col("id").is_in(generated.extra_right.implode())),
    )
    scores = datagen.evaluate(generated, perfect)
    assert scores.get_column("kind").to_list() == list(datagen.KINDS)
    assert scores.select(pl.col("precision").min(), pl.col("recall").min()).row(0) == (1.0, 1.0)
    # the right pairs under the wrong rule are wrong: fuzzy pairs reported as keyless
    mislabelled = SimpleNamespace(**{**vars(perfect), "pairs": pairs.with_columns(
        rule=pl.when(pl.col("rule") == "fuzzy").then(pl.lit("amount_date")).otherwise(pl.col("rule")))})
    wrong = {row["kind"]: row for row in datagen.evaluate(generated, mislabelled).iter_rows(named=True)}
    assert wrong["fuzzy"]["recall"] == 0.0 and wrong["keyless"]["precision"] < 1.0
