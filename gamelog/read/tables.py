"""Tabular readers: Parquet, CSV, datasets saved with `save_to_disk`, and Hugging Face hub ids.

Each streams Arrow record batches and hands their rows on as records; nothing is read whole.
CSV rows that do not parse (wrong number of fields) are rejected with their line number through
pyarrow's invalid-row handler, and rows with bytes that are not UTF-8 with their row number,
instead of stopping the file; every CSV field is read as its text.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from pathlib import Path

from gamelog.errors import GamelogError
from gamelog.read.items import BATCH_BYTES, BATCH_SIZE, Item, batched


def _rows(batches, prefix: str = "") -> Iterator[list[Item]]:
    """Records of Arrow record batches, in batches of at most BATCH_SIZE rows and about BATCH_BYTES
    (a reader's batch can be far larger: a CSV block of 4 MiB, a Parquet row group of long texts)."""
    index = 0
    for batch in batches:
        step = max(1, min(BATCH_SIZE, batch.num_rows * BATCH_BYTES // max(batch.nbytes, 1)))
        for start in range(0, batch.num_rows, step):
            rows = batch.slice(start, step).to_pylist()
            yield [Item(f"{prefix}row {index + i}", value=row) for i, row in enumerate(rows)]
            index += len(rows)


def parquet_batches(path, batch_size: int, columns: list[str] | None = None):
    """Record batches of a Parquet file, read a row group at a time and decoded on this thread.

    pyarrow's defaults would pre-buffer every selected column chunk of the file when the reader
    starts (holding the file's size: 25 MiB for episodes of 100,000 conversations, a whole shard
    for PackedDataset) and decode on Arrow's pool, a thread per core, which competed with the
    crew's processes for the cores (pack of 20,000 conversations on 2 cores: 2.65 -> 2.56 s).
    """
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size, columns=columns, use_threads=False)


def read_parquet(path: Path, **_) -> Iterator[list[Item]]:
    """Rows of a Parquet file; a damaged file (or the damaged rest of one) becomes one reject."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    read = 0
    try:
        for items in _rows(parquet_batches(path, BATCH_SIZE)):
            read += len(items)
            yield items
    except (pa.ArrowException, OSError) as exc:
        detail = f"{path.name}: not a readable Parquet file from row {read} on ({str(exc)[:200]}); re-export it."
        yield [Item(f"row {read}", error=("unreadable_file", detail))]


def read_csv(path: Path, **_) -> Iterator[list[Item]]:
    """Rows of a CSV (or .tsv) file, every field as its text.

    A CSV holds text: a column of numbers stays the text it is ("007", "1e5"), as the formats
    expect text for moves; the few numeric fields (a KTO label, a margin) are read from their text
    by the formats. Bytes that are not UTF-8 reject their row (bad_utf8), and a row with the wrong
    number of fields is rejected (bad_csv), each with its location; the other rows are kept.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    bad: list[Item] = []
    done = 0

    def on_invalid(row) -> str:
        # pyarrow knows line numbers only when values may not hold newlines; else say which block
        location = f"line {row.number}" if row.number is not None else f"after row {done}"
        detail = f"{location}: expected {row.expected_columns} fields, found {row.actual_columns}; fix the quoting of this row."
        bad.append(Item(location, error=("bad_csv", detail), raw=row.text.replace(NOT_UTF8, "\ufffd")))
        return "skip"

    delimiter = "\t" if path.name.lower().removesuffix(".gz").removesuffix(".zst").endswith(".tsv") else ","
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid)
    read = pacsv.ReadOptions(block_size=1 << 22)
    header = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: "skip")  # the reader below reports bad rows
    try:
        with _utf8(path) as stream:
            names = pacsv.open_csv(stream, read_options=read, parse_options=header).schema.names
        convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in names}, strings_can_be_null=False, quoted_strings_can_be_null=False)
        with _utf8(path) as stream:
            for items in _rows(pacsv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)):
                items = [_utf8_checked(item) for item in items] if stream.raw.replaced else items
                done += len(items)
                yield bad + items
                bad.clear()
    except (pa.ArrowException, OSError, EOFError) as exc:
        bad.append(Item(f"row {done}", error=("bad_csv", f"{path.name}: the CSV stops parsing after {done} rows ({str(exc)[:200]}).")))
    if bad:
        yield bad


NOT_UTF8 = "\ufdd0"  # a noncharacter: what a CSV's bytes that are not UTF-8 read as, so that their row can be found and rejected


def _not_utf8(error: UnicodeDecodeError) -> tuple[str, int]:
    return NOT_UTF8 * (error.end - error.start), error.end


codecs.register_error("gamelog-not-utf8", _not_utf8)


class _Utf8Stream(io.RawIOBase):
    """A byte stream passed on as UTF-8, with NOT_UTF8 for each byte that is not UTF-8: pyarrow's
    CSV reader stops the whole file at such bytes (and prints a traceback for them in a bad row),
    so they are marked here and their rows rejected after parsing (`_utf8_checked`)."""

    def __init__(self, source):
        self.source = source
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="gamelog-not-utf8")
        self.pending = b""
        self.replaced = False  # whether any byte was not UTF-8

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            chunk = self.source.read(1 << 20)
            text = self.decoder.decode(chunk, final=not chunk)
            self.replaced = self.replaced or NOT_UTF8 in text
            self.pending = text.encode("utf-8")
            if not chunk:
                break
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size

    def close(self) -> None:
        self.source.close()
        super().close()


def _utf8(path: Path) -> io.BufferedReader:
    from gamelog.read.streams import open_binary

    return io.BufferedReader(_Utf8Stream(open_binary(path)), 1 << 20)


def _utf8_checked(item: Item) -> Item:
    """A row with bytes that were not UTF-8 as a bad_utf8 reject; any other row as it is."""
    fields = [name for name, value in item.value.items() if isinstance(value, str) and NOT_UTF8 in value]
    if not fields:
        return item
    detail = f"{item.location}: bytes that are not UTF-8 in {', '.join(repr(f) for f in fields)}; re-encode the file as UTF-8."
    raw = ",".join(str(v) for v in item.value.values()).replace(NOT_UTF8, "\ufffd")
    return Item(item.location, error=("bad_utf8", detail), raw=raw)


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists())


def read_saved_dataset(path: Path, **_) -> Iterator[list[Item]]:
    """A directory written by `datasets.Dataset.save_to_disk` (a Dataset or a DatasetDict)."""
    import datasets

    loaded = datasets.load_from_disk(str(path))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    for name, dataset in splits:
        yield from _rows(dataset.data.table.to_batches(max_chunksize=BATCH_SIZE), f"{name}/" if name else "")


def read_hub(dataset_id: str, **_) -> Iterator[list[Item]]:
    """`hf://org/name[:split]`, streamed with `datasets` (needs network access to the hub)."""
    import datasets

    name, _, split = dataset_id.removeprefix("hf://").partition(":")
    try:
        stream = datasets.load_dataset(name, split=split or "train", streaming=True)
        yield from batched(Item(f"row {index}", value=row) for index, row in enumerate(stream))
    except Exception as exc:  # the hub client raises many kinds; all mean the same to the user
        raise GamelogError(
            f"{dataset_id}: could not load from the Hugging Face hub ({exc.__class__.__name__}: {str(exc)[:200]}); "
            "check the id and split and that this machine is online, or download the data and pass the files."
        ) from exc
