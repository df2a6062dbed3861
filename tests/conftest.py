"""Shared fixtures: the real data in ../shared/data and a helper that converts and reads back."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from gamelog.convert import ConvertOptions, convert

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "samples"


def shared(relative: str) -> str:
    path = SHARED / relative
    if not path.exists():
        pytest.fail(f"missing real data {path}: the tests need ../shared/data beside the project")
    return str(path)


def arrow_held_while(batches) -> int:
    """The most bytes Arrow's allocator held beyond what it held before, while the batches were read."""
    import pyarrow as pa

    pool = pa.default_memory_pool()
    before, most = pool.bytes_allocated(), 0
    for _ in batches:
        most = max(most, pool.bytes_allocated() - before)
    return most


class Converted:
    """A finished convert run: report, episodes (meta parsed) and rejects as Python rows."""

    def __init__(self, out: Path, report):
        self.out, self.report = out, report
        files = sorted(out.glob("episodes-*.parquet"))
        self.episodes = [row | {"meta": orjson.loads(row["meta"])} for f in files for row in pq.read_table(f).to_pylist()]
        rejects = out / "rejects.parquet"
        self.rejects = pq.read_table(rejects).to_pylist() if rejects.exists() else []

    def by_reason(self, reason: str) -> list[dict]:
        return [r for r in self.rejects if r["reason"] == reason]


@pytest.fixture
def run(tmp_path):
    counter = iter(range(1000))

    def _run(*inputs: str, **options) -> Converted:
        out = tmp_path / f"out{next(counter)}"
        report = convert([str(i) for i in inputs], out=out, options=ConvertOptions(**options))
        return Converted(out, report)

    return _run


def pytest_configure(config):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))  # `hostile.cases` imports from tests/
