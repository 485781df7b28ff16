"""Best-first assignment: the vectorised mutual-best rounds equal the sequential greedy."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine import assignment


def greedy(edges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The definition: walk edges best first, keep one when neither end is taken."""
    used_left, used_right, kept = set(), set(), []
    for left, right in edges:
        if left not in used_left and right not in used_right:
            used_left.add(left)
            used_right.add(right)
            kept.append((left, right))
    return kept


ROUNDS_ONLY = {"max_rounds": 10_000, "sequential_below": 0}
"""Force the vectorised rounds even on tiny inputs (no sequential shortcut)."""


edge_lists = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=0, max_size=80, unique=True)


@settings(max_examples=150, deadline=None, database=None)
@given(edge_lists)
def test_pairs_equal_sequential_greedy(edges: list[tuple[int, int]]) -> None:
    frame = pl.DataFrame(edges, schema={"left_id": pl.Int64, "right_id": pl.Int64}, orient="row").with_row_index("_rank")
    chosen = assignment.assign_pairs(frame, **ROUNDS_ONLY)
    assert list(chosen.select("left_id", "right_id").iter_rows()) == greedy(edges)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["left", "right"]), st.integers(0, 8)), min_size=1, max_size=4, unique=True),
                min_size=0, max_size=40))
def test_hyperedges_equal_sequential_greedy(candidates: list[list[tuple[str, int]]]) -> None:
    members = pl.DataFrame(
        [(cand, side, record) for cand, uses in enumerate(candidates) for side, record in uses],
        schema={"cand": pl.Int64, "side": pl.Utf8, "id": pl.Int64}, orient="row",
    )
    ranks = pl.DataFrame({"cand": list(range(len(candidates))), "_rank": list(range(len(candidates)))},
                         schema={"cand": pl.Int64, "_rank": pl.Int64})
    used: set[tuple[str, int]] = set()
    expected = []
    for cand, uses in enumerate(candidates):
        if not used & set(uses):
            used |= set(uses)
            expected.append(cand)
    assert assignment.assign_hyperedges(members, ranks, **ROUNDS_ONLY).to_list() == expected


def test_long_rival_chain_finishes_sequentially() -> None:
    # l0-r0 > l1-r0 > l1-r1 > l2-r1 > ... : each round keeps one pair; the cap hands over to the loop
    edges = []
    for i in range(50):
        edges += [(i, i), (i + 1, i)]
    frame = pl.DataFrame(edges, schema={"left_id": pl.Int64, "right_id": pl.Int64}, orient="row").with_row_index("_rank")
    chosen = assignment.assign_pairs(frame, max_rounds=3, sequential_below=0)
    assert list(chosen.select("left_id", "right_id").iter_rows()) == greedy(edges)
