"""JSON readers: JSON Lines line by line, JSON documents streamed.

JSONL is parsed one line at a time with orjson, so a bad line is rejected with its line number
and never takes the others down. A JSON array, or the `data` array of an object document
(`{"version": ..., "data": [...]}` as SQuAD), is streamed item by item with ijson (its C backend
runs near orjson's speed), so memory stays flat whatever the file size. When an array is damaged
(cut short, trailing garbage), every complete item before the damage is kept and the rest
becomes one reject at the item where it broke. Any other object document is one record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from gamelog.read.items import Item, batched
from gamelog.read.streams import STREAM_ERRORS, bounded_lines, open_binary, stream_error_detail

DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


def too_large(location: str, size: int, limit: int, raw: bytes | None = None) -> Item:
    detail = f"{location}: record of {size:,} bytes is over the limit of {limit:,}; raise --max-record-bytes to keep it."
    return Item(location, error=("record_too_large", detail), raw=None if raw is None else raw[:4000])


class JsonLine(Item):
    """A record of a JSON Lines file: it crosses to another process as its line alone and is
    parsed again there (pickling the parsed record too cost more than parsing it)."""

    __slots__ = ()

    def __reduce__(self):
        return _json_line, (self.location, self.raw)


def _json_line(location: str, line: bytes) -> JsonLine:
    return JsonLine(location, value=orjson.loads(line), raw=line)


def parse_line(line: bytes, location: str, max_record_bytes: int) -> Item:
    if len(line) > max_record_bytes:
        return too_large(location, len(line), max_record_bytes, line)
    try:
        return _json_line(location, line)
    except orjson.JSONDecodeError as exc:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as uexc:
            detail = f"{location}: invalid UTF-8 at byte {uexc.start}; re-encode the file as UTF-8."
            return Item(location, error=("bad_utf8", detail), raw=line)
        return Item(location, error=("bad_json", f"{location}: not valid JSON ({exc}); fix or remove this line."), raw=line)


def read_jsonl(path: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[list[Item]]:
    """One record per non-blank line; blank lines are not records."""
    return batched(_lines(path, max_record_bytes))


def _lines(path: Path, max_record_bytes: int) -> Iterator[Item]:
    number = 0
    with open_binary(path) as stream:
        try:
            for number, (line, size) in enumerate(bounded_lines(stream, max_record_bytes), start=1):
                if line is None:
                    yield too_large(f"line {number}", size, max_record_bytes)
                    continue
                if number == 1 and line.startswith(BOM):
                    line = line[len(BOM):]
                if line.strip():
                    yield parse_line(line, f"line {number}", max_record_bytes)
        except STREAM_ERRORS as exc:
            yield Item(f"line {number + 1}", error=("truncated_file", stream_error_detail(path, exc)))


def read_json(path: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[list[Item]]:
    """A JSON document: an array of records, an object holding them in `data`, one object, or JSON Lines."""
    return batched(_document(path, max_record_bytes))


def _document(path: Path, max_record_bytes: int) -> Iterator[Item]:
    try:
        with open_binary(path) as stream:
            head = _first_byte(stream)
            if head == b"[":
                yield from _stream_items(stream, "item", "item {}")
                return
            if head == b"{" and _first_line_is_object(stream):
                yield from _lines(path, max_record_bytes)
                return
        with open_binary(path) as stream:
            found = yield from _stream_items(stream, "data.item", "data[{}]")
        if not found:
            yield from _single_object(path, max_record_bytes)
    except STREAM_ERRORS as exc:
        yield Item("item 0", error=("truncated_file", stream_error_detail(path, exc)))


def _single_object(path: Path, max_record_bytes: int) -> Iterator[Item]:
    with open_binary(path) as stream:
        data = stream.read(max_record_bytes + 1)
    if data.startswith(BOM):
        data = data[len(BOM):]
    if not data.strip():
        return
    if len(data) > max_record_bytes:
        detail = f"{path.name}: one JSON object of over {max_record_bytes:,} bytes; store the records as a JSON array or JSON Lines."
        yield Item("item 0", error=("record_too_large", detail))
        return
    try:
        yield Item("item 0", value=orjson.loads(data))
    except orjson.JSONDecodeError as exc:
        if data.lstrip().startswith(b"{") and b"\n" in data.strip():  # JSON Lines whose first line is long or broken
            lines = data.split(b"\n")
            yield from (parse_line(line, f"line {n}", max_record_bytes) for n, line in enumerate(lines, start=1) if line.strip())
            return
        yield Item("item 0", error=("bad_json", f"{path.name}: not a JSON document ({exc}); pass a JSON array or JSON Lines."), raw=data[:4000])


def _first_byte(stream) -> bytes:
    """The first non-blank byte, leaving the stream positioned at it (a BOM is skipped)."""
    while True:
        ahead = stream.peek(4096)
        if not ahead:
            return b""
        if ahead.startswith(BOM):
            stream.read(len(BOM))
            continue
        stripped = ahead.lstrip()
        if stripped:
            stream.read(len(ahead) - len(stripped))
            return stripped[:1]
        stream.read(len(ahead))


def _first_line_is_object(stream) -> bool:
    """JSON Lines saved as .json: the first line alone is a complete object and more follows."""
    ahead = stream.peek(1 << 20)
    line = ahead.split(b"\n", 1)[0]
    try:
        return isinstance(orjson.loads(line), dict) and len(line) < len(ahead.rstrip())
    except orjson.JSONDecodeError:
        return False


def _stream_items(stream, prefix: str, location: str):
    """Items of the array at `prefix`; returns how many were found (0: no such array)."""
    import ijson

    index = 0
    try:
        for value in ijson.items(stream, prefix, use_float=True):
            yield Item(location.format(index), value=value)
            index += 1
    except (ijson.JSONError, ijson.IncompleteJSONError, UnicodeDecodeError) as exc:
        if prefix != "item" and index == 0:
            return 0  # not a container document: read as one object
        detail = (
            f"{location.format(index)}: the JSON array is damaged from here on ({str(exc).strip()[:200]}); "
            f"the {index} items before it were read. Repair the file to keep the rest."
        )
        yield Item(location.format(index), error=("bad_json", detail))
        index += 1
    return index
