"""Best-first assignment: pick non-conflicting candidates in a strict total order, vectorised.

The greedy rule "walk candidates from best to worst, keep one if none of its records is taken"
is sequential as written. It equals this round-based procedure, which polars runs as a few
window expressions per round:

    repeat: keep every candidate that is the best remaining candidate of *each* of its records
            ("mutual best"); drop the candidates that share a record with a kept one.

Why they agree: the globally best remaining candidate is always mutual best, so every round
keeps at least one; and a mutual-best candidate has no better remaining rival for any of its
records, so the sequential greedy keeps it too. Most candidates are kept in round one (their
records have no rival at all); long chains of rivals cost extra rounds, so after
`_MAX_ROUNDS` rounds, or once few candidates remain, the rest is finished by the plain greedy
loop (bounded by the remaining candidates, not by the records).

The order is total and independent of row order: by rank columns, then ids. That is what makes
the engine deterministic.
"""

from __future__ import annotations

import polars as pl

_MAX_ROUNDS = 12
_SEQUENTIAL_BELOW = 2_000


def rank(candidates: pl.DataFrame, order: list[tuple[str, bool]]) -> pl.DataFrame:
    """Add `_rank` (0 = best) by `order` = [(column, descending), ...]; ids must be in `order`."""
    columns = [column for column, _ in order]
    descending = [desc for _, desc in order]
    return candidates.sort(columns, descending=descending, nulls_last=True).with_row_index("_rank")


def assign_pairs(
    candidates: pl.DataFrame, *, max_rounds: int = _MAX_ROUNDS, sequential_below: int = _SEQUENTIAL_BELOW
) -> pl.DataFrame:
    """Choose 1:1 pairs from ranked candidates (columns left_id, right_id, _rank).

    Returns the chosen rows (all columns kept), sorted by `_rank`. `max_rounds` and
    `sequential_below` only move the switch to the sequential loop; the result is the same.
    """
    remaining = candidates
    chosen: list[pl.DataFrame] = []
    for _ in range(max_rounds):
        if remaining.height == 0:
            break
        if remaining.height < sequential_below:
            chosen.append(_greedy_pairs(remaining))
            remaining = remaining.clear()
            break
        best = remaining.with_columns(
            _lbest=pl.col("_rank").min().over("left_id"),
            _rbest=pl.col("_rank").min().over("right_id"),
        )
        kept = best.filter((pl.col("_rank") == pl.col("_lbest")) & (pl.col("_rank") == pl.col("_rbest"))).drop(
            "_lbest", "_rbest"
        )
        chosen.append(kept)
        remaining = remaining.join(kept.select("left_id"), on="left_id", how="anti").join(
            kept.select("right_id"), on="right_id", how="anti"
        )
    if remaining.height:
        chosen.append(_greedy_pairs(remaining))
    if not chosen:
        return candidates.clear()
    return pl.concat(chosen).sort("_rank")


def _greedy_pairs(candidates: pl.DataFrame) -> pl.DataFrame:
    ordered = candidates.sort("_rank")
    used_left: set[int] = set()
    used_right: set[int] = set()
    keep: list[int] = []
    for position, (left_id, right_id) in enumerate(
        zip(ordered.get_column("left_id").to_list(), ordered.get_column("right_id").to_list())
    ):
        if left_id in used_left or right_id in used_right:
            continue
        used_left.add(left_id)
        used_right.add(right_id)
        keep.append(position)
    return ordered[keep] if keep else ordered.clear()


def assign_hyperedges(
    members: pl.DataFrame,
    ranks: pl.DataFrame,
    *,
    max_rounds: int = _MAX_ROUNDS,
    sequential_below: int = _SEQUENTIAL_BELOW // 4,
) -> pl.Series:
    """Choose non-overlapping candidates that each use several records (groups).

    `members`: one row per (cand, side, id) a candidate uses; `ranks`: (cand, _rank), one row per
    candidate. Returns the chosen candidate ids, best first. Same mutual-best rounds as
    :func:`assign_pairs`, with "best of each of its records" over all its members.
    """
    members = members.join(ranks, on="cand")
    chosen: list[pl.Series] = []
    for _ in range(max_rounds):
        if members.height == 0:
            break
        if members.get_column("cand").n_unique() < sequential_below:
            break
        best = members.with_columns(_best=pl.col("_rank").min().over("side", "id"))
        winners = (
            best.group_by("cand")
            .agg(ok=(pl.col("_rank") == pl.col("_best")).all())
            .filter(pl.col("ok"))
            .get_column("cand")
        )
        chosen.append(winners)
        taken = members.filter(pl.col("cand").is_in(winners.implode())).select("side", "id").unique()
        losers = members.join(taken, on=["side", "id"], how="semi").select("cand").unique()
        members = members.join(losers, on="cand", how="anti")
    if members.height:
        chosen.append(_greedy_hyperedges(members))
    if not chosen:
        return pl.Series("cand", [], pl.Int64)
    out = pl.concat(chosen)
    return ranks.filter(pl.col("cand").is_in(out.implode())).sort("_rank").get_column("cand")


def _greedy_hyperedges(members: pl.DataFrame) -> pl.Series:
    grouped = (
        members.group_by("cand")
        .agg(pl.col("_rank").first(), pl.struct("side", "id").alias("m"))
        .sort("_rank")
    )
    used: set[tuple[str, int]] = set()
    keep: list[int] = []
    for cand, member_list in zip(grouped.get_column("cand").to_list(), grouped.get_column("m").to_list()):
        keys = [(m["side"], m["id"]) for m in member_list]
        if any(key in used for key in keys):
            continue
        used.update(keys)
        keep.append(cand)
    return pl.Series("cand", keep, pl.Int64)
