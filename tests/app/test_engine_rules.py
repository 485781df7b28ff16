"""Each rule on small hand-made frames: what it matches, what it refuses, and what it records."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import polars as pl
import pytest

from app.engine import (
    AmountDateRule,
    FuzzyRule,
    GroupRule,
    ReferenceRule,
    RuleSet,
    SubsetSumRule,
    Tolerance,
    match,
)
from app.records import RECORD_SCHEMA, InvalidRecords

DAY = date(2024, 3, 1)


def frame(side: str, *rows: dict[str, object]) -> pl.DataFrame:
    """Records from short dicts: id, amount (minor), currency=EUR, day offset, reference, ..."""
    out = []
    for row in rows:
        offset = row.get("day", 0)
        out.append(
            {
                "id": row["id"],
                "side": side,
                "reference": row.get("ref"),
                "amount_minor": row["amount"],
                "currency": row.get("ccy", "EUR"),
                "booking_date": DAY + timedelta(days=offset),  # type: ignore[arg-type]
                "value_date": row.get("value_date"),
                "counterparty": row.get("cp"),
                "description": row.get("text"),
                "raw": f"{side}:{row['id']}",
                "line": row["id"],
            }
        )
    return pl.DataFrame(out, schema=RECORD_SCHEMA)


def only(*rules: object, **tolerances: Tolerance) -> RuleSet:
    return RuleSet(rules=list(rules), tolerances=tolerances)


def pairs(result) -> list[tuple[int, int, str, str]]:  # noqa: ANN001
    return [tuple(r) for r in result.pairs.select("left_id", "right_id", "rule", "status").rows()]


# ---------------------------------------------------------------- reference rule


def test_reference_rule_matches_normalised_references() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "INV-0042"}, {"id": 2, "amount": 500, "ref": "A/7"})
    right = frame("right", {"id": 10, "amount": 1000, "ref": "inv 0042", "day": 2}, {"id": 11, "amount": 500, "ref": "a7"})
    result = match(left, right, only(ReferenceRule()))
    assert pairs(result) == [(1, 10, "reference", "confirmed"), (2, 11, "reference", "confirmed")]
    row = result.pairs.row(0, named=True)
    assert row["date_delta_days"] == 2 and row["amount_delta_minor"] == 0
    assert row["criteria"] == "reference,currency,amount_exact,date_within_window,unique_candidate"
    assert 0 < row["score"] < 1 and result.pairs.row(1, named=True)["score"] == 1.0


@pytest.mark.parametrize(
    ("normalize", "matched"), [("alnum", True), ("casefold", False), ("exact", False)], ids=["alnum", "casefold", "exact"]
)
def test_reference_normalisation_modes(normalize: str, matched: bool) -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "INV-42"})
    right = frame("right", {"id": 1, "amount": 1000, "ref": "inv42"})
    assert bool(match(left, right, only(ReferenceRule(normalize=normalize))).pairs.height) is matched


@pytest.mark.parametrize(
    ("delta", "days", "matched"),
    [(5, 0, True), (-5, 3, True), (6, 0, False), (0, 4, False), (0, -4, False)],
    ids=["cents-at-tolerance", "both-at-edge", "cents-beyond", "days-beyond", "days-before"],
)
def test_reference_rule_tolerance_and_window(delta: int, days: int, matched: bool) -> None:
    left = frame("left", {"id": 1, "amount": -10_000, "ref": "R1"})
    right = frame("right", {"id": 1, "amount": -10_000 + delta, "ref": "R1", "day": days})
    result = match(left, right, only(ReferenceRule(date_window_days=3), EUR=Tolerance(absolute_minor=5)))
    assert (result.pairs.height == 1) is matched
    if matched:
        assert result.pairs.row(0, named=True)["amount_delta_minor"] == delta


def test_tolerances_are_per_currency() -> None:
    left = frame("left", {"id": 1, "amount": 10_000, "ref": "E"}, {"id": 2, "amount": 10_000, "ref": "J", "ccy": "JPY"},
                 {"id": 3, "amount": 10_000, "ref": "K", "ccy": "KWD"})
    right = frame("right", {"id": 1, "amount": 10_004, "ref": "E"}, {"id": 2, "amount": 10_004, "ref": "J", "ccy": "JPY"},
                  {"id": 3, "amount": 10_040, "ref": "K", "ccy": "KWD"})
    rules = only(ReferenceRule(), EUR=Tolerance(absolute_minor=5), KWD=Tolerance(absolute_minor=50))
    assert pairs(match(left, right, rules)) == [(1, 1, "reference", "confirmed"), (3, 3, "reference", "confirmed")]


def test_relative_tolerance_is_exact_integer_arithmetic() -> None:
    # 0.1 % of 1,000,000 minor units is exactly 1,000
    left = frame("left", {"id": 1, "amount": 1_000_000, "ref": "A"}, {"id": 2, "amount": 1_000_000, "ref": "B"})
    right = frame("right", {"id": 1, "amount": 1_001_000, "ref": "A"}, {"id": 2, "amount": 1_001_002, "ref": "B"})
    rules = only(ReferenceRule(), **{"*": Tolerance(relative=Decimal("0.001"))})
    # allowed = floor(0.001 * max(|l|, |r|)): 1001 for A (delta 1000), 1001 for B (delta 1002)
    assert pairs(match(left, right, rules)) == [(1, 1, "reference", "confirmed")]


def test_currencies_never_cross() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "A"})
    right = frame("right", {"id": 1, "amount": 1000, "ref": "A", "ccy": "USD"})
    result = match(left, right)
    assert result.pairs.height == 0 and result.groups.height == 0
    assert result.unmatched_left.height == 1 and result.unmatched_right.height == 1


def test_duplicate_reference_is_suggested_and_best_first() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "A"})
    right = frame("right", {"id": 1, "amount": 1000, "ref": "A", "day": 2}, {"id": 2, "amount": 1000, "ref": "A", "day": 1})
    result = match(left, right, only(ReferenceRule()))
    assert pairs(result) == [(1, 2, "reference", "suggested")]  # closer date wins, but two candidates: suggested
    assert "unique_candidate" not in result.pairs.get_column("criteria")[0]
    result = match(left, right, only(ReferenceRule(on_ambiguity="best_first")))
    assert pairs(result) == [(1, 2, "reference", "confirmed")]
    result = match(left, right, only(ReferenceRule(on_ambiguity="skip")))
    assert result.pairs.height == 0 and result.rule_stats.get_column("skipped_ambiguous").to_list() == [2]


def test_non_identifying_reference_is_left_to_later_rules() -> None:
    left = frame("left", *[{"id": i, "amount": 100 + i, "ref": "SALARY"} for i in range(1, 5)])
    right = frame("right", *[{"id": i, "amount": 100 + i, "ref": "SALARY"} for i in range(1, 5)])
    result = match(left, right, only(ReferenceRule(max_key_repeats=3), AmountDateRule()))
    assert set(result.pairs.get_column("rule").to_list()) == {"amount_date"}
    assert result.pairs.height == 4


# ---------------------------------------------------------------- keyless rule


def test_amount_date_rule_unique_is_confirmed_ambiguous_is_suggested() -> None:
    left = frame("left", {"id": 1, "amount": 4_999}, {"id": 2, "amount": 700, "day": 0}, {"id": 3, "amount": 700, "day": 1})
    right = frame("right", {"id": 1, "amount": 4_999, "day": -2}, {"id": 2, "amount": 700, "day": 1})
    result = match(left, right, only(AmountDateRule()))
    assert pairs(result) == [(1, 1, "amount_date", "confirmed"), (3, 2, "amount_date", "suggested")]
    assert result.unmatched_left.get_column("id").to_list() == [2]


def test_amount_date_rule_skips_crowded_amounts() -> None:
    left = frame("left", *[{"id": i, "amount": 999} for i in range(1, 6)])
    right = frame("right", *[{"id": i, "amount": 999} for i in range(1, 6)])
    result = match(left, right, only(AmountDateRule(max_candidates=4)))
    assert result.pairs.height == 0
    assert result.rule_stats.get_column("skipped_ambiguous").to_list() == [5]


def test_amount_band_with_tolerance_and_large_amounts() -> None:
    huge = 2**45  # beyond the composite sort key: matched by the exact-amount fallback
    left = frame("left", {"id": 1, "amount": 12_345}, {"id": 2, "amount": huge}, {"id": 3, "amount": -500})
    right = frame("right", {"id": 1, "amount": 12_342}, {"id": 2, "amount": huge, "day": 1}, {"id": 3, "amount": -505, "day": -3})
    result = match(left, right, only(AmountDateRule(), EUR=Tolerance(absolute_minor=5)))
    assert pairs(result) == [(1, 1, "amount_date", "confirmed"), (2, 2, "amount_date", "confirmed"), (3, 3, "amount_date", "confirmed")]


# ---------------------------------------------------------------- group rules


def test_group_rule_one_to_many_and_many_to_one() -> None:
    left = frame(
        "left",
        {"id": 1, "amount": 1000, "ref": "BATCH-1"},
        {"id": 2, "amount": 300, "ref": "B2"}, {"id": 3, "amount": 200, "ref": "B2", "day": 1},
    )
    right = frame(
        "right",
        {"id": 1, "amount": 600, "ref": "batch 1"}, {"id": 2, "amount": 400, "ref": "BATCH-1", "day": 2},
        {"id": 3, "amount": 500, "ref": "B2"},
    )
    result = match(left, right, only(GroupRule()))
    groups = result.groups.select("group_id", "rule", "one_side", "one_id", "many_ids", "amount_delta_minor", "status").rows()
    assert groups == [(1, "group", "left", 1, [1, 2], 0, "confirmed"), (2, "group", "right", 3, [2, 3], 0, "confirmed")]
    assert result.pairs.height == 0 and result.unmatched_left.height == 0 and result.unmatched_right.height == 0
    links = result.group_links().select("group_id", "left_id", "right_id").rows()
    assert links == [(1, 1, 1), (1, 1, 2), (2, 2, 3), (2, 3, 3)]


def test_group_rule_respects_window_for_every_member() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "B"})
    right = frame("right", {"id": 1, "amount": 600, "ref": "B"}, {"id": 2, "amount": 400, "ref": "B", "day": 5})
    assert match(left, right, only(GroupRule(date_window_days=3))).groups.height == 0


def test_subset_sum_finds_split_payment_by_counterparty() -> None:
    left = frame("left", {"id": 1, "amount": -10_000, "cp": "ACME GmbH"})
    right = frame(
        "right",
        {"id": 1, "amount": -2_500, "cp": "acme gmbh"}, {"id": 2, "amount": -7_500, "cp": "ACME GMBH", "day": 1},
        {"id": 3, "amount": -2_500, "cp": "Other"},  # same amount, other counterparty: not a candidate
        {"id": 4, "amount": -3_000, "cp": "ACME GmbH"},
    )
    result = match(left, right, only(SubsetSumRule()))
    row = result.groups.row(0, named=True)
    assert (row["rule"], row["one_side"], row["one_id"], row["many_ids"]) == ("subset_sum", "left", 1, [1, 2])
    assert row["status"] == "confirmed" and "subset_sum" in row["criteria"]
    assert result.unmatched_right.get_column("id").to_list() == [3, 4]


def test_subset_sum_ambiguity_is_suggested() -> None:
    left = frame("left", {"id": 1, "amount": 300, "cp": "X"})
    right = frame("right", *[{"id": i, "amount": 100, "cp": "X"} for i in range(1, 4)], {"id": 4, "amount": 200, "cp": "X"})
    result = match(left, right, only(SubsetSumRule()))
    row = result.groups.row(0, named=True)
    assert row["status"] == "suggested" and row["many_ids"] == [1, 4]  # two members beat three; then lowest ids


# ---------------------------------------------------------------- fuzzy rule


def test_fuzzy_rule_suggests_similar_text_within_amount_band() -> None:
    left = frame("left", {"id": 1, "amount": -100_000, "cp": "ACME GmbH", "text": "SEPA ACME GMBH INVOICE 4711"},
                 {"id": 2, "amount": -50_000, "cp": "Globex", "text": "rent"})
    right = frame("right", {"id": 1, "amount": -99_000, "text": "acme gmbh invoice 4711", "day": 3},
                  {"id": 2, "amount": -50_000, "text": "completely different words", "day": 1})
    result = match(left, right, only(FuzzyRule(tolerances={"*": Tolerance(relative=Decimal("0.02"))})))
    assert pairs(result) == [(1, 1, "fuzzy", "suggested")]
    assert result.pairs.get_column("criteria")[0].startswith("text_similar,currency,amount_within_tolerance")


def test_fuzzy_crowd_keeps_the_nearest_amounts_and_lets_text_decide() -> None:
    # 30 right lines within 2 % of the left amount; only the one with the same text is a match
    left = frame("left", {"id": 1, "amount": -100_000, "text": "Hooli Labs invoice 99"})
    right = frame(
        "right",
        *[{"id": i, "amount": -100_000 - 10 * i, "text": f"unrelated words {i}"} for i in range(1, 30)],
        {"id": 30, "amount": -100_500, "text": "hooli labs invoice 99"},
    )
    rule = FuzzyRule(max_candidates=40, tolerances={"*": Tolerance(relative=Decimal("0.02"))})
    assert pairs(match(left, right, only(rule))) == [(1, 30, "fuzzy", "suggested")]
    crowded = FuzzyRule(max_candidates=5, tolerances={"*": Tolerance(relative=Decimal("0.02"))})
    # only the 5 closest amounts are compared; the true line (500 away) is not among them
    assert match(left, right, only(crowded)).pairs.height == 0


def test_token_set_subset_trap_is_avoided() -> None:
    # token_set_ratio alone scores 100 for a bare name against any line containing it
    left = frame("left", {"id": 1, "amount": 1000, "cp": "ACME"})
    right = frame("right", {"id": 1, "amount": 1000, "text": "ACME invoice 4711 for consulting services in March"})
    assert match(left, right, only(FuzzyRule())).pairs.height == 0
    # with the shared-word guard off, token_set_ratio alone pairs them
    assert match(left, right, only(FuzzyRule(scorer="token_set_ratio", min_shared_words=1))).pairs.height == 1


# ---------------------------------------------------------------- whole result


def test_rules_run_in_priority_order_on_what_is_left() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "A"}, {"id": 2, "amount": 2000})
    right = frame("right", {"id": 1, "amount": 1000, "ref": "A"}, {"id": 2, "amount": 2000, "ref": "Z"})
    result = match(left, right, only(ReferenceRule(), AmountDateRule(name="keyless")))
    assert pairs(result) == [(1, 1, "reference", "confirmed"), (2, 2, "keyless", "confirmed")]
    assert result.rule_stats.get_column("rule").to_list() == ["reference", "keyless"]


def test_discrepancies_and_summary() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "A", "value_date": DAY},
                 {"id": 2, "amount": 5000, "ref": "X"}, {"id": 3, "amount": 77, "ccy": "JPY"})
    right = frame("right", {"id": 1, "amount": 1003, "ref": "A", "day": 1, "value_date": DAY + timedelta(days=2)},
                  {"id": 2, "amount": 5000, "ref": "Y"})
    result = match(left, right, only(ReferenceRule(), AmountDateRule(), EUR=Tolerance(absolute_minor=5)))
    found = result.discrepancies.select("left_id", "right_id", "field", "left_value", "right_value", "delta").rows()
    assert found == [
        (1, 1, "amount", "10.00", "10.03", 3),
        (1, 1, "booking_date", "2024-03-01", "2024-03-02", 1),
        (1, 1, "value_date", "2024-03-01", "2024-03-03", 2),
        (2, 2, "reference", "X", "Y", None),
    ]
    summary = {(r["category"], r["currency"]): r for r in result.summary.iter_rows(named=True)}
    assert summary[("confirmed", "EUR")]["left_count"] == 2
    assert summary[("confirmed", "EUR")]["right_amount_minor"] == 6003
    assert summary[("unmatched", "JPY")]["left_count"] == 1
    assert summary[("total", "EUR")]["left_amount_minor"] == 6000
    assert result.match_rate == pytest.approx(4 / 5)


def test_empty_sides_are_fine() -> None:
    left = frame("left", {"id": 1, "amount": 1000})
    result = match(left, pl.DataFrame(schema=RECORD_SCHEMA))
    assert result.unmatched_left.height == 1 and result.pairs.height == 0 and result.groups.height == 0


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda f: f.drop("currency"), "missing column"),
        (lambda f: pl.concat([f, f]), "ids are not unique"),
        (lambda f: f.with_columns(currency=pl.lit("EURO")), "unknown currency code"),
        (lambda f: f.with_columns(amount_minor=pl.col("amount_minor").cast(pl.Float64)), "dtype"),
        (lambda f: f.with_columns(booking_date=pl.lit(None, dtype=pl.Date)), "null values"),
    ],
    ids=["missing-column", "duplicate-id", "bad-currency", "float-amount", "null-date"],
)
def test_invalid_frames_are_refused(mutate, needle: str) -> None:  # noqa: ANN001
    left = frame("left", {"id": 1, "amount": 1000})
    with pytest.raises(InvalidRecords, match=needle):
        match(mutate(left), frame("right", {"id": 1, "amount": 1000}))


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"rules": []}, "at least one rule"),
        ({"rules": [{"kind": "reference"}, {"kind": "reference"}]}, "rule names must be unique"),
        ({"tolerances": {"EURO": {"absolute_minor": 1}}}, "not ISO 4217 codes"),
        ({"rules": [{"kind": "group", "group_by": ["counterparty"], "match_on": ["reference"]}]}, "must also be in group_by"),
        ({"rules": [{"kind": "telepathy"}]}, "kind"),
    ],
    ids=["no-rules", "duplicate-names", "bad-tolerance-key", "match-on-not-grouped", "unknown-kind"],
)
def test_rule_set_validation(config: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        RuleSet.model_validate(config)


@pytest.mark.parametrize("mode", ["alnum", "casefold", "exact"])
def test_fast_column_normalisation_equals_the_expression(mode: str) -> None:
    from app.engine.candidates import normalise_series, normalise_text

    values = pl.Series("reference", ["INV-0042", " inv 0042 ", "a/b.c", "Ünïcode–ref", "--", "", None, "RF18 5390"])
    expected = values.to_frame().select(normalise_text(pl.col("reference"), mode)).to_series()
    assert normalise_series(values, mode).to_list() == expected.to_list()
    assert normalise_series(values.filter(values.str.contains("^[A-Za-z0-9 -]*$")), mode).to_list() == (
        expected.filter(values.str.contains("^[A-Za-z0-9 -]*$")).to_list()
    )


def test_similarity_cutoffs_change_no_result() -> None:
    from rapidfuzz import fuzz

    from app.engine.candidates import prepare
    from app.engine.scoring import with_similarity

    words = ["acme", "invoice", "gmbh", "sepa", "rent", "globex", "march", "4711", "ltd", "payment"]
    texts = [" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(i % 5 + 1)) for i in range(60)]
    left = frame("left", *[{"id": i, "amount": 100, "text": t} for i, t in enumerate(texts, start=1)])
    right = frame("right", *[{"id": i, "amount": 100, "text": t} for i, t in enumerate(reversed(texts), start=1)])
    cands = pl.DataFrame(
        [(li, r) for li in range(1, 61) for r in range(1, 61)], schema={"left_id": pl.Int64, "right_id": pl.Int64}, orient="row"
    )
    rule = FuzzyRule(fields=("description",), min_similarity=0.7)
    got = with_similarity(rule, cands, prepare(left, ["EUR"]), prepare(right, ["EUR"]))
    expected = {}
    for li in range(1, 61):
        for r in range(1, 61):
            a, b = texts[li - 1].upper(), texts[60 - r].upper()
            mean = (fuzz.token_set_ratio(a, b) + fuzz.token_sort_ratio(a, b)) / 200
            if round(mean, 4) >= 0.7:
                expected[(li, r)] = round(mean, 4)
    assert dict(zip(zip(got.get_column("left_id").to_list(), got.get_column("right_id").to_list()),
                    got.get_column("similarity").to_list())) == expected


# ---------------------------------------------------------------- the default rule set (issue 12)


@pytest.mark.parametrize(
    ("left_amount", "right_amount"),
    [(-120_000, -118_500), (5_000, 5_002), (5_000, 9_000)],
    ids=["fee-deducted", "two-cents", "partial"],
)
def test_defaults_link_same_reference_amount_beyond_tolerance_as_discrepancy(left_amount: int, right_amount: int) -> None:
    left = frame("left", {"id": 1, "amount": left_amount, "ref": "INV-77"})
    right = frame("right", {"id": 1, "amount": right_amount, "ref": "inv 77", "day": 1})
    result = match(left, right)
    assert pairs(result) == [(1, 1, "amount_discrepancy", "suggested")]
    assert result.unmatched_left.height == 0 and result.unmatched_right.height == 0
    row = result.pairs.row(0, named=True)
    assert row["amount_delta_minor"] == right_amount - left_amount
    assert row["criteria"].startswith("reference,currency,amount_beyond_tolerance")
    amount = result.discrepancies.filter(pl.col("field") == "amount").select("left_id", "right_id", "rule", "delta").rows()
    assert amount == [(1, 1, "amount_discrepancy", right_amount - left_amount)]


def test_defaults_never_link_a_reference_across_signs() -> None:
    left = frame("left", {"id": 1, "amount": 5_000, "ref": "INV-77"})
    right = frame("right", {"id": 1, "amount": -5_000, "ref": "INV-77"})
    result = match(left, right)
    assert result.pairs.height == 0 and result.unmatched_left.height == 1 and result.unmatched_right.height == 1


def test_defaults_keep_a_split_payment_whole_rather_than_a_discrepancy() -> None:
    left = frame("left", {"id": 1, "amount": 1000, "ref": "BATCH-1"})
    right = frame("right", {"id": 1, "amount": 600, "ref": "BATCH-1"}, {"id": 2, "amount": 400, "ref": "batch 1", "day": 1})
    result = match(left, right)
    assert result.pairs.height == 0
    assert result.groups.select("rule", "one_id", "many_ids").rows() == [("group", 1, [1, 2])]


@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD"])
@pytest.mark.parametrize("delta", [1, -1], ids=["plus-one", "minus-one"])
@pytest.mark.parametrize("ref", ["INV-9", None], ids=["keyed", "keyless"])
def test_defaults_accept_a_minor_unit_difference(currency: str, delta: int, ref: str | None) -> None:
    left = frame("left", {"id": 1, "amount": -10_000, "ref": ref, "ccy": currency})
    right = frame("right", {"id": 1, "amount": -10_000 + delta, "ref": ref, "ccy": currency, "day": 1})
    result = match(left, right)
    rule = "reference" if ref else "amount_date"
    assert pairs(result) == [(1, 1, rule, "confirmed")]
    assert result.pairs.row(0, named=True)["amount_delta_minor"] == delta
    assert result.discrepancies.filter(pl.col("field") == "amount").get_column("delta").to_list() == [delta]


@pytest.mark.parametrize(
    ("left_text", "right_text"),
    [("fee umbrella", "umbrella"), ("FEE UMBRELLA", "Umbrella"), ("umbrella", "Umbrella refund")],
    ids=["fee-memo", "case", "refund-memo"],
)
def test_default_fuzzy_never_pairs_on_one_shared_word(left_text: str, right_text: str) -> None:
    # amounts 1 % apart (beyond the 1-cent tolerance, within fuzzy's 2 %), dates 2 days apart
    left = frame("left", {"id": 1, "amount": -50_000, "text": left_text})
    right = frame("right", {"id": 1, "amount": -49_500, "text": right_text, "day": 2})
    assert match(left, right).pairs.height == 0


def test_default_fuzzy_ignores_a_name_many_lines_share() -> None:
    # "Pied Piper" is on many unmatched lines of both sides: a name, not evidence of one transaction
    crowd = [{"id": i, "amount": -1_000_000 * i, "cp": "Pied Piper Labs Inc", "day": i} for i in range(2, 8)]
    left = frame("left", {"id": 1, "amount": -50_000, "text": "FEE PIED PIPER"}, *crowd)
    right = frame("right", {"id": 1, "amount": -49_500, "text": "Pied Piper", "day": 2},
                  *[{**row, "amount": row["amount"] - 500_000} for row in crowd])
    assert match(left, right).pairs.height == 0
    alone = match(left.head(1), right.head(1))  # with no crowd the two shared words count
    assert pairs(alone) == [(1, 1, "fuzzy", "suggested")]


def test_default_fuzzy_still_pairs_shared_invoice_text() -> None:
    crowd = [{"id": i, "amount": -1_000_000 * i, "cp": "ACME GmbH", "text": f"order {i}", "day": i} for i in range(2, 8)]
    left = frame("left", {"id": 1, "amount": -100_000, "cp": "ACME GmbH", "text": "SEPA ACME GMBH INVOICE 4711"}, *crowd)
    right = frame("right", {"id": 1, "amount": -99_000, "cp": "Acme GmbH", "text": "acme gmbh invoice 4711", "day": 3},
                  *[{**row, "amount": row["amount"] - 500_000, "text": f"other {row['id']}"} for row in crowd])
    assert pairs(match(left, right)) == [(1, 1, "fuzzy", "suggested")]


def test_match_rate_is_the_confirmed_share_of_all_records() -> None:
    from app.engine import match_rate

    left = frame("left", {"id": 1, "amount": 1000, "ref": "A"}, {"id": 2, "amount": 5000, "ref": "B"}, {"id": 3, "amount": 77})
    right = frame("right", {"id": 1, "amount": 1000, "ref": "A"}, {"id": 2, "amount": 5400, "ref": "B"})
    result = match(left, right)
    assert pairs(result) == [(1, 1, "reference", "confirmed"), (2, 2, "amount_discrepancy", "suggested")]
    # 2 of 5 records are confirmed; the discrepancy pair waits for a person
    assert result.match_rate == pytest.approx(2 / 5)
    assert match_rate(result.counts()) == result.match_rate
    # the API's /summary counts (no totals) give the same figure from the same definition
    live = {"confirmed_left": 4, "confirmed_right": 5, "suggested_left": 1, "suggested_right": 1,
            "unmatched_left": 1, "unmatched_right": 1}
    assert match_rate(live) == pytest.approx(9 / 13)
    assert match_rate({}) == 1.0
