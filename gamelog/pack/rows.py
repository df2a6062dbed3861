"""Packed rows as Arrow: each column taken from a window's blocks of segments (`gamelog.pack.block`) and cut at offsets."""

from __future__ import annotations

from itertools import chain

import numpy as np
import pyarrow as pa

from gamelog.pack.block import OPTIONAL, Blocks
from gamelog.records import PackedRow, arrow_schema
from gamelog.write.arrays import lists, numeric, strings

PACKED_SCHEMA = arrow_schema(PackedRow)


def _list(flat, offsets: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """Lists over `flat` (a numpy array, or a list of str) cut at `offsets`; rows where `valid` is False are null."""
    values = strings(flat) if type_ == pa.string() else numeric(flat, type_)
    return lists(values, offsets, pa.list_(type_), valid)


def rows_table(window: Blocks, rows: list[list[int]], *, with_returns: bool) -> pa.Table:
    """One table row per bin (lists of the window's segment indexes); every column is taken from
    the window's blocks in one vectorised step (`Blocks.take`)."""
    order = np.fromiter(chain.from_iterable(rows), dtype=np.int64)  # segment indexes, row after row
    lengths = window.lengths[order]
    seg_offsets = np.concatenate([[0], np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))])
    ends = np.cumsum(lengths)
    offsets = np.concatenate([[0], ends[seg_offsets[1:] - 1]])  # every row holds a segment
    positions = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int32)  # int32: a table holds ROW_GROUP rows
    positions -= np.repeat((ends - lengths).astype(np.int32), lengths)
    tokens = window.take(order)
    columns = {
        "input_ids": _list(tokens["ids"], offsets, pa.int32()),
        "loss_mask": _list(tokens["mask"], offsets, pa.uint8()),
        "position_ids": _list(positions, offsets, pa.int32()),
        "seq_lens": _list(lengths.astype(np.int32), seg_offsets, pa.int32()),
        "player": _list(tokens["player"], offsets, pa.int8()),
        "episode_ids": _list([window.episode_ids[i] for i in order.tolist()], seg_offsets, pa.string()),
    }
    for name in OPTIONAL:
        values = tokens.get(name) if name != "returns" or with_returns else None
        valid = np.ones(len(rows), bool) if name == "returns" or values is None else np.add.reduceat(window.present(name)[order], seg_offsets[:-1]) > 0
        columns[name] = _optional(values, valid, offsets)
    return pa.Table.from_arrays([_as(columns[f.name], f.type) for f in PACKED_SCHEMA], schema=PACKED_SCHEMA)


def _as(array: pa.Array, type_: pa.DataType) -> pa.Array:
    """The array as the schema's type; the columns are built as it already (casting loads pyarrow.compute: 50 ms)."""
    return array if array.type == type_ else array.cast(type_)


def _optional(values: np.ndarray | None, valid: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """A per-token float column that a segment may lack (its default fills it: see OPTIONAL); null
    in the rows where no segment has it (`valid`), and in all where none does."""
    if values is None or not valid.any():
        return pa.nulls(len(valid), pa.list_(pa.float32()))
    return _list(values, offsets, pa.float32(), valid=valid)
