"""Tabular readers: Parquet, CSV, datasets saved with `save_to_disk`, and Hugging Face hub ids.

Each streams Arrow record batches and hands their rows on as records; nothing is read whole.
CSV rows that do not parse (wrong number of fields) are rejected with their line number through
pyarrow's invalid-row handler instead of stopping the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gamelog.errors import GamelogError
from gamelog.read.items import BATCH_SIZE, Item, batched


def _rows(batches, prefix: str = "") -> Iterator[list[Item]]:
    index = 0
    for batch in batches:
        rows = batch.to_pylist()
        yield [Item(f"{prefix}row {index + i}", value=row) for i, row in enumerate(rows)]
        index += len(rows)


def read_parquet(path: Path, **_) -> Iterator[list[Item]]:
    """Rows of a Parquet file; a damaged file (or the damaged rest of one) becomes one reject."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    read = 0
    try:
        for items in _rows(pq.ParquetFile(path).iter_batches(batch_size=BATCH_SIZE)):
            read += len(items)
            yield items
    except (pa.ArrowException, OSError) as exc:
        detail = f"{path.name}: not a readable Parquet file from row {read} on ({str(exc)[:200]}); re-export it."
        yield [Item(f"row {read}", error=("unreadable_file", detail))]


def read_csv(path: Path, **_) -> Iterator[list[Item]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from gamelog.read.streams import open_binary

    bad: list[Item] = []
    done = 0

    def on_invalid(row) -> str:
        # pyarrow knows line numbers only when values may not hold newlines; else say which block
        location = f"line {row.number}" if row.number is not None else f"after row {done}"
        detail = f"{location}: expected {row.expected_columns} fields, found {row.actual_columns}; fix the quoting of this row."
        bad.append(Item(location, error=("bad_csv", detail), raw=row.text))
        return "skip"

    delimiter = "\t" if path.name.lower().removesuffix(".gz").removesuffix(".zst").endswith(".tsv") else ","
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid)
    convert = pacsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False, check_utf8=True)
    read = pacsv.ReadOptions(block_size=1 << 22)
    try:
        reader = pacsv.open_csv(open_binary(path), read_options=read, parse_options=parse, convert_options=convert)
        for items in _rows(reader):
            done += len(items)
            yield bad + items
            bad.clear()
    except (pa.ArrowException, OSError, EOFError, UnicodeDecodeError) as exc:
        bad.append(Item(f"row {done}", error=("bad_csv", f"{path.name}: the CSV stops parsing after {done} rows ({str(exc)[:200]}).")))
    if bad:
        yield bad


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
