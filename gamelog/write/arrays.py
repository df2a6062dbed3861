"""Arrow arrays from Python values and numpy arrays, built straight from buffers.

`pa.array` on any Python or numpy input imports pandas to check whether the input is a pandas
object: 0.3 s of every convert and pack process. These builders make the same arrays from
validity bitmaps, offsets and data buffers, and never touch pandas.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def validity(valid: np.ndarray | None) -> tuple[pa.Buffer | None, int]:
    """A validity bitmap (None when every value is present) and the null count."""
    if valid is None or valid.all():
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), int((~valid).sum())


def numeric(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """An Arrow array over a numpy array's buffer; positions where `valid` is False are null."""
    values = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    bitmap, nulls = validity(valid)
    return pa.Array.from_buffers(type_, len(values), [bitmap, pa.py_buffer(values)], null_count=nulls)


def strings(values: list[str | None]) -> pa.Array:
    """A string array; None is null."""
    valid = None
    if None in values:
        valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        values = ["" if v is None else v for v in values]
    try:
        # one encode of the joined text; a string's byte length is its length when it is ASCII (a flag Python keeps)
        data = "".join(values).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: let Arrow raise its own error, as before
        return pa.array(values, type=pa.string())
    sizes = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    if len(data) != sizes.sum():  # some text is not ASCII: byte lengths for those
        sizes = np.fromiter((len(v) if v.isascii() else len(v.encode("utf-8")) for v in values), dtype=np.int64, count=len(values))
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(sizes, out=offsets[1:])
    bitmap, nulls = validity(valid)
    return pa.Array.from_buffers(pa.string(), len(values), [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)], null_count=nulls)


def scalars(values: list, type_: pa.DataType) -> pa.Array:
    """A column of Python scalars (None is null) of a string, integer or floating type."""
    if values.count(None) == len(values):  # a field no record fills (a move's name or reward, mostly): nothing to read
        return pa.nulls(len(values), type_)
    if type_ == pa.string():
        return strings(values)
    if None not in values:
        return numeric(np.asarray(values, dtype=type_.to_pandas_dtype()), type_)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    filled = np.fromiter((0 if v is None else v for v in values), dtype=type_.to_pandas_dtype(), count=len(values))
    return numeric(filled, type_, valid)


def lists(values: pa.Array, offsets: np.ndarray, type_: pa.ListType, valid: np.ndarray | None = None) -> pa.Array:
    """Lists over `values` cut at `offsets`; rows where `valid` is False are null."""
    bitmap, nulls = validity(valid)
    return pa.ListArray.from_buffers(type_, len(offsets) - 1, [bitmap, pa.py_buffer(np.ascontiguousarray(offsets, dtype=np.int32))], null_count=nulls, children=[values])
