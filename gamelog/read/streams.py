"""Open input files as byte streams, transparently decompressing .gz and .zst."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

COMPRESSIONS = (".gz", ".zst")


def inner_suffix(path: Path) -> str:
    """The data suffix under any compression suffix: data.jsonl.gz -> .jsonl."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def open_binary(path: Path) -> io.BufferedIOBase:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def bounded_lines(stream, limit: int):
    """Lines of a byte stream, never holding more than `limit` + 1 bytes of one line in memory.

    A longer line (a decompression bomb, a file without newlines) is skipped in chunks and
    yielded as (None, its size), so the reader can reject it without ever storing it.
    """
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(b"\n"):
            yield line, len(line)
            continue
        size = len(line)
        while True:
            chunk = stream.readline(1 << 20)
            size += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                break
        yield None, size


STREAM_ERRORS: tuple[type[BaseException], ...] = (EOFError, gzip.BadGzipFile, OSError)


def stream_error_detail(path: Path, exc: BaseException) -> str:
    return (
        f"{path.name}: the compressed stream is damaged or ends early ({exc.__class__.__name__}: {exc}); "
        "records after this point could not be read. Re-download or re-compress the file."
    )
