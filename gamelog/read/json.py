"""JSON readers: JSON Lines line by line, JSON documents streamed.

JSONL is parsed one line at a time with orjson, so a bad line is rejected with its line number
and never takes the others down. A JSON array, or the `data` array of an object document
(`{"version": ..., "data": [...]}` as SQuAD), is streamed item by item with ijson (its C backend
runs near orjson's speed), so memory stays flat whatever the file size. When an array is damaged
(cut short, trailing garbage), every complete item before the damage is kept and the rest
becomes one reject at the item where it broke. Any other object document is one record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

from gamelog.read.items import BATCH_BYTES, BATCH_SIZE, Item, batched
from gamelog.read.streams import COMPRESSIONS, STREAM_ERRORS, bounded_lines, open_binary, stream_error_detail

DEFAULT_MAX_RECORD_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
READ_BLOCK = 1 << 20  # bytes read at a time while cutting a file into batches


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


def read_jsonl(path: Path, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[Iterable[Item]]:
    """One record per non-blank line; blank lines are not records.

    A plain file is cut into `LineBatch`es, byte ranges read and parsed by whichever process
    converts them; a compressed file or a named pipe, which cannot be read from the middle (or
    twice), is read here."""
    if path.suffix.lower() in COMPRESSIONS or not path.is_file():
        return batched(_lines(path, max_record_bytes))
    return (LineBatch(str(path), start, stop, before, max_record_bytes) for start, stop, before in line_ranges(path))


class LineBatch:
    """A batch of a JSON Lines file as its byte range: its lines are read and parsed where the
    batch is converted. The main process of a crew (`gamelog.crew`) then only finds line ends
    (bytes.find over blocks of the file) and sends five values, instead of reading and parsing
    every line and sending the lines (0.15 + 0.05 s of its time per 20,000 conversations)."""

    __slots__ = ("path", "start", "stop", "before", "limit")

    def __init__(self, path: str, start: int, stop: int | None, before: int, limit: int):
        self.path, self.start, self.stop, self.before, self.limit = path, start, stop, before, limit

    def __iter__(self) -> Iterator[Item]:
        with open(self.path, "rb") as stream:
            stream.seek(self.start)
            size = None if self.stop is None else self.stop - self.start
            yield from _stream_lines(stream, Path(self.path), self.limit, before=self.before, size=size)

    def __reduce__(self):
        return LineBatch, (self.path, self.start, self.stop, self.before, self.limit)


def line_ranges(path: Path) -> Iterator[tuple[int, int | None, int]]:
    """(start, stop, lines before it) of each batch of a file's lines: a batch ends with the line
    that brings it to BATCH_SIZE lines or BATCH_BYTES bytes (as `batched` cuts records). Only the
    line ends are looked for, a block at a time, so no line is held whatever its length. A read
    error ends the cutting with a batch to the end, whose reader then reports it."""
    start = lines = before = offset = 0  # the batch's first byte and its lines so far; lines before it; the block's offset
    with open(path, "rb") as stream:
        while True:
            try:
                block = stream.read(READ_BLOCK)
            except OSError:
                yield start, None, before
                return
            if not block:
                break
            at = 0
            while True:
                by_size = max(at, start + BATCH_BYTES - 1 - offset)  # a line end from here on brings the batch to BATCH_BYTES
                ends = block.count(b"\n", at, by_size)
                if lines + ends >= BATCH_SIZE:
                    end = at - 1
                    for _ in range(BATCH_SIZE - lines):
                        end = block.find(b"\n", end + 1)
                    lines = BATCH_SIZE
                else:
                    end = block.find(b"\n", by_size)
                    if end < 0:
                        lines += ends
                        break
                    lines += ends + 1
                yield start, offset + end + 1, before
                start, before, lines, at = offset + end + 1, before + lines, 0, end + 1
            offset += len(block)
    if offset > start:
        yield start, offset, before


def _lines(path: Path, max_record_bytes: int) -> Iterator[Item]:
    with open_binary(path) as stream:
        yield from _stream_lines(stream, path, max_record_bytes)


def _stream_lines(stream, path: Path, max_record_bytes: int, *, before: int = 0, size: int | None = None) -> Iterator[Item]:
    """Items of a stream's lines; `before` lines come before its position, and `size` bytes from
    there are read (all, when None)."""
    number, read = before, 0
    try:
        for number, (line, length) in enumerate(bounded_lines(stream, max_record_bytes), start=before + 1):
            if line is None:
                yield too_large(f"line {number}", length, max_record_bytes)
            else:
                if number == 1 and line.startswith(BOM):
                    line = line[len(BOM):]
                if line.strip():
                    yield parse_line(line, f"line {number}", max_record_bytes)
            read += length
            if size is not None and read >= size:
                return
    except STREAM_ERRORS as exc:
        yield Item(f"line {number + 1}", error=("truncated_file", stream_error_detail(path, exc)))
        return
    if size is not None:  # the range ended early: the file shrank after it was cut
        detail = f"{path.name}: the file ended {size - read:,} bytes before where it ended when the run began (it was changed during the run); re-run on a file that is not being written."
        yield Item(f"line {number + 1}", error=("truncated_file", detail))


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


def _position(stream) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError, AttributeError):  # a stream that cannot tell: batches bounded by count alone
        return 0


def _stream_items(stream, prefix: str, location: str):
    """Items of the array at `prefix`; returns how many were found (0: no such array)."""
    import ijson

    index = 0
    at = _position(stream)
    try:
        for value in ijson.items(stream, prefix, use_float=True):
            now = _position(stream)  # where the parser has read to, a buffer at a time: it bounds the batches' size
            yield Item(location.format(index), value=value, read=now - at)
            index += 1
            at = now
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
