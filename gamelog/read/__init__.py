"""Streaming readers: every supported container becomes batches of located records (`Item`s).

    sources = expand_inputs(["data/", "extra.jsonl.gz", "hf://org/name:train"])
    for batch in read_items(sources[0], split="line"): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gamelog.errors import GamelogError
from gamelog.read.items import Item, raw_text
from gamelog.read.json import DEFAULT_MAX_RECORD_BYTES, read_json, read_jsonl
from gamelog.read.streams import inner_suffix
from gamelog.read.tables import is_saved_dataset, read_csv, read_hub, read_parquet, read_saved_dataset
from gamelog.read.text import SPLITS, read_text

__all__ = ["Item", "raw_text", "expand_inputs", "read_items", "SPLITS", "DEFAULT_MAX_RECORD_BYTES"]

READERS = {
    ".json": read_json,
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".parquet": read_parquet,
    ".csv": read_csv,
    ".tsv": read_csv,
    ".txt": read_text,
    ".text": read_text,
}
# Files gamelog writes itself; a directory of earlier output is not read back as input.
OWN_OUTPUTS = ("report.json", "rejects.parquet", "manifest.json")


def expand_inputs(inputs: list[str]) -> list[str]:
    """Files, directories (walked, sorted), saved datasets and hf:// ids, in a stable order."""
    sources: list[str] = []
    for given in inputs:
        if given.startswith("hf://"):
            sources.append(given)
            continue
        path = Path(given)
        if not path.exists():
            raise GamelogError(f"{given}: no such file or directory; check the path.")
        if path.is_file() or is_saved_dataset(path):
            sources.append(given)
            continue
        found = sorted(str(p) for p in path.rglob("*") if _readable(p))
        if not found:
            raise GamelogError(f"{given}: the directory holds no file gamelog reads ({', '.join(READERS)}, optionally .gz/.zst).")
        sources.extend(found)
    return sources


def _readable(path: Path) -> bool:
    if any(part.startswith(".") for part in path.parts[-1:]):
        return False
    if path.name in OWN_OUTPUTS or path.name.startswith("episodes-"):
        return False
    return path.is_file() and inner_suffix(path) in READERS and not any(is_saved_dataset(p) for p in path.parents[:3])


def read_items(source: str, *, split: str = "blank-line", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Iterator[list[Item]]:
    if source.startswith("hf://"):
        return read_hub(source)
    path = Path(source)
    if is_saved_dataset(path):
        return read_saved_dataset(path)
    reader = READERS.get(inner_suffix(path))
    if reader is None:
        raise GamelogError(f"{source}: gamelog does not read '{path.suffix}' files; supported: {', '.join(READERS)} (optionally .gz/.zst).")
    if reader is read_text:
        return read_text(path, split=split, max_record_bytes=max_record_bytes)
    return reader(path, max_record_bytes=max_record_bytes)
