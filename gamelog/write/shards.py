"""Parquet shard writers for episodes and rejects.

Rows arrive in batches of plain dicts; each batch becomes one Arrow record batch (a row group)
of the schema derived from the records models, written to a temporary file by a thread of the
writer's own: Parquet encoding and compression release the GIL, so the caller builds the next
batch meanwhile (at most QUEUED tables wait; a failed write is raised at the next call). A shard is renamed
to its final name (`episodes-00000.parquet`, ...) only when the whole run succeeds, and shards of
an earlier run that the new one does not produce are removed, so a directory never mixes runs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import chain
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from gamelog.errors import GamelogError
from gamelog.records import Episode, Reject, arrow_schema, json_fields
from gamelog.write.arrays import lists, scalars
from gamelog.write.atomic import publish, remove_stale_temporaries, temporary

EPISODE_SCHEMA = arrow_schema(Episode)
REJECT_SCHEMA = arrow_schema(Reject)
EPISODE_JSON_FIELDS = json_fields(Episode)
COMPRESSION = "zstd"
STAT_COLUMNS = {"episode_id", "regime", "game", "task", "group_id", "reason"}
QUEUED = 2  # tables waiting for the writer's thread: bounds the memory they hold


def episode_table(rows: list[dict]) -> pa.Table:
    """Episode dicts -> an Arrow table, built column by column (far leaner than from_pylist on nested rows)."""
    for row in rows:
        for key in EPISODE_JSON_FIELDS:
            if not isinstance(row[key], str):
                row[key] = orjson.dumps(row[key], option=orjson.OPT_SORT_KEYS).decode()
    columns = []
    for field in EPISODE_SCHEMA:
        if field.name == "turns":
            columns.append(_turns_array(rows, field.type))
        else:
            columns.append(scalars([row[field.name] for row in rows], field.type))
    return pa.Table.from_arrays(columns, schema=EPISODE_SCHEMA)


def _turns_array(rows: list[dict], list_type: pa.ListType) -> pa.Array:
    per_row = [row["turns"] for row in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, per_row), dtype=np.int64, count=len(rows)), out=offsets[1:])
    struct_type = list_type.value_type
    fields = list(struct_type)
    # every move's fields in one pass (itemgetter), then one column per field (zip transposes)
    columns = zip(*map(itemgetter(*[f.name for f in fields]), chain.from_iterable(per_row))) if offsets[-1] else [[] for _ in fields]
    children = [scalars(list(column), f.type) for column, f in zip(columns, fields)]
    values = pa.StructArray.from_arrays(children, fields=fields)
    return lists(values, offsets, list_type)


class ShardWriter:
    """Writes tables of one schema into `PREFIX-00000.parquet` shards of at most `shard_rows` rows."""

    def __init__(self, out: Path, prefix: str, schema: pa.Schema, *, shard_rows: int, single: bool = False):
        if shard_rows < 1 and not single:
            raise GamelogError(f"shard_rows is {shard_rows}; use at least 1 row per shard.")
        self.out, self.prefix, self.schema = out, prefix, schema
        self.shard_rows, self.single = shard_rows, single
        self.pending: list[tuple[Path, Path]] = []
        self.writer: pq.ParquetWriter | None = None
        self.rows_in_shard = 0
        self.rows = 0
        self.names: list[str] = []  # final names, once published
        self.thread: ThreadPoolExecutor | None = None
        self.queued: deque[Future] = deque()

    def _name(self, index: int) -> str:
        return f"{self.prefix}.parquet" if self.single else f"{self.prefix}-{index:05d}.parquet"

    def _open(self) -> None:
        final = self.out / self._name(len(self.pending))
        tmp = temporary(final)
        self.pending.append((tmp, final))
        # Statistics only on short scalar columns: min/max of long text kept per row group would
        # grow the footer (held in memory until close) with every batch.
        stats = [f.name for f in self.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or f.name in STAT_COLUMNS]
        self.writer = pq.ParquetWriter(tmp, self.schema, compression=COMPRESSION, write_statistics=stats, use_dictionary=stats)
        self.rows_in_shard = 0

    def write(self, table: pa.Table) -> None:
        """Queue a table for the writer's thread; raises the error of an earlier write that failed."""
        self._settle(QUEUED - 1)
        if self.thread is None:
            self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{self.prefix}")
        self.queued.append(self.thread.submit(self._write_or_explain, table))

    def _settle(self, keep: int) -> None:
        """Wait until at most `keep` tables are queued."""
        while len(self.queued) > keep:
            self.queued.popleft().result()

    def _write_or_explain(self, table: pa.Table) -> None:
        try:
            self._write(table)
        except OSError as exc:
            raise self._cannot_write(exc) from None

    def _write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self.writer is None or (self.rows_in_shard >= self.shard_rows and not self.single):
                self._close_current()
                self._open()
            room = table.num_rows if self.single else self.shard_rows - self.rows_in_shard
            part, table = table.slice(0, room), table.slice(room)
            self.writer.write_table(part)
            self.rows_in_shard += part.num_rows
            self.rows += part.num_rows

    def _cannot_write(self, exc: OSError) -> GamelogError:
        return GamelogError(f"{self.out}: cannot write the output ({exc.strerror or exc}); free some space or choose another --out. Nothing was published under a final name.")

    def _stop_thread(self) -> None:
        if self.thread is not None:
            self.thread.shutdown(wait=True)
            self.thread = None

    def _close_current(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def finish(self) -> list[str]:
        """Publish every shard under its final name; returns the names."""
        self._settle(0)
        self._stop_thread()
        try:
            self._close_current()
        except OSError as exc:
            raise self._cannot_write(exc) from None
        for tmp, final in self.pending:
            publish(tmp, final)
        names = [final.name for _, final in self.pending]
        for stale in self.out.glob(f"{self.prefix}*.parquet"):
            if stale.name not in names:
                stale.unlink()
        return names

    def abort(self) -> None:
        for queued in self.queued:
            queued.exception()  # wait for it; the run failed already
        self.queued.clear()
        self._stop_thread()
        try:
            self._close_current()
        except OSError:  # a full disk: the temporaries go all the same
            self.writer = None
        for tmp, _ in self.pending:
            tmp.unlink(missing_ok=True)


@contextmanager
def publishing(out: Path, *writers: ShardWriter) -> Iterator[None]:
    """Run a block that writes shards: publish them all when it succeeds, leave no trace when it fails.

    Temporaries of an earlier, killed run in `out` are removed first.
    """
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    try:
        yield
        for writer in writers:
            writer.names = writer.finish()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise


def reject_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_arrays([scalars([row[f.name] for row in rows], f.type) for f in REJECT_SCHEMA], schema=REJECT_SCHEMA)
