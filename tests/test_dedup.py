"""Exact de-duplication's memory (`gamelog.dedup.FirstSeen`): the same answers as a dict of every
digest, in a few tens of bytes a record."""

from __future__ import annotations

import hashlib
import random
import shutil

import pytest

from gamelog import dedup
from gamelog.dedup import FirstSeen

from conftest import shared


def _digest(n: int) -> bytes:
    return hashlib.blake2b(str(n).encode(), digest_size=16).digest()


def _reference(seen: dict, source: str, records: list) -> list:
    """What convert did with a dict: setdefault, and a repeat unless it is the same place."""
    out = []
    for digest, location in records:
        first = seen.setdefault(digest, (source, location)) if digest is not None else None
        out.append(first if first is not None and first != (source, location) else None)
    return out


@pytest.mark.parametrize("recent", [1, 7, 64])
def test_first_seen_answers_as_a_dict_of_every_digest_through_runs_and_merges(monkeypatch, recent):
    monkeypatch.setattr(dedup, "RECENT", recent)
    rng = random.Random(recent)
    seen, reference = FirstSeen(), {}
    for batch in range(60):
        source = f"file{batch // 20}.jsonl"
        records = []
        for k in range(rng.randint(0, 40)):
            kind = rng.random()
            digest = None if kind < 0.05 else _digest(rng.randint(0, 300))  # many repeats, within and across batches and files
            records.append((digest, f"line {batch * 100 + k}"))
        if batch == 30:  # the same place again (a file given twice): not a repeat of itself
            records += [(d, loc) for d, loc in records[:3]]
        assert seen.settle(source, records) == _reference(reference, source, records)
    assert len(seen.runs) > 1 or recent == 64
    assert len(seen) == len(reference)
    assert dict(seen.items()) == reference


def test_digests_that_share_their_first_half_are_told_apart(monkeypatch):
    monkeypatch.setattr(dedup, "RECENT", 2)
    same_start = [bytes(8) + bytes([k]) * 8 for k in range(6)]
    seen = FirstSeen()
    assert seen.settle("a", [(d, f"line {k}") for k, d in enumerate(same_start)]) == [None] * 6
    assert seen.runs  # in sorted runs now, not the dict
    assert seen.settle("b", [(same_start[4], "line 1"), (bytes(8) + b"\x07" * 8, "line 2")]) == [("a", "line 4"), None]


def test_first_seen_holds_a_few_tens_of_bytes_a_record():
    """A dict of digest -> (source, location) held about 220 bytes a record; the runs hold the
    two halves and the record's number, the locations as Arrow strings and an index a source."""
    seen = FirstSeen()
    records = 200_000
    for start in range(0, records, 1000):
        seen.settle("big.jsonl", [(_digest(n), f"line {n + 1}") for n in range(start, start + 1000)])
    stored = sum(r.hi.nbytes + r.lo.nbytes + r.first.nbytes for r in seen.runs)
    stored += sum(a.nbytes for a in seen.chunk_sources) + sum(a.nbytes for a in seen.chunk_locations)
    assert seen.flushed + len(seen.recent) == records
    assert stored / seen.flushed < 45
    assert len(seen.recent) <= dedup.RECENT + 1000
    assert seen.where(12_345) == ("big.jsonl", "line 12346")


def test_convert_drops_a_file_given_again_under_another_name_as_duplicates_of_the_first(tmp_path, monkeypatch):
    """Through convert, with runs forming: every record of the copy is a duplicate rejected with
    the first file's location; the counts add up."""
    import json

    from gamelog.convert import convert

    monkeypatch.setattr(dedup, "RECENT", 50)
    source = shared("chat/gsm8k_chat_train.jsonl")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(source, folder / "a.jsonl")
    shutil.copy(source, folder / "b.jsonl")
    report = convert([str(folder)], out=tmp_path / "out")
    import pyarrow.parquet as pq

    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    lines = sum(1 for line in open(source, encoding="utf-8") if line.strip())
    duplicates = [r for r in rejects if r["reason"] == "duplicate"]
    assert len(duplicates) >= lines - 5 and all(r["source"].endswith("b.jsonl") for r in duplicates)
    assert all(f"a.jsonl {r['location']};" in r["detail"] for r in duplicates)  # the same line of the first file
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["records_read"] == 2 * lines == data["records_converted"] + sum(data["rejected_by_reason"].values())
    assert report.records_converted <= lines
