"""The rule loop: run each rule on what is still unmatched, then assemble the result frames.

Scores (0..1, higher is better) share one shape so that they read the same in every rule::

    score = base * (1 - 0.2 * |amount delta| / (allowed + 1) - 0.1 * |date delta| / (window + 1))

with base 1.0 (reference), 0.9 (amount_date), 0.85 (group), 0.8 (subset_sum, minus 0.02 per
member beyond two) and 0.7 * similarity (fuzzy). An exact pair on the same day scores the base.
The score orders candidates within a rule; across rules, priority decides, not the score.
"""

from __future__ import annotations

import time
from typing import Callable

import polars as pl

from app.engine.assignment import assign_hyperedges, assign_pairs, rank
from app.engine.candidates import (
    EXPLODE,
    allowed_delta,
    band_join,
    day_window_join,
    text_key_join,
    normalise_text,
    without_ids,
    prepare,
    tolerance_columns,
)
from app.engine.result import (
    DISCREPANCIES_SCHEMA,
    GROUPS_SCHEMA,
    PAIRS_SCHEMA,
    RULE_STATS_SCHEMA,
    SUMMARY_SCHEMA,
    MatchResult,
)
from app.engine.rules import (
    AmountDateRule,
    FuzzyRule,
    GroupRule,
    ReferenceRule,
    RuleSet,
    SubsetSumRule,
)
from app.records import CURRENCY_EXPONENTS, validate_records

_BASE = {"reference": 1.0, "amount_date": 0.9, "group": 0.85, "subset_sum": 0.8, "fuzzy": 0.7}
_TEXT_MODE = {"reference": "alnum", "counterparty": "casefold", "description": "casefold"}

_STATUS = ("confirmed", "suggested")


def run(left: pl.DataFrame, right: pl.DataFrame, rules: RuleSet) -> MatchResult:
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
        if isinstance(rule, (ReferenceRule, AmountDateRule, FuzzyRule)):
            fixed = {"reference": ["reference", "currency"], "fuzzy": ["text_similar", "currency"]}.get(
                rule.kind, ["currency"]
            )
            criteria_text.update({index * 8 + code: text for code, text in _criteria_table(fixed).items()})
        if work_left.height and work_right.height:
            if isinstance(rule, (ReferenceRule, AmountDateRule, FuzzyRule)):
                pairs = _pair_rule(rule, index, work_left, work_right, tolerances, stat)
                pair_parts.append(pairs)
                used_left, used_right = pairs.select(id="left_id"), pairs.select(id="right_id")
            else:
                groups = _group_rule(rule, work_left, work_right, tolerances, stat)
                group_parts.append(groups)
                links = _links(groups)
                used_left, used_right = links.select(id="left_id").unique(), links.select(id="right_id").unique()
            used_parts.append((used_left, used_right))
            if index + 1 < len(rules.rules):  # the last rule's leftovers are computed once, below
                work_left = without_ids(work_left, used_left.get_column("id"))
                work_right = without_ids(work_right, used_right.get_column("id"))
        stat["seconds"] = round(time.perf_counter() - started, 4)
        stats.append(stat)

    labels = {index: rule.label for index, rule in enumerate(rules.rules)}
    internal = (pl.concat(pair_parts) if pair_parts else _empty_internal_pairs()).sort("left_id")
    pairs = internal.select(
        "left_id",
        "right_id",
        rule=pl.col("_rule").replace_strict(labels, return_dtype=pl.Utf8),
        status=pl.col("_status").replace_strict(dict(enumerate(_STATUS)), return_dtype=pl.Utf8),
        score="score",
        amount_delta_minor="_da",
        date_delta_days="_dd",
        criteria=(pl.col("_rule").cast(pl.Int64) * 8 + pl.col("_code")).replace_strict(
            criteria_text, return_dtype=pl.Utf8
        ),
    ).cast(dict(PAIRS_SCHEMA))
    groups = _number_groups(group_parts)
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
        discrepancies=_discrepancies(internal, pairs, groups, left, right, exponents, rules),
        summary=_summary(internal, groups, unmatched_left, unmatched_right, left, right, currencies),
        rule_stats=pl.DataFrame(stats, schema=RULE_STATS_SCHEMA, orient="row"),
    )


def _empty_internal_pairs() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "left_id": pl.Int64, "right_id": pl.Int64, "_rule": pl.Int16, "_status": pl.Int8, "score": pl.Float64,
            "_da": pl.Int64, "_dd": pl.Int64, "_code": pl.Int8, "la": pl.Int64, "ra": pl.Int64, "ld": pl.Int32,
            "rd": pl.Int32, "lvd": pl.Int32, "rvd": pl.Int32, "currency": pl.Int16,
        }
    )


# --------------------------------------------------------------------------- one-to-one rules


def _pair_rule(
    rule: ReferenceRule | AmountDateRule | FuzzyRule,
    index: int,
    work_left: pl.DataFrame,
    work_right: pl.DataFrame,
    tolerances: pl.DataFrame,
    stat: dict[str, object],
) -> pl.DataFrame:
    window = rule.date_window_days
    if isinstance(rule, ReferenceRule):
        joined = text_key_join(
            work_left,
            work_right,
            column="reference",
            mode=rule.normalize,
            max_key_repeats=rule.max_key_repeats,
            carry=("amount", "d", "vd"),
        )
        cands = joined.select(_pair_select())
    else:
        band = band_join(
            work_left, work_right, tolerances=tolerances, window=window, max_candidates=rule.max_candidates,
            overflow="nearest" if isinstance(rule, FuzzyRule) else "skip",
        )
        stat["skipped_ambiguous"] = band.skipped.len()
        cands = (
            band.pairs.join(work_left.select("id", "amount", "d", "vd", "currency"), left_on="q_id", right_on="id")
            .join(work_right.select("id", "amount", "d", "vd"), left_on="i_id", right_on="id", suffix="_r")
            .rename({"q_id": "id", "i_id": "id_r"})
            .select(_pair_select())
        )
        # a right record with too many candidates is as ambiguous as a left one (for the keyless
        # rule; the fuzzy rule lets text similarity decide among the nearest)
        crowded = cands.group_by("right_id").len().filter(pl.col("len") > rule.max_candidates)
        if crowded.height and not isinstance(rule, FuzzyRule):
            stat["skipped_ambiguous"] = stat["skipped_ambiguous"] + crowded.height  # type: ignore[operator]
            cands = cands.join(crowded.select("right_id"), on="right_id", how="anti")

    score = _BASE[rule.kind] * (
        1 - 0.2 * pl.col("_abs_da") / (pl.col("allowed") + 1) - 0.1 * pl.col("_abs_dd") / (window + 1)
    )
    if isinstance(rule, FuzzyRule):
        cands = _with_similarity(rule, _deltas(cands, tolerances, window).collect(), work_left, work_right)
        cands = cands.with_columns(score=(score * pl.col("similarity")).round(6))
    else:
        cands = _deltas(cands, tolerances, window).with_columns(score=score.round(6)).collect()
    cands = cands.with_columns(_unique=_no_rival(cands))
    stat["candidates"] = cands.height
    if rule.on_ambiguity == "skip":
        before = cands.height
        cands = cands.filter(pl.col("_unique"))
        stat["skipped_ambiguous"] = stat["skipped_ambiguous"] + before - cands.height  # type: ignore[operator]
    # a candidate whose two records have no other candidate is chosen whatever the order; only
    # the contested rest needs ranking and the best-first rounds
    contested = cands.filter(~pl.col("_unique"))
    ranked = rank(
        contested,
        [("score", True), ("_abs_da", False), ("_abs_dd", False), ("left_id", False), ("right_id", False)],
    )
    chosen = pl.concat([cands.lazy().filter(pl.col("_unique")), assign_pairs(ranked).drop("_rank").lazy()])
    status = pl.lit(_STATUS.index(rule.status), dtype=pl.Int8)
    if rule.on_ambiguity == "suggest":
        status = pl.when(pl.col("_unique")).then(status).otherwise(pl.lit(1, dtype=pl.Int8))
    out = chosen.select(
        "left_id",
        "right_id",
        _rule=pl.lit(index, dtype=pl.Int16),
        _status=status,
        score=pl.col("score"),
        _da=pl.col("_da"),
        _dd=pl.col("_dd"),
        _code=_criteria_code(),
        la="la", ra="ra", ld="ld", rd="rd", lvd="lvd", rvd="rvd", currency="currency",
    ).collect()
    stat["pairs"] = out.height
    stat["suggested"] = out.filter(pl.col("_status") == 1).height
    return out


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


def _deltas(cands: pl.DataFrame | pl.LazyFrame, tolerances: pl.DataFrame, window: int) -> pl.LazyFrame:
    """Add _da/_dd (right - left), their magnitudes and `allowed`; keep what passes.

    With absolute tolerances only (the usual case) `allowed` is a per-currency constant looked
    up from a tiny map; the exact relative formula needs the tolerance columns joined in.
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
    return (
        lazy.with_columns(
            _da=pl.col("ra") - pl.col("la"),
            _dd=(pl.col("rd") - pl.col("ld")).cast(pl.Int64),
            allowed=allowed,
        )
        .with_columns(_abs_da=pl.col("_da").abs(), _abs_dd=pl.col("_dd").abs())
        .filter((pl.col("_abs_da") <= pl.col("allowed")) & (pl.col("_abs_dd") <= window))
    )


def _criteria_table(fixed: list[str], words: tuple[str, str] = ("amount", "date")) -> dict[int, str]:
    """The 8 possible comma-separated criteria strings of a rule, by :func:`_criteria_code`.

    Building strings row by row costs seconds on a million pairs; a 3-bit code per row and a
    lookup at the end cost milliseconds.
    """
    amount, date = words
    table = {}
    for code in range(8):
        parts = list(fixed)
        parts.append(f"{amount}_exact" if code & 4 else f"{amount}_within_tolerance")
        parts.append(f"{date}_exact" if code & 2 else f"{date}_within_window")
        if code & 1:
            parts.append("unique_candidate")
        table[code] = ",".join(parts)
    return table


def _criteria_code() -> pl.Expr:
    return (
        (pl.col("_da") == 0).cast(pl.Int8) * 4
        + (pl.col("_abs_dd") == 0).cast(pl.Int8) * 2
        + pl.col("_unique").cast(pl.Int8)
    ).cast(pl.Int8)


def _with_similarity(
    rule: FuzzyRule, cands: pl.DataFrame, work_left: pl.DataFrame, work_right: pl.DataFrame
) -> pl.DataFrame:
    """Text similarity 0..1 of each candidate pair, computed by rapidfuzz in C over all pairs."""
    from rapidfuzz import fuzz, process

    def texts(work: pl.DataFrame, id_name: str) -> pl.DataFrame:
        parts = [normalise_text(pl.col(f), "casefold") for f in rule.fields]
        return work.select(
            pl.col("id").alias(id_name),
            pl.concat_str(parts, separator=" ", ignore_nulls=True).fill_null("").alias(f"_text_{id_name}"),
        )

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


# --------------------------------------------------------------------------- group rules


def _group_rule(
    rule: GroupRule | SubsetSumRule,
    work_left: pl.DataFrame,
    work_right: pl.DataFrame,
    tolerances: pl.DataFrame,
    stat: dict[str, object],
) -> pl.DataFrame:
    """Candidates for one-to-many (one left) and many-to-one (one right), assigned together."""
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
    cands = pl.concat(parts) if parts else _empty_group_candidates()
    window = rule.date_window_days
    cands = cands.with_columns(
        _abs_da=pl.col("_da").abs(),
        _abs_dd=pl.max_horizontal((pl.col("min_d") - pl.col("one_d")).abs(), (pl.col("max_d") - pl.col("one_d")).abs()),
        _size=pl.col("many_ids").list.len(),
        _ids_key=pl.col("many_ids").cast(pl.List(pl.Utf8)).list.join(","),
    )
    size_penalty = 0.02 * (pl.col("_size") - 2) if isinstance(rule, SubsetSumRule) else pl.lit(0.0)
    cands = cands.with_columns(
        score=(
            _BASE[rule.kind]
            * (1 - 0.2 * pl.col("_abs_da") / (pl.col("allowed") + 1) - 0.1 * pl.col("_abs_dd") / (window + 1))
            - size_penalty
        ).round(6)
    ).with_row_index("cand")
    stat["candidates"] = cands.height
    if cands.height == 0:
        return pl.DataFrame(schema={**GROUPS_SCHEMA, "group_id": pl.Int64})

    members = pl.concat(
        [
            cands.select("cand", side=pl.col("one_side"), id=pl.col("one_id")),
            cands.select(
                "cand",
                side=pl.when(pl.col("one_side") == "left").then(pl.lit("right")).otherwise(pl.lit("left")),
                id=pl.col("many_ids"),
            ).explode("id", **EXPLODE),
        ]
    ).with_columns(pl.col("cand").cast(pl.Int64))
    unique = (
        members.with_columns(_n=pl.len().over("side", "id"))
        .group_by("cand")
        .agg(_unique=(pl.col("_n") == 1).all())
    )
    cands = cands.with_columns(pl.col("cand").cast(pl.Int64)).join(unique, on="cand")
    if rule.on_ambiguity == "skip":
        before = cands.height
        cands = cands.filter(pl.col("_unique"))
        stat["skipped_ambiguous"] = before - cands.height
        members = members.join(cands.select("cand"), on="cand", how="semi")
    ranked = rank(
        cands,
        [("score", True), ("_abs_da", False), ("_size", False), ("_abs_dd", False), ("one_side", False),
         ("one_id", False), ("_ids_key", False)],
    ).with_columns(pl.col("_rank").cast(pl.Int64))
    chosen_ids = assign_hyperedges(members, ranked.select("cand", "_rank"))
    chosen = ranked.join(pl.DataFrame({"cand": chosen_ids}), on="cand", how="semi")
    status = pl.lit(rule.status)
    if rule.on_ambiguity == "suggest":
        status = pl.when(pl.col("_unique")).then(status).otherwise(pl.lit("suggested"))
    signed_dd = pl.when((pl.col("max_d") - pl.col("one_d")).abs() >= (pl.col("min_d") - pl.col("one_d")).abs()).then(
        pl.col("max_d") - pl.col("one_d")
    ).otherwise(pl.col("min_d") - pl.col("one_d"))
    fixed = [f"same_{field}" for field in getattr(rule, "match_on", ())]
    if isinstance(rule, SubsetSumRule):
        fixed += [f"same_{field}" for field in rule.block_on] + ["subset_sum"]
    else:
        fixed += [f"grouped_by_{field}" for field in rule.group_by]
    out = chosen.with_columns(
        group_id=pl.lit(None, dtype=pl.Int64),
        rule=pl.lit(rule.label),
        status=status,
        amount_delta_minor=pl.col("_da"),
        date_delta_days=signed_dd.cast(pl.Int64),
        criteria=_criteria_code().replace_strict(
            _criteria_table([*fixed, "currency"], ("sum", "dates")), return_dtype=pl.Utf8
        ),
    ).select(list(GROUPS_SCHEMA))
    stat["groups"] = out.height
    stat["suggested"] = out.filter(pl.col("status") == "suggested").height
    return out


def _empty_group_candidates() -> pl.DataFrame:
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


def _finish_group_candidates(
    joined: pl.DataFrame, tolerances: pl.DataFrame, window: int, one_side: str
) -> pl.DataFrame:
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
        return _empty_group_candidates()
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
    return _finish_group_candidates(joined, tolerances, window, one_side)


def _subset_groups(
    rule: SubsetSumRule, one: pl.DataFrame, many: pl.DataFrame, tolerances: pl.DataFrame, one_side: str
) -> pl.DataFrame:
    """Bounded subset-sum: combinations of 2..max_size blocked candidates, built by self-joins."""
    window = rule.date_window_days
    keys = [f"_g_{field}" for field in rule.block_on]
    targets = one
    pool = many.filter(pl.col("amount") != 0)
    if keys:
        paired = day_window_join(targets, pool, on=keys, window=window)
    else:
        paired = day_window_join(targets, pool, on=[], window=window)
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
        return _empty_group_candidates()
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
    return _finish_group_candidates(joined, tolerances, window, one_side)


def _links(groups: pl.DataFrame) -> pl.DataFrame:
    """Groups as (left_id, right_id, status) links, one per member."""
    exploded = groups.select("status", "one_side", "one_id", "many_ids").explode("many_ids", **EXPLODE)
    one_left = pl.col("one_side") == "left"
    return exploded.select(
        left_id=pl.when(one_left).then(pl.col("one_id")).otherwise(pl.col("many_ids")),
        right_id=pl.when(one_left).then(pl.col("many_ids")).otherwise(pl.col("one_id")),
        status=pl.col("status"),
    )


def _number_groups(parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return pl.DataFrame(schema=GROUPS_SCHEMA)
    groups = pl.concat(parts).sort("one_side", "one_id")
    return groups.with_columns(group_id=pl.int_range(1, groups.height + 1, dtype=pl.Int64)).select(list(GROUPS_SCHEMA))


# --------------------------------------------------------------------------- result frames


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


def _discrepancies(
    internal: pl.DataFrame,
    pairs: pl.DataFrame,
    groups: pl.DataFrame,
    left: pl.DataFrame,
    right: pl.DataFrame,
    exponents: dict[int, int],
    rules: RuleSet,
) -> pl.DataFrame:
    """Fields that differ inside each match, from columns the rules already carried (no joins
    over the full record frames, except for references of pairs not matched by reference)."""
    exponent = pl.col("currency").replace_strict(exponents, return_dtype=pl.Int64)
    base = [pl.col("left_id"), pl.col("right_id"), pl.lit(None, dtype=pl.Int64).alias("group_id"), pl.col("rule")]
    p = internal.with_columns(rule=pairs.get_column("rule"))
    day_text = _day_texts(p, ["ld", "rd", "lvd", "rvd"])

    def _day_text(days: pl.Expr) -> pl.Expr:
        return days.replace_strict(day_text, default=None, return_dtype=pl.Utf8)
    parts = [
        p.filter(pl.col("_da") != 0).select(
            *base,
            field=pl.lit("amount"),
            left_value=_amount_text(pl.col("la"), exponent),
            right_value=_amount_text(pl.col("ra"), exponent),
            delta=pl.col("_da"),
        ),
        p.filter(pl.col("_dd") != 0).select(
            *base,
            field=pl.lit("booking_date"),
            left_value=_day_text(pl.col("ld")),
            right_value=_day_text(pl.col("rd")),
            delta=pl.col("_dd"),
        ),
        p.filter(pl.col("lvd") != pl.col("rvd")).select(
            *base,
            field=pl.lit("value_date"),
            left_value=_day_text(pl.col("lvd")),
            right_value=_day_text(pl.col("rvd")),
            delta=(pl.col("rvd") - pl.col("lvd")).cast(pl.Int64),
        ),
    ]
    by_reference = [i for i, rule in enumerate(rules.rules) if rule.kind == "reference"]
    keyless = p.filter(~pl.col("_rule").is_in(by_reference)).select("left_id", "right_id", "rule")
    if keyless.height:
        refs = keyless.join(left.select(left_id="id", left_ref="reference"), on="left_id").join(
            right.select(right_id="id", right_ref="reference"), on="right_id"
        )
        parts.append(
            refs.filter(
                normalise_text(pl.col("left_ref"), "alnum") != normalise_text(pl.col("right_ref"), "alnum")
            ).sort("left_id").select(
                *base, field=pl.lit("reference"), left_value="left_ref", right_value="right_ref",
                delta=pl.lit(None, dtype=pl.Int64),
            )
        )
    if groups.height:
        one_left = pl.col("one_side") == "left"
        columns = [pl.col("id").alias("one_id"), "amount_minor", "currency", "booking_date"]
        one = pl.concat(
            [
                groups.filter(one_left).join(left.select(columns), on="one_id"),
                groups.filter(~one_left).join(right.select(columns), on="one_id"),
            ]
        )
        # the group's side of the comparison: sum = one's amount +/- delta (delta is right - left)
        group_sum = pl.when(one_left).then(pl.col("amount_minor") + pl.col("amount_delta_minor")).otherwise(
            pl.col("amount_minor") - pl.col("amount_delta_minor")
        )
        group_exponent = pl.col("currency").replace_strict(CURRENCY_EXPONENTS, return_dtype=pl.Int64)
        gbase = [
            pl.when(one_left).then(pl.col("one_id")).alias("left_id"),
            pl.when(~one_left).then(pl.col("one_id")).alias("right_id"),
            pl.col("group_id"),
            pl.col("rule"),
        ]
        one_text = _amount_text(pl.col("amount_minor"), group_exponent)
        sum_text = pl.concat_str(pl.lit("sum "), _amount_text(group_sum, group_exponent))
        one_date = pl.col("booking_date").cast(pl.Utf8)
        direction = pl.when(one_left).then(1).otherwise(-1)
        far_date = pl.concat_str(
            pl.lit("up to "),
            (pl.col("booking_date") + pl.duration(days=pl.col("date_delta_days") * direction)).cast(pl.Utf8),
        )
        one = one.sort("group_id")
        parts += [
            one.filter(pl.col("amount_delta_minor") != 0).select(
                *gbase,
                field=pl.lit("amount"),
                left_value=pl.when(one_left).then(one_text).otherwise(sum_text),
                right_value=pl.when(one_left).then(sum_text).otherwise(one_text),
                delta=pl.col("amount_delta_minor"),
            ),
            one.filter(pl.col("date_delta_days") != 0).select(
                *gbase,
                field=pl.lit("booking_date"),
                left_value=pl.when(one_left).then(one_date).otherwise(far_date),
                right_value=pl.when(one_left).then(far_date).otherwise(one_date),
                delta=pl.col("date_delta_days"),
            ),
        ]
    # parts are each in left_id (or group_id) order already; concatenating them is deterministic
    # and spares a sort of a million rows with text columns
    return pl.concat([part.select(list(DISCREPANCIES_SCHEMA)).cast(dict(DISCREPANCIES_SCHEMA)) for part in parts])


def _summary(
    internal: pl.DataFrame,
    groups: pl.DataFrame,
    unmatched_left: pl.DataFrame,
    unmatched_right: pl.DataFrame,
    left: pl.DataFrame,
    right: pl.DataFrame,
    currencies: list[str],
) -> pl.DataFrame:
    """Counts and sums per (category, currency); pairs are aggregated from carried columns."""
    names = dict(enumerate(currencies))
    status_name = pl.col("_status").replace_strict(dict(enumerate(_STATUS)), return_dtype=pl.Utf8)
    pairs_agg = internal.group_by("_status", "currency").agg(
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
    parts = [pairs_agg]
    zero = pl.lit(0, dtype=pl.Int64)
    if groups.height:
        links = _links(groups)
        for column, frame, prefix in (("left_id", left, "left"), ("right_id", right, "right")):
            other = "right" if prefix == "left" else "left"
            members = links.select(id=pl.col(column), category="status").unique("id")
            parts.append(
                members.join(frame.select("id", "currency", "amount_minor"), on="id")
                .group_by("category", "currency")
                .agg(pl.len().cast(pl.Int64).alias(f"{prefix}_count"), pl.col("amount_minor").sum().alias(f"{prefix}_amount_minor"))
                .with_columns(zero.alias(f"{other}_count"), zero.alias(f"{other}_amount_minor"))
            )
    for frame, prefix in ((unmatched_left, "left"), (unmatched_right, "right")):
        other = "right" if prefix == "left" else "left"
        parts.append(
            frame.group_by("currency")
            .agg(pl.len().cast(pl.Int64).alias(f"{prefix}_count"), pl.col("amount_minor").sum().alias(f"{prefix}_amount_minor"))
            .with_columns(category=pl.lit("unmatched"), **{f"{other}_count": zero, f"{other}_amount_minor": zero})
        )
    columns = list(SUMMARY_SCHEMA)
    summary = (
        pl.concat([part.select(columns).cast(dict(SUMMARY_SCHEMA)) for part in parts])
        .group_by("category", "currency")
        .agg(pl.exclude("category", "currency").sum())
    )
    totals = summary.group_by("currency").agg(pl.exclude("category", "currency").sum()).with_columns(
        category=pl.lit("total")
    )
    order = {"confirmed": 0, "suggested": 1, "unmatched": 2, "total": 3}
    return (
        pl.concat([summary, totals.select(summary.columns)])
        .with_columns(_o=pl.col("category").replace_strict(order, return_dtype=pl.Int64))
        .sort("_o", "currency")
        .select(columns)
    )
