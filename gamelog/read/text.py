"""Plain-text reader: a .txt file cut into documents, each yielded as {"text": ...}.

`split` decides what a document is: `file` (the whole file), `line` (each non-blank line) or
`blank-line` (each block of lines between blank lines). Blank lines and blank blocks are
separators, not records. Lines are read as a stream, so only one document is in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gamelog.read.items import RAW_LIMIT, Item, batched
from gamelog.read.json import BOM
from gamelog.read.streams import STREAM_ERRORS, bounded_lines, open_binary, stream_error_detail

SPLITS = ("file", "line", "blank-line")
RAW_BYTES = 4 * RAW_LIMIT  # of a good document's bytes, what a reject (a duplicate) can show: its first RAW_LIMIT characters


def read_text(path: Path, *, split: str = "blank-line", max_record_bytes: int) -> Iterator[list[Item]]:
    return batched(_documents(path, split, max_record_bytes))


def _documents(path: Path, split: str, max_record_bytes: int) -> Iterator[Item]:
    block: list[bytes] = []
    size = 0
    first = 0
    number = 0
    with open_binary(path) as stream:
        try:
            for number, (line, length) in enumerate(bounded_lines(stream, max_record_bytes), start=1):
                huge = line is None  # a line over the limit: counted, never stored
                if not huge and number == 1 and line.startswith(BOM):
                    line = line[len(BOM):]
                blank = not huge and not line.strip()
                if split == "line" or (split == "blank-line" and blank):
                    if block or size:
                        yield _document(block, first, number - 1, max_record_bytes, size)
                        block, size = [], 0
                    if blank:
                        continue
                if not block and not size:
                    first = number
                if not huge and size + length <= max_record_bytes:
                    block.append(line)
                size += length
        except STREAM_ERRORS as exc:
            yield Item(f"line {number + 1}", error=("truncated_file", stream_error_detail(path, exc)))
    if block or size:
        yield _document(block, first, number, max_record_bytes, size)


def _document(block: list[bytes], first: int, last: int, max_record_bytes: int, size: int) -> Item:
    location = f"line {first}" if first == last else f"lines {first}-{last}"
    data = b"".join(block)
    if size > max_record_bytes:
        detail = f"{location}: document of {size:,} bytes is over the limit of {max_record_bytes:,}; use a finer --split or raise --max-record-bytes."
        return Item(location, error=("record_too_large", detail), raw=data[:4000])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"{location}: invalid UTF-8 at byte {exc.start} of the document; re-encode the file as UTF-8."
        return Item(location, error=("bad_utf8", detail), raw=data)
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text.strip():
        return Item(location, error=("empty_content", f"{location}: the document is blank."), raw=data)
    return Item(location, value={"text": text.strip("\n")}, raw=data[:RAW_BYTES], read=len(data))  # a reject keeps this much of it
