"""`gamelog convert`: input files -> episodes Parquet shards, rejects and report.json.

    report = convert(["data/chat.json"], out=Path("out/chat"))
    assert report.records_read == report.records_converted + report.records_rejected

The flow per input: read located records in batches -> detect the format from the first batch
-> convert each record (or reject it with a reason and its location) -> drop exact duplicates
-> write. Memory holds one batch at a time, plus one 16-byte digest per record for de-duplication.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gamelog import __version__
from gamelog.errors import GamelogError, RecordError
from gamelog.formats import ALIASES, FORMATS, Format
from gamelog.formats.common import ABSTAIN_TEXT, ROLE_ALIASES, Context
from gamelog.formats.detect import SAMPLE, describe_keys, detect_format
from gamelog.formats.recipe import Recipe
from gamelog.memory import release_freed_memory
from gamelog.read import DEFAULT_MAX_RECORD_BYTES, Item, expand_inputs, raw_text, read_items
from gamelog.records import ConvertReport
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

    def settings(self) -> dict:
        settings = {k: v for k, v in self.__dict__.items() if k not in ("recipe", "roles")}
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
    tally, seen = Tally(), {}
    with publishing(out, episodes, rejects):
        for source in sources:
            for rows, bad in convert_source(source, options, tally, seen):
                if rows:
                    episodes.write(episode_table(rows))
                if bad:
                    rejects.write(reject_table(bad))
                if on_progress:
                    on_progress(tally)
            release_freed_memory()
    return write_report(out, sources, options, tally, episodes.names)


def convert_source(source: str, options: ConvertOptions, tally: Tally, seen: dict) -> Iterator[tuple[list[dict], list[dict]]]:
    """Batches of (episode rows, reject rows) for one input."""
    recipe = options.recipe
    split = recipe.split if recipe and recipe.split else options.split
    batches = read_items(source, split=split, max_record_bytes=options.max_record_bytes)
    first = next(batches, None)
    if first is None:
        return
    name = _choose_format(first, options)
    if name == "text" and options.infer_roles:
        name = "transcript"
    tally.formats[source] = name or "unknown"
    ctx = _context(source, options)
    rows: list[dict] = []
    bad: list[dict] = []
    size = 0
    for batch in _chain(first, batches):
        for location, value, error, raw in _records(batch, name):
            tally.read += 1
            try:
                if error:
                    raise RecordError(*error)
                found = _convert_record(value, location, name, ctx, options, seen)
            except RecordError as exc:
                if options.strict:
                    raise GamelogError(f"{source} {location}: {exc.detail} (--strict stops at the first bad record; drop it to keep going).") from None
                tally.rejected[exc.reason] += 1
                bad.append(_reject(exc, source, location, value, raw))
                continue
            tally.converted += 1
            for ep in found:
                tally.episodes += 1
                tally.turns += len(ep["turns"])
                tally.regimes[ep["regime"]] += 1
                size += sum(len(t["content"]) for t in ep["turns"])
            rows.extend(found)
            if len(rows) >= WRITE_BATCH or len(bad) >= WRITE_BATCH or size >= WRITE_BATCH_BYTES:
                yield rows, bad
                rows, bad, size = [], [], 0
    yield rows, bad


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


def _convert_record(value, location: str, name: str | None, ctx: Context, options: ConvertOptions, seen: dict) -> list[dict]:
    if not isinstance(value, dict):
        raise RecordError("not_an_object", f"the record should be a JSON object, found {type(value).__name__}.")
    value = _prepare(value, options)
    if name is None:
        raise RecordError("unknown_format", f"no known format matches keys [{describe_keys([value])}]; pass --format NAME or --recipe pipelines/NAME.toml.")
    ctx.location = location
    found = ALL_FORMATS[name].convert(value, ctx)
    if options.dedup == "exact":
        _check_duplicate(found, ctx, seen)
    return found


def _check_duplicate(found: list[dict], ctx: Context, seen: dict) -> None:
    """Exact de-duplication: a record whose episodes repeat an earlier record's, move for move."""
    key = orjson.dumps([[ep["regime"], ep["rank"], ep["outcome"], ep["turns"]] for ep in found])
    digest = hashlib.blake2b(key, digest_size=16).digest()
    first = seen.setdefault(digest, (ctx.source, ctx.location))
    if first != (ctx.source, ctx.location):
        raise RecordError("duplicate", f"same episodes as {first[0]} {first[1]}; kept once (--dedup none keeps both).")


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
