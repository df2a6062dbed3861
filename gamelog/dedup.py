"""Exact de-duplication's memory: the digest of every record kept, and where it was first seen.

A record's digest (16 bytes, `gamelog.convert._digest`) is remembered until the run ends, so this
is the one part of convert that grows with the input. A dict of digest -> (source, location)
costs about 220 bytes a record (the bytes object, the tuple, the location string, the dict slot):
2.2 GB for ten million records. Here the digests are kept as two 64-bit halves in sorted numpy
runs, with the record's number; locations as Arrow strings, sources as indexes: about 40 bytes a
record. New digests go to a dict first (about RECENT of them), which then becomes a sorted run;
runs of the same size are merged, as a binary counter carries, so there are about log2(n / RECENT)
of them. A batch's digests are looked up in the runs at once (one `searchsorted` a run).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from gamelog.write.arrays import strings

RECENT = 1 << 14  # digests in the dict before they become a sorted run (its 3-4 MB are the most it holds)
HALVES = np.dtype([("hi", "<u8"), ("lo", "<u8")])  # a 16-byte digest as two integers; runs are sorted by hi


class _Run:
    """Digests sorted by their first half (those sharing it side by side), each with the number of
    the record first seen with it."""

    __slots__ = ("hi", "lo", "first")

    def __init__(self, hi: np.ndarray, lo: np.ndarray, first: np.ndarray):
        order = np.argsort(hi, kind="stable")  # two sorted runs one after the other: a merge, in linear time (lexsort on both halves: 23x longer)
        self.hi, self.lo, self.first = hi[order], lo[order], first[order]

    def __len__(self) -> int:
        return len(self.hi)

    def find(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """For each digest, the number of its first record, or -1 where this run does not hold it."""
        found = np.full(len(hi), -1, dtype=np.int64)
        if not len(self.hi):
            return found
        at = np.searchsorted(self.hi, hi)  # the first entry with this first half, if any: entries sharing it follow
        near = np.minimum(at, len(self.hi) - 1)
        same = (at < len(self.hi)) & (self.hi[near] == hi)
        exact = same & (self.lo[near] == lo)
        found[exact] = self.first[near[exact]]
        for k in np.flatnonzero(same & ~exact).tolist():  # another digest with the same first half (rare): look along them
            j = int(at[k]) + 1
            while j < len(self.hi) and self.hi[j] == hi[k]:
                if self.lo[j] == lo[k]:
                    found[k] = self.first[j]
                    break
                j += 1
        return found

    @staticmethod
    def merged(a: _Run, b: _Run) -> _Run:
        return _Run(np.concatenate([a.hi, b.hi]), np.concatenate([a.lo, b.lo]), np.concatenate([a.first, b.first]))


class FirstSeen:
    """Where each distinct digest was first seen, in input order; `settle` tells a batch's repeats."""

    def __init__(self):
        self.sources: list[str] = []
        self.recent: dict[bytes, int] = {}  # digest -> its first record's number
        self.runs: list[_Run] = []
        self.count = 0  # distinct digests so far: the next first record's number
        self.where_recent: list[tuple[int, str]] = []  # (source index, location) of the records numbered from `flushed` on
        self.flushed = 0
        self.chunk_starts: list[int] = []  # the first record number of each chunk of stored locations
        self.chunk_sources: list[np.ndarray] = []
        self.chunk_locations: list[pa.Array] = []

    def __len__(self) -> int:
        return self.count

    def settle(self, source: str, records: list[tuple[bytes | None, str]]) -> list[tuple[str, str] | None]:
        """For each (digest, location) of a batch, in order: None where its digest is new (or it has
        none), else where the digest was first seen (a repeat within the batch counts too). The same
        location seen again (the same file twice) is not a repeat of itself."""
        if not self.sources or self.sources[-1] != source:
            self.sources.append(source)
        index = len(self.sources) - 1
        keyed = [k for k, (digest, _) in enumerate(records) if digest is not None]
        earlier = self._find([records[k][0] for k in keyed])
        result: list[tuple[str, str] | None] = [None] * len(records)
        for k, found in zip(keyed, earlier):
            digest, location = records[k]
            if found < 0:
                found = self.recent.setdefault(digest, self.count)
            if found == self.count:
                self.count += 1
                self.where_recent.append((index, location))
                continue
            first = self.where(found)
            if first != (source, location):
                result[k] = first
        if len(self.recent) >= RECENT:
            self._flush()
        return result

    def where(self, number: int) -> tuple[str, str]:
        """(source, location) of the record first seen with digest number `number`."""
        if number >= self.flushed:
            index, location = self.where_recent[number - self.flushed]
            return self.sources[index], location
        chunk = bisect_right(self.chunk_starts, number) - 1
        at = number - self.chunk_starts[chunk]
        return self.sources[int(self.chunk_sources[chunk][at])], self.chunk_locations[chunk][at].as_py()

    def items(self) -> Iterator[tuple[bytes, tuple[str, str]]]:
        """Every distinct digest with where it was first seen."""
        for run in self.runs:
            halves = np.empty(len(run), dtype=HALVES)
            halves["hi"], halves["lo"] = run.hi, run.lo
            raw = halves.tobytes()
            for k, number in enumerate(run.first.tolist()):
                yield raw[16 * k : 16 * k + 16], self.where(number)
        for digest, number in self.recent.items():
            yield digest, self.where(number)

    def _find(self, digests: list[bytes]) -> list[int]:
        """For each digest, the number of its first record in the sorted runs, or -1."""
        if not self.runs or not digests:
            return [-1] * len(digests)
        halves = np.frombuffer(b"".join(digests), dtype=HALVES)
        found = np.full(len(digests), -1, dtype=np.int64)
        for run in self.runs:
            hit = run.find(halves["hi"], halves["lo"])
            found = np.where(found < 0, hit, found)
        return found.tolist()

    def _flush(self) -> None:
        """The dict becomes a sorted run (merged with runs no larger), its locations stored compactly."""
        halves = np.frombuffer(b"".join(self.recent), dtype=HALVES)
        run = _Run(halves["hi"].copy(), halves["lo"].copy(), np.fromiter(self.recent.values(), dtype=np.int64, count=len(self.recent)))
        while self.runs and len(self.runs[-1]) <= len(run):
            run = _Run.merged(self.runs.pop(), run)
        self.runs.append(run)
        self.recent = {}
        if self.where_recent:
            self.chunk_starts.append(self.flushed)
            self.chunk_sources.append(np.fromiter((i for i, _ in self.where_recent), dtype=np.int32, count=len(self.where_recent)))
            self.chunk_locations.append(strings([location for _, location in self.where_recent]))
            self.flushed += len(self.where_recent)
            self.where_recent = []
