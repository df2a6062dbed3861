"""`gamelog convert`: input files -> episodes Parquet shards, rejects and report.json.

    report = convert(["data/chat.json"], out=Path("out/chat"))
    assert report.records_read == report.records_converted + report.records_rejected

The flow per input: read located records in batches -> detect the format from the first batch
-> convert each record (or reject it with a reason and its location) and build the batch's
episodes table -> drop exact duplicates -> write. Memory holds a few batches at a time, plus one
16-byte digest per record for de-duplication.

Batches are converted by a crew of processes (`gamelog.crew`, `--workers`, one per core by
default): this process reads, and converts a batch whenever the oldest one out is not back; the
results come back in input order and duplicates are found here, in that order, so the output is
the same bytes for any number of workers. Inputs of a few batches are converted in process.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import orjson
import pyarrow as pa

from gamelog import __version__
from gamelog.crew import Crew
from gamelog.dedup import FirstSeen
from gamelog.errors import GamelogError, RecordError
from gamelog.formats import ALIASES, FORMATS, Format
from gamelog.formats.common import ABSTAIN_TEXT, ROLE_ALIASES, Context
from gamelog.formats.detect import SAMPLE, describe_keys, detect_format
from gamelog.formats.recipe import Recipe
from gamelog.memory import release_freed_memory
from gamelog.read import DEFAULT_MAX_RECORD_BYTES, Item, expand_inputs, raw_text, read_items
from gamelog.read.items import BATCH_BYTES
from gamelog.read.json import LineBatch
from gamelog.records import ConvertReport, build_now
from gamelog.roles import RoleOptions
from gamelog.roles.transcript import TRANSCRIPT
from gamelog.write.atomic import shard_entries, write_text
from gamelog.write.shards import EPISODE_SCHEMA, REJECT_SCHEMA, ShardWriter, episode_table, publishing, reject_table

ALL_FORMATS: dict[str, Format] = FORMATS | {"transcript": TRANSCRIPT}


def resolve(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in ALL_FORMATS:
        raise GamelogError(f"unknown format '{name}'; choose one of: auto, {', '.join(ALL_FORMATS)}.")
    return name


WRITE_BATCH = 1024  # episodes per written batch (one Parquet row group) ...
WRITE_BATCH_BYTES = 1 << 20  # ... or fewer, once their text reaches this size: memory stays flat


@dataclass
class ConvertOptions:
    format: str = "auto"
    recipe: Recipe | None = None
    split: str = "blank-line"
    text_column: str | None = None
    dedup: str = "exact"  # exact | none
    strict: bool = False
    shard_rows: int = 100_000
    unanswerable: str = "keep"  # keep | reject
    abstain_text: str = ABSTAIN_TEXT
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    infer_roles: bool = False  # text documents go through role inference (the transcript format)
    roles: RoleOptions = field(default_factory=RoleOptions)
    workers: int = 0  # processes that convert batches; 0: one per core. The output does not depend on it.

    def settings(self) -> dict:
        settings = {k: v for k, v in self.__dict__.items() if k not in ("recipe", "roles", "workers")}  # the same report for any worker count
        settings["recipe"] = self.recipe.name if self.recipe else None
        settings["roles"] = self.roles.__dict__
        return settings


@dataclass
class Tally:
    read: int = 0
    converted: int = 0
    rejected: Counter = field(default_factory=Counter)
    episodes: int = 0
    turns: int = 0
    regimes: Counter = field(default_factory=Counter)
    formats: dict[str, str] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        """Fold another run's tally (another file's, on the Ray engine) into this one."""
        for name, value in vars(other).items():
            if isinstance(value, (Counter, dict)):
                getattr(self, name).update(value)
            else:
                setattr(self, name, getattr(self, name) + value)


def convert(inputs: list[str], *, out: Path, options: ConvertOptions | None = None, on_progress: Callable[[Tally], None] | None = None) -> ConvertReport:
    options = options or ConvertOptions()
    sources = expand_inputs(inputs)
    episodes = ShardWriter(out, "episodes", EPISODE_SCHEMA, shard_rows=options.shard_rows)
    rejects = ShardWriter(out, "rejects", REJECT_SCHEMA, shard_rows=0, single=True)
    tally, seen = Tally(), FirstSeen()
    with Crew(Converter(options), workers_for(options, sources)) as crew, publishing(out, episodes, rejects):
        for written, (table, bad) in enumerate(convert_sources(sources, options, tally, seen, crew)):
            if written == 0:
                build_now(ConvertReport)  # while the workers convert
            if table is not None:
                episodes.write(table)
            if bad:
                rejects.write(reject_table(bad))
            if on_progress:
                on_progress(tally)
    return write_report(out, sources, options, tally, episodes.names)


def workers_for(options: ConvertOptions, sources: list[str]) -> int:
    """Processes for this run; one where the local inputs hold fewer than MIN_PARALLEL_BYTES."""
    wanted = options.workers or os.cpu_count() or 1
    local = [s for s in sources if os.path.isfile(s)]
    small = len(local) == len(sources) and sum(os.path.getsize(s) for s in local) < MIN_PARALLEL_BYTES
    return 1 if small else wanted


MIN_PARALLEL_BYTES = 4 * BATCH_BYTES  # below this, converting costs less than a worker's start


class Kept(NamedTuple):
    """A converted record: where it is, its digest (exact de-duplication) and what it adds."""

    location: str
    digest: bytes | None
    episodes: int
    turns: int
    regimes: tuple[str, ...]
    size: int  # characters of text


@dataclass
class Converted:
    """One batch of records, converted: its episodes as a table (records in order), and per record
    in order its reject row or what it kept."""

    episodes: pa.Table | None
    outcomes: list[dict | Kept]


@dataclass(frozen=True)
class Converter:
    """The task a crew runs: a batch of read records of one source -> Converted (picklable)."""

    options: ConvertOptions

    def __call__(self, job: tuple[str | None, Context, list[Item]]) -> Converted:
        name, ctx, items = job
        rows: list[dict] = []
        outcomes: list[dict | Kept] = []
        for location, value, error, raw in _records(items, name):
            try:
                if error:
                    raise RecordError(*error)
                found = _convert_record(value, location, name, ctx, self.options)
            except RecordError as exc:
                if self.options.strict:
                    raise GamelogError(f"{ctx.source} {location}: {exc.detail} (--strict stops at the first bad record; drop it to keep going).") from None
                outcomes.append(_reject(exc, ctx.source, location, value, raw))
                continue
            digest = _digest(found) if self.options.dedup == "exact" else None
            turns = sum(len(ep["turns"]) for ep in found)
            size = sum(len(t["content"]) for ep in found for t in ep["turns"])
            outcomes.append(Kept(location, digest, len(found), turns, tuple(ep["regime"] for ep in found), size))
            rows.extend(found)
        return Converted(episode_table(rows) if rows else None, outcomes)

    def weigh(self, job: tuple[str | None, Context, list[Item] | LineBatch]) -> float:
        """A batch's input in full batches (its bytes over BATCH_BYTES), which bounds what a crew
        holds at once: a batch of one big document weighs as much as its bytes. A batch with
        records of unknown size (a table's rows, which its reader cuts at about BATCH_BYTES) weighs one."""
        items = job[2]
        if isinstance(items, LineBatch):
            size = BATCH_BYTES if items.stop is None else items.stop - items.start
        else:
            sizes = [item.size() for item in items]
            size = sum(sizes) if all(sizes) else max(sum(sizes), BATCH_BYTES)
        return size / BATCH_BYTES


def convert_sources(sources: list[str], options: ConvertOptions, tally: Tally, seen: FirstSeen, crew: Crew | None = None) -> Iterator[tuple[pa.Table | None, list[dict]]]:
    """(episodes table, reject rows) to write, in input order; a write holds one source's records only."""
    sent: deque[tuple[str | None, Context, list[Item]]] = deque()
    jobs = _jobs(sources, options, tally, sent)
    results = crew.run(jobs) if crew is not None else map(Converter(options), jobs)
    tables: list[pa.Table] = []
    bad: list[dict] = []
    rows = size = 0
    source = None
    for converted in results:
        name, ctx, items = sent.popleft()
        if ctx.source != source:
            if tables or bad:
                yield _joined(tables), bad
                tables, bad, rows, size = [], [], 0, 0
            if source is not None:
                release_freed_memory()
            source = ctx.source
        table, added = _settle(converted, name, ctx, items, tally, seen, bad)
        if table is not None:
            tables.append(table)
            rows += table.num_rows
        size += added
        if rows >= WRITE_BATCH or len(bad) >= WRITE_BATCH or size >= WRITE_BATCH_BYTES:
            yield _joined(tables), bad
            tables, bad, rows, size = [], [], 0, 0
    if tables or bad:
        yield _joined(tables), bad


def convert_source(source: str, options: ConvertOptions, tally: Tally, seen: FirstSeen) -> Iterator[tuple[pa.Table | None, list[dict]]]:
    """(episodes table, reject rows) of one input, converted in this process."""
    return convert_sources([source], options, tally, seen)


def _jobs(sources: list[str], options: ConvertOptions, tally: Tally, sent: deque) -> Iterator[tuple[str | None, Context, list[Item]]]:
    """Every source's batches of read records with its format and context; each is also noted in `sent`."""
    recipe = options.recipe
    split = recipe.split if recipe and recipe.split else options.split
    for source in sources:
        batches = read_items(source, split=split, max_record_bytes=options.max_record_bytes)
        first = next((items for items in map(list, batches) if items), None)  # the format is told from the first records (a batch of blank lines has none)
        if first is None:
            continue
        name = _choose_format(first, options)
        if name == "text" and options.infer_roles:
            name = "transcript"
        tally.formats[source] = name or "unknown"
        ctx = _context(source, options)
        for items in _chain(first, batches):
            job = (name, ctx, items)
            sent.append(job)
            yield job


def _settle(converted: Converted, name: str | None, ctx: Context, items: list[Item], tally: Tally, seen: FirstSeen, bad: list[dict]) -> tuple[pa.Table | None, int]:
    """Count a converted batch in input order and drop its exact duplicates (a record whose
    episodes repeat an earlier record's, move for move): the episodes kept, and their text size."""
    dropped: list[tuple[int, int]] = []  # episode rows of duplicates
    records: list | None = None  # the batch's records again, for a duplicate's reject row
    kept = [(o.digest, o.location) if isinstance(o, Kept) else (None, "") for o in converted.outcomes]
    firsts = seen.settle(ctx.source, kept) if any(digest is not None for digest, _ in kept) else [None] * len(kept)
    row = size = 0
    for index, (outcome, first) in enumerate(zip(converted.outcomes, firsts)):
        tally.read += 1
        if isinstance(outcome, dict):
            tally.rejected[outcome["reason"]] += 1
            bad.append(outcome)
            continue
        if first is not None:
            records = records or list(_records(items, name))
            _, value, _, raw = records[index]
            exc = RecordError("duplicate", f"same episodes as {first[0]} {first[1]}; kept once (--dedup none keeps both).")
            tally.rejected[exc.reason] += 1
            bad.append(_reject(exc, ctx.source, outcome.location, value, raw))
            dropped.append((row, row + outcome.episodes))
        else:
            tally.converted += 1
            tally.episodes += outcome.episodes
            tally.turns += outcome.turns
            tally.regimes.update(outcome.regimes)
            size += outcome.size
        row += outcome.episodes
    return _without(converted.episodes, dropped), size


def _without(table: pa.Table | None, dropped: list[tuple[int, int]]) -> pa.Table | None:
    """The table less the rows in `dropped` (sorted, disjoint [start, stop) ranges)."""
    if table is None or not dropped:
        return table
    kept, at = [], 0
    for start, stop in dropped:
        if start > at:
            kept.append(table.slice(at, start - at))
        at = stop
    if at < table.num_rows:
        kept.append(table.slice(at))
    return pa.concat_tables(kept) if kept else None


def _joined(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables) if tables else None


def _chain(first: list[Item], rest: Iterable[list[Item]]) -> Iterator[list[Item]]:
    yield first
    yield from rest


def _records(batch: list[Item], name: str | None) -> Iterator[tuple[str, object, tuple | None, object]]:
    explode = ALL_FORMATS[name].explode if name else None
    for item in batch:
        if explode is None or item.error:
            yield item.location, item.value, item.error, item.raw
            continue
        for location, value in explode(item.value, item.location):
            yield location, value, None, None


def _choose_format(first: list[Item], options: ConvertOptions) -> str | None:
    recipe = options.recipe
    wanted = recipe.format if recipe and recipe.format != "auto" else options.format
    if wanted != "auto":
        return resolve(wanted)
    sample = [_prepare(item.value, options) for item in first[:SAMPLE * 4] if item.error is None][:SAMPLE]
    return detect_format(sample)


def _context(source: str, options: ConvertOptions) -> Context:
    recipe = options.recipe
    roles = {**ROLE_ALIASES, **{k.strip().lower(): v for k, v in recipe.roles.items()}} if recipe else ROLE_ALIASES
    return Context(
        source=source,
        location="",
        roles=roles,
        task=recipe.task if recipe else None,
        game=recipe.game if recipe else "cooperative",
        unanswerable=(recipe.unanswerable if recipe and recipe.unanswerable else options.unanswerable),
        abstain_text=options.abstain_text,
        options=options.roles,
    )


def _prepare(value, options: ConvertOptions):
    """Apply the recipe's column mapping and --text-column before detection and conversion."""
    if options.recipe:
        value = options.recipe.rename(value)
    if options.text_column and isinstance(value, dict) and options.text_column in value:
        value = {**value, "text": value[options.text_column]}
    return value


def _convert_record(value, location: str, name: str | None, ctx: Context, options: ConvertOptions) -> list[dict]:
    if not isinstance(value, dict):
        raise RecordError("not_an_object", f"the record should be a JSON object, found {type(value).__name__}.")
    value = _prepare(value, options)
    if name is None:
        raise RecordError("unknown_format", f"no known format matches keys [{describe_keys([value])}]; pass --format NAME or --recipe pipelines/NAME.toml.")
    ctx.location = location
    return ALL_FORMATS[name].convert(value, ctx)


def _digest(found: list[dict]) -> bytes:
    """What exact de-duplication compares: a record's episodes, move for move."""
    key = orjson.dumps([[ep["regime"], ep["rank"], ep["outcome"], ep["turns"]] for ep in found])
    return hashlib.blake2b(key, digest_size=16).digest()


def _reject(exc: RecordError, source: str, location: str, value, raw) -> dict:
    if raw is None and value is not None:
        raw = orjson.dumps(value, default=str)
    detail = exc.detail if exc.detail.startswith(location) else f"{location}: {exc.detail}"
    return {"reason": exc.reason, "detail": detail, "source": source, "location": location, "raw": raw_text(raw)}


def write_report(out: Path, sources: list[str], options: ConvertOptions, tally: Tally, names: list[str]) -> ConvertReport:
    """report.json for a finished run (either engine), written last."""
    report = _report(sources, options, tally, shard_entries(out, names))
    write_text(out / "report.json", report.model_dump_json(indent=2))
    return report


def _report(sources: list[str], options: ConvertOptions, tally: Tally, shards: list[dict]) -> ConvertReport:
    rejected = dict(sorted(tally.rejected.items()))
    return ConvertReport(
        gamelog_version=__version__,
        inputs=sources,
        formats=tally.formats,
        settings=options.settings(),
        records_read=tally.read,
        records_converted=tally.converted,
        records_rejected=sum(rejected.values()),
        rejected_by_reason=rejected,
        duplicates_removed=rejected.get("duplicate", 0),
        episodes_written=tally.episodes,
        turns_written=tally.turns,
        episodes_by_regime=dict(sorted(tally.regimes.items())),
        shards=shards,
    )
