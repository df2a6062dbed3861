"""What every reader yields: input records with their location, or the reason they could not be read.

Readers never raise on a bad record: a line that is not JSON, bytes that are not UTF-8 or a
compressed stream cut short become an `Item` carrying an error, so the converter can reject it
with its location and go on with the next record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

BATCH_SIZE = 1024  # records per batch ...
BATCH_BYTES = 256 << 10  # ... or fewer, once their raw size reaches this: memory stays flat
RAW_LIMIT = 2000  # characters of raw text kept with a reject


@dataclass(slots=True)
class Item:
    location: str  # "line 12" (1-based lines), "item 3" / "row 3" (0-based indexes)
    value: Any = None  # the parsed record (usually a dict)
    error: tuple[str, str] | None = None  # (reason code, detail) when the record could not be read
    raw: bytes | str | None = None  # raw text (or its start), kept only where it is at hand for rejects
    read: int = 0  # input bytes read for it where `raw` is not kept whole (a streamed array's items, a document's): what bounds a batch's size then

    def size(self) -> int:
        """Its input bytes as far as known: the bytes read for it, or its raw text's (0: not known)."""
        return self.read or (len(self.raw) if self.raw is not None else 0)


def raw_text(raw: bytes | str | None) -> str | None:
    """Raw record text for a reject, bounded in size and always valid UTF-8."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw[: RAW_LIMIT * 4].decode("utf-8", errors="replace")
    return raw[:RAW_LIMIT]


def batched(items: Iterable[Item]) -> Iterator[list[Item]]:
    """Group items into batches bounded by count and by input size (the raw text's, or the bytes read for the item)."""
    batch: list[Item] = []
    size = 0
    for item in items:
        batch.append(item)
        size += item.size()
        if len(batch) >= BATCH_SIZE or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
