"""Property tests for the packer: every segment once, no row over seq_len, positions restart."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gamelog.pack.bins import best_fit_decreasing
from gamelog.pack.block import Block, Blocks
from gamelog.pack.rows import rows_table
from gamelog.pack.segments import PackCounts, fit, split_points
from gamelog.pack.tokens import Segment

CAPACITY = st.integers(min_value=1, max_value=300)


@settings(max_examples=300, deadline=None)
@given(capacity=CAPACITY, data=st.data())
def test_bfd_places_every_segment_once_within_capacity(capacity, data):
    lengths = data.draw(st.lists(st.integers(min_value=1, max_value=capacity), max_size=200))
    rows = best_fit_decreasing(lengths, capacity)
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= capacity for row in rows)
    # any-fit packing never leaves two rows half empty
    assert len(rows) <= 2 * sum(lengths) / capacity + 1


def _segment(length: int, index: int, turns: int) -> Segment:
    turn = np.sort(np.random.default_rng(index).integers(0, max(1, turns), length)).astype(np.int32)
    return Segment(f"e{index}", np.arange(length, dtype=np.int32) + 1000 * index, np.ones(length, np.uint8), np.full(length, 2, np.int8), None, None, turn)


@settings(max_examples=150, deadline=None)
@given(seq_len=st.integers(min_value=4, max_value=64), lengths=st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=30), turns=st.integers(1, 6), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_split_fit_and_rows_keep_every_token(seq_len, lengths, turns, cuts):
    """Segments split to fit, held in blocks cut anywhere (as a window holds its batches' blocks),
    packed: each row holds its segments' own tokens in its order, positions restart per segment."""
    segments = [_segment(n, i, turns) for i, n in enumerate(lengths)]
    counts = PackCounts()
    fitted = fit(segments, seq_len=seq_len, overflow="split", counts=counts)
    assert sum(len(s) for s in fitted) == sum(lengths) and counts.tokens_dropped == 0
    lengths = np.asarray([len(s) for s in fitted])
    rows = best_fit_decreasing(lengths.tolist(), seq_len)
    bounds = sorted({0, len(fitted), *(c for c in cuts if c < len(fitted))})
    blocks = Blocks([Block.from_segments(fitted[a:b]) for a, b in zip(bounds, bounds[1:])])
    table = rows_table(blocks, rows, with_returns=False).to_pylist()
    tokens = []
    for row, members in zip(table, rows):
        assert row["input_ids"] == [int(t) for i in members for t in fitted[i].ids]
        assert row["episode_ids"] == [fitted[i].episode_id for i in members]
        assert len(row["input_ids"]) == sum(row["seq_lens"]) <= seq_len
        at = 0
        for n in row["seq_lens"]:
            assert row["position_ids"][at : at + n] == list(range(n))
            at += n
        tokens.extend(row["input_ids"])
    assert sorted(tokens) == sorted(int(t) for s in segments for t in s.ids)


@given(turns=st.lists(st.integers(0, 5), min_size=1, max_size=300).map(sorted), seq_len=st.integers(1, 50))
def test_split_points_cover_in_order_and_prefer_move_starts(turns, seq_len):
    spans = split_points(np.asarray(turns), seq_len)
    assert spans[0][0] == 0 and spans[-1][1] == len(turns)
    assert all(a < b and b - a <= seq_len for a, b in spans)
    assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))
