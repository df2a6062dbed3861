"""JSON readers: JSON Lines line by line, JSON documents whole or streamed.

JSONL is parsed one line at a time with orjson, so a bad line is rejected with its line number
and never takes the others down. A `.json` document up to WHOLE_JSON_LIMIT bytes is parsed at
once (fast); a larger array is streamed item by item with ijson so memory stays flat. When a
document does not parse (an array cut short, trailing garbage), ijson recovers every complete
item before the damage and the rest becomes one reject at the item where it broke.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from gamelog.read.items import BATCH_SIZE, Item
from gamelog.read.streams import STREAM_ERRORS, open_binary, stream_error_detail

WHOLE_JSON_LIMIT = 64 * 1024 * 1024
DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


def parse_line(line: bytes, location: str, max_record_bytes: int) -> Item:
    if len(line) > max_record_bytes:
        detail = f"{location}: record of {len(line):,} bytes is over the limit of {max_record_bytes:,}; raise --max-record-bytes to keep it."
        return Item(location, error=("record_too_large", detail), raw=line[:4000])
    try:
        return Item(location, value=orjson.loads(line), raw=line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as uexc:
            detail = f"{location}: invalid UTF-8 at byte {uexc.start}; re-encode the file as UTF-8."
            return Item(location, error=("bad_utf8", detail), raw=line)
        return Item(location, error=("bad_json", f"{location}: not valid JSON ({exc}); fix or remove this line."), raw=line)


def read_jsonl(path: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[list[Item]]:
    """One record per non-blank line; blank lines are not records."""
    batch: list[Item] = []
    number = 0
    with open_binary(path) as stream:
        try:
            for number, line in enumerate(stream, start=1):
                if number == 1 and line.startswith(BOM):
                    line = line[len(BOM):]
                if not line.strip():
                    continue
                batch.append(parse_line(line, f"line {number}", max_record_bytes))
                if len(batch) >= BATCH_SIZE:
                    yield batch
                    batch = []
        except STREAM_ERRORS as exc:
            batch.append(Item(f"line {number + 1}", error=("truncated_file", stream_error_detail(path, exc))))
    if batch:
        yield batch


def read_json(path: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[list[Item]]:
    """A JSON document: an array of records, an object holding one (`{"data": [...]}`), or JSON Lines."""
    if path.suffix.lower() == ".json" and path.stat().st_size > WHOLE_JSON_LIMIT:
        yield from _stream_array(path)
        return
    try:
        with open_binary(path) as stream:
            data = stream.read()
    except STREAM_ERRORS as exc:
        yield [Item("item 0", error=("truncated_file", stream_error_detail(path, exc)))]
        return
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data.strip():
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        yield from _recover(path, data, max_record_bytes)
        return
    yield from _batches(_document_items(doc))


def _document_items(doc) -> Iterator[Item]:
    if isinstance(doc, list):
        return (Item(f"item {i}", value=v) for i, v in enumerate(doc))
    if isinstance(doc, dict) and isinstance(doc.get("data"), list) and len(doc) <= 3:
        # {"version": ..., "data": [...]} containers (SQuAD, HF JSON exports)
        return (Item(f"data[{i}]", value=v) for i, v in enumerate(doc["data"]))
    return iter([Item("item 0", value=doc)])


def _batches(items: Iterator[Item]) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _recover(path: Path, data: bytes, max_record_bytes: int) -> Iterator[list[Item]]:
    """The document does not parse: JSON Lines in a .json file, or a damaged array."""
    head = data.lstrip()[:1]
    if head == b"{":
        yield from _jsonl_from_bytes(data, max_record_bytes)
    elif head == b"[":
        yield from _stream_array(path, data)
    else:
        detail = f"{path.name}: not a JSON document (starts with {data[:20]!r}); pass a JSON array or JSON Lines."
        yield [Item("item 0", error=("bad_json", detail), raw=data[:4000])]


def _jsonl_from_bytes(data: bytes, max_record_bytes: int) -> Iterator[list[Item]]:
    lines = data.split(b"\n")
    items = (parse_line(line, f"line {n}", max_record_bytes) for n, line in enumerate(lines, start=1) if line.strip())
    yield from _batches(items)


def _stream_array(path: Path, data: bytes | None = None) -> Iterator[list[Item]]:
    import io

    import ijson

    source = io.BytesIO(data) if data is not None else open_binary(path)
    index = 0
    batch: list[Item] = []
    try:
        with source:
            for value in ijson.items(source, "item", use_float=True):
                batch.append(Item(f"item {index}", value=value))
                index += 1
                if len(batch) >= BATCH_SIZE:
                    yield batch
                    batch = []
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError, *STREAM_ERRORS) as exc:
        detail = (
            f"item {index}: the JSON array is damaged from here on ({str(exc).strip()[:200]}); "
            f"the {index} items before it were read. Repair the file to keep the rest."
        )
        batch.append(Item(f"item {index}", error=("bad_json", detail)))
    if batch:
        yield batch
