"""`gamelog pack`: episodes -> tokenized, loss-masked, packed Parquet training shards + manifest.json.

    manifest = pack("out/glaive", out=Path("shards"), options=PackOptions(tokenizer="tok/", seq_len=4096))

Episodes stream in batches of 512 (fewer where they are long: BATCH_TEXT; the last few in parts:
`finer_at_end`) to `workers` processes (the main process and the workers it starts, `gamelog.crew`
with `CREW`'s bounds, each running `gamelog.pack.workers`),
which render, encode, mask, verify and fit them to seq_len by the overflow policy; the main
process gathers their segments in input order into windows of `window` episodes (fewer where they
are long: `Window`), packs each window best-fit decreasing into rows and writes them as they are
made. Memory is bounded by the window and the batches, and the output is byte-identical whatever
the number of workers. Objectives:
- `auto` (default): each episode by its regime: pretrain text trains every token (raw template);
  sft, preference and feedback episodes go through the chat template and train player 2's
  optimal moves; sub-optimal branches (rejected answers, bad KTO answers) are counted as skipped,
  or kept with their negative reward by `--keep-suboptimal`;
- `sft`: like auto, but pre-training text too goes through the chat template;
- `pretrain`: every token of every episode is trained;
- `preference`: one row per (chosen, rejected) pair; see `gamelog.pack.pairs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import chain, islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gamelog import __version__
from gamelog.crew import Crew
from gamelog.errors import GamelogError
from gamelog.memory import release_freed_memory
from gamelog.pack.bins import best_fit_decreasing
from gamelog.pack.block import Block, Blocks
from gamelog.pack.segments import ENCODE_BATCH, OVERFLOW, PackCounts
from gamelog.pack.tokenizer import LoadedTokenizer, load_tokenizer
from gamelog.pack.tokens import LossPolicy
from gamelog.pack.workers import Stage, prime
from gamelog.render import TEMPLATES, render
from gamelog.render.jinja import compile_template, render_jinja

if TYPE_CHECKING:
    import pyarrow as pa

    from gamelog.records import PackManifest

# Worker processes import this package too (gamelog.pack.workers lives in it): what only the main
# process needs (the records models, writers, Parquet) is imported where it is used, which keeps
# pydantic and the writers out of every worker's start-up.

OBJECTIVES = ("auto", "sft", "pretrain", "preference")


@dataclass
class PackOptions:
    tokenizer: str = "builtin"
    seq_len: int = 4096
    objective: str = "auto"
    template: str = "auto"
    overflow: str = "split"
    returns: float | None = None
    train_thoughts: bool = True
    train_tool_calls: bool = True
    keep_suboptimal: bool = False
    window: int = 20_000  # episodes packed together (rounded up to whole batches), or fewer where they are long (Window); bounds memory
    shard_rows: int = 50_000
    workers: int = 0  # processes that render and encode; 0: one per core. The output does not depend on it.


def choose_template(tok: LoadedTokenizer, name: str) -> str:
    if name == "auto":
        if tok.chat_template:
            return "jinja"
        return "chatml" if "<|im_start|>" in tok.special_tokens() else "plain"
    if name == "jinja" and not tok.chat_template:
        raise GamelogError(f"--template jinja: tokenizer {tok.name} has no chat_template; choose a built-in: {', '.join(TEMPLATES)}.")
    if name != "jinja" and name not in TEMPLATES:
        raise GamelogError(f"unknown template '{name}'; choose auto, jinja or one of: {', '.join(TEMPLATES)}.")
    return name


def make_renderer(tok: LoadedTokenizer, template: str, objective: str):
    specials = frozenset(tok.special_tokens())
    source, bos, eos = tok.chat_template, tok.bos, tok.eos
    if template == "jinja":
        compile_template(source)  # once here: forked workers inherit it, and a template that does not parse stops the run at once

    def chat(turns):
        if template == "jinja":
            return render_jinja(turns, source, bos=bos, eos=eos, specials=specials)
        return render(turns, TEMPLATES[template], bos=bos, eos=eos)

    def render_episode(episode: dict):
        if episode["regime"] == "pretrain" and objective != "sft":
            return render(episode["turns"], TEMPLATES["raw"], bos=bos, eos=eos)
        return chat(episode["turns"])

    return render_episode


# Bytes of move text a batch holds at most (or its one episode): while a batch runs, its encodings
# take about 220 bytes a token, so 512 long documents in one batch (30 of 1 MB each: 1,702 MiB)
# would bound nothing. Chat and instruction batches hold far less (about 400 KB) and are not cut.
BATCH_TEXT = 1 << 20


def episode_batches(path: Path):
    """Arrow record batches of at most ENCODE_BATCH episodes and BATCH_TEXT bytes of text (or one
    episode), streamed from the episodes Parquet files."""
    from gamelog.write.atomic import episode_files

    for file in episode_files(path):
        for batch in _episode_batches(file):
            yield from cut_by_text(batch)


def cut_by_text(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """The batch in parts of at most BATCH_TEXT bytes of text, each at least one episode."""
    sizes = text_bytes(batch)
    if int(sizes.sum()) <= BATCH_TEXT:
        yield batch
        return
    start = held = 0
    for k, size in enumerate(sizes.tolist()):
        if k > start and held + size > BATCH_TEXT:
            yield batch.slice(start, k - start)
            start, held = k, 0
        held += size
    yield batch.slice(start)


def text_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """Bytes of move text of each episode, from the turns column's offsets (read from the buffers:
    flattening lists loads pyarrow.compute)."""
    turns = batch.column("turns")
    bounds = np.frombuffer(turns.buffers()[1], np.int32, len(turns) + 1, 4 * turns.offset)
    content = turns.values.field("content")
    ends = np.frombuffer(content.buffers()[1], np.int32, len(content) + 1, 4 * content.offset)
    return (ends[bounds[1:]] - ends[bounds[:-1]]).astype(np.int64)


# The last FINER_BATCHES batches of a run are read in parts of FINER_ROWS episodes, so that the
# processes share out the end of the input in small batches and finish close together: in whole
# batches (0.05-0.35 s each when packing chat) the main process waited 0.1-0.2 s for a worker's last
# ones. The cut depends on the input only, so the output is the same for any --workers.
FINER_BATCHES = 4
FINER_ROWS = ENCODE_BATCH // 4


def finer_at_end(batches: Iterator[pa.RecordBatch], plan: BatchPlan) -> Iterator[pa.RecordBatch]:
    """The batches, the last FINER_BATCHES in parts of FINER_ROWS (where the plan knows which are the last)."""
    for k, batch in enumerate(batches):
        if plan.cut_from is None or k < plan.cut_from:
            yield batch
        else:
            yield from (batch.slice(start, FINER_ROWS) for start in range(0, batch.num_rows, FINER_ROWS))


def read_windows(path: Path, window: int):
    """Episodes as Python rows in windows of at most `window` (the preference objective's reader)."""
    batch: list[dict] = []
    for record_batch in episode_batches(path):
        batch.extend(record_batch.to_pylist())
        while len(batch) >= window:
            yield batch[:window]
            batch = batch[window:]
    if batch:
        yield batch


def workers_for(options: PackOptions, batches: float) -> int:
    """Processes for this run; one for two batches or fewer: starting a worker takes longer than a batch."""
    wanted = options.workers or os.cpu_count() or 1
    return 1 if wanted > 1 and batches <= 2 else wanted


@dataclass(frozen=True)
class BatchPlan:
    """The batches a run reads: how many, and each one's episodes where that is exact."""

    count: int
    sizes: list[int] | None  # None where batches of long episodes may be cut again by their text

    @property
    def cut_from(self) -> int | None:
        """The first batch read in parts (see finer_at_end); None where the sizes are not exact."""
        return None if self.sizes is None else max(0, len(self.sizes) - FINER_BATCHES)

    @property
    def read(self) -> int:
        """Batches handed to the crew: `count`, with the last ones in parts."""
        if self.cut_from is None:
            return self.count
        return self.cut_from + sum(-(-size // FINER_ROWS) for size in self.sizes[self.cut_from :])


def batch_plan(episodes: Path) -> BatchPlan:
    """Batches the run will read (cut per file), from the files' footers: its episodes in batches of
    `_footer_plan`'s rows; where those are fewer than ENCODE_BATCH (long episodes, whose batches may
    be cut again) an estimate from above, with a cut for every BATCH_TEXT of text: the crew then
    keeps its workers busy to the end rather than stop them early. A file that is not an episodes
    Parquet file stops the run here, with its name."""
    from gamelog.write.atomic import episode_files, episode_rows

    episode_rows(episodes)  # each footer read: raw data or a damaged file stops here, with its name
    count, sizes = 0, []
    for file in episode_files(episodes):
        rows, text, batch = _footer_plan(file)
        estimated = 1 < batch < ENCODE_BATCH  # a batch of one is never cut
        count += -(-rows // batch) + (-(-text // BATCH_TEXT) if estimated else 0)
        if estimated or sizes is None:
            sizes = None
        else:
            sizes += [batch] * (rows // batch) + ([rows % batch] if rows % batch else [])
    return BatchPlan(count, sizes)


def _footer_plan(file: Path) -> tuple[int, int, int]:
    """An episodes file's rows, its move text's bytes (as the footer gives them) and the rows a
    batch reads: ENCODE_BATCH, or fewer where the episodes average over BATCH_TEXT / ENCODE_BATCH
    bytes, so that a batch read does not hold hundreds of books while its parts run."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(file).metadata
    text = sum(
        group.column(c).total_uncompressed_size
        for group in map(meta.row_group, range(meta.num_row_groups))
        for c in range(group.num_columns)
        if group.column(c).path_in_schema.startswith("turns.") and group.column(c).path_in_schema.endswith(".content")
    )
    rows = meta.num_rows
    return rows, text, max(1, min(ENCODE_BATCH, rows * BATCH_TEXT // max(text, 1)))


# Batches a worker holds and batches a process has out (gamelog.crew's defaults, 2 and 4, are
# convert's, whose batches take about 10 ms). A pack batch takes 0.05-0.35 s, and a worker's finished
# results count as held until the main process takes them, between batches of its own: at 2 the
# worker waited on it, 0.06-0.08 s several times a run (0.2 s of 4.8 s on 2 cores); at 3 it runs on.
# The main process then runs about as many batches as the worker holds, whose results wait behind
# the worker's oldest: at 4 out a process it waited for the worker, at 5 seldom. 4 held and 6 out
# waited no less, and held 14 MiB more at the peak of a 10x pack (333-341 against 317-319 MiB).
# Convert keeps the defaults: more out raised the peak of converting every shared file ten times
# over (benchmarks/convert_memory.py) past 1.2 times the 1x run's.
CREW = {"depth": 3, "ahead": 5}

ROW_GROUP = 128  # packed rows per written table (one Parquet row group): bounds the memory of writing a window
# A window also closes once its segments hold window * seq_len / WINDOW_ROWS tokens (20 M at the
# defaults): as many as window / WINDOW_ROWS full rows, plenty for best-fit decreasing, and a bound
# on memory where episodes are long (20,000 books held every token of them). Chat and instruction
# episodes, a few hundred tokens each, fill a window by its episodes first.
WINDOW_ROWS = 4


class Window:
    """Batches' segments gathered in input order for best-fit decreasing: full at `window` episodes or
    window * seq_len / WINDOW_ROWS tokens, whichever comes first."""

    def __init__(self, options: PackOptions):
        self.options = options
        self.tokens_at_most = options.window * options.seq_len // WINDOW_ROWS
        self.blocks: list[Block] = []
        self.episodes = self.tokens = 0

    def add(self, result) -> bool:
        """Take a batch's segments; whether the window is full."""
        self.blocks.append(result.block)
        self.episodes += result.counts.episodes_read
        self.tokens += result.block.tokens
        return self.episodes >= self.options.window or self.tokens >= self.tokens_at_most

    def pack(self, counts: PackCounts) -> Iterator[pa.Table]:
        """Its rows (see pack_window), and the window empty again."""
        blocks, self.blocks, self.episodes, self.tokens = self.blocks, [], 0, 0
        return pack_window(Blocks(blocks), counts, self.options)


def pack_window(window: Blocks, counts: PackCounts, options: PackOptions) -> Iterator[pa.Table]:
    """Best-fit decreasing over one window's segments: the packed rows, as tables of ROW_GROUP rows."""
    from gamelog.pack.rows import rows_table

    if not len(window):
        return
    rows = best_fit_decreasing(window.lengths.tolist(), options.seq_len)
    counts.rows += len(rows)
    counts.segments += len(window)
    counts.tokens_total += window.tokens
    for start in range(0, len(rows), ROW_GROUP):
        table = rows_table(window, rows[start : start + ROW_GROUP], with_returns=options.returns is not None)
        mask = table.column("loss_mask").chunk(0).values  # the rows' flat mask as written (read from its buffer: to_numpy loads pyarrow.compute)
        counts.tokens_trained += int(np.count_nonzero(np.frombuffer(mask.buffers()[1], np.uint8, len(mask), mask.offset)))
        yield table


def stage_for(options: PackOptions, template: str) -> Stage:
    policy = LossPolicy(thoughts=options.train_thoughts, tool_calls=options.train_tool_calls, suboptimal=options.keep_suboptimal)
    return Stage(tokenizer=options.tokenizer, template=template, objective=options.objective, policy=policy, gamma=options.returns, seq_len=options.seq_len, overflow=options.overflow)


def check_options(options: PackOptions) -> None:
    if options.objective not in OBJECTIVES:
        raise GamelogError(f"unknown objective '{options.objective}'; choose one of: {', '.join(OBJECTIVES)}.")
    if options.overflow not in OVERFLOW:
        raise GamelogError(f"unknown overflow policy '{options.overflow}'; choose one of: {', '.join(OVERFLOW)}.")
    if options.seq_len < 8:
        raise GamelogError(f"--seq-len {options.seq_len} is too small; use at least 8.")


def _episode_batches(file: Path):
    """Record batches of one episodes file (`_footer_plan`'s rows each); a damaged file stops the
    run with its name, not a traceback."""
    import pyarrow as pa

    from gamelog.read.tables import parquet_batches

    try:
        rows = _footer_plan(file)[2]
        yield from parquet_batches(file, rows, columns=["episode_id", "source", "regime", "group_id", "rank", "outcome", "turns"])
    except (pa.ArrowException, OSError) as exc:
        raise GamelogError(f"{file}: not a readable episodes file ({exc}); run gamelog validate on it and re-run gamelog convert.") from exc


def pack(episodes: str | Path, *, out: Path, options: PackOptions, on_progress=None) -> PackManifest:
    check_options(options)
    if options.objective == "preference":
        from gamelog.pack.pairs import pack_pairs

        tok = load_tokenizer(options.tokenizer)
        template = choose_template(tok, options.template)
        return pack_pairs(Path(episodes), out=out, options=options, tok=tok, template=template, renderer=make_renderer(tok, template, "sft"))
    stage = stage_for(options, options.template)  # each process resolves the template from its tokenizer
    counts = PackCounts()
    window = Window(options)
    plan = batch_plan(Path(episodes))
    with Crew(stage, workers_for(options, plan.count), **CREW) as crew:  # spawned workers load while this process does
        tok = load_tokenizer(options.tokenizer)
        template = choose_template(tok, options.template)
        prime(stage, tok)
        crew.start()  # forked workers start here, with this process's tokenizer and renderer
        results = crew.run(finer_at_end(episode_batches(Path(episodes)), plan), plan.read)
        first = list(islice(results, 1))  # the workers get their first batches now, not after the imports below
        # the writers and the records models (pydantic) load here, while the workers run batches
        from gamelog.pack.rows import PACKED_SCHEMA
        from gamelog.records import PackManifest, build_now
        from gamelog.write.shards import REJECT_SCHEMA, ShardWriter, publishing, reject_table

        build_now(PackManifest)
        shards = ShardWriter(out, "part", PACKED_SCHEMA, shard_rows=options.shard_rows)
        rejects = ShardWriter(out, "rejects", REJECT_SCHEMA, shard_rows=0, single=True)
        with publishing(out, shards, rejects):
            for result in chain(first, results):
                counts.add(result.counts)
                if result.rejects:
                    rejects.write(reject_table(result.rejects))
                if window.add(result):
                    for table in window.pack(counts):
                        shards.write(table)
                    release_freed_memory()
                if on_progress:
                    on_progress(counts)
            for table in window.pack(counts):
                shards.write(table)
    return write_manifest(out, shards.names, counts, options, tok, template)


def write_manifest(out: Path, names: list[str], counts: PackCounts, options: PackOptions, tok: LoadedTokenizer, template: str) -> PackManifest:
    """manifest.json, written last: its presence means the run finished."""
    from gamelog.records import PackManifest
    from gamelog.write.atomic import shard_entries, write_text

    values = {k: v for k, v in asdict(counts).items() if k != "rejected_by_reason"}
    settings = {k: v for k, v in asdict(options).items() if k != "workers"}  # same manifest for any worker count
    rejected = dict(sorted(counts.rejected_by_reason.items()))
    efficiency = counts.tokens_total / (counts.rows * options.seq_len) if counts.rows else 0.0
    shards = shard_entries(out, names)
    manifest = PackManifest(
        gamelog_version=__version__,
        settings=settings,
        tokenizer={"name": tok.name, "sha256": tok.fingerprint},
        template=template,
        objective=options.objective,
        counts=values,
        rejected_by_reason=rejected,
        efficiency=round(efficiency, 6),
        shards=shards,
    )
    write_text(out / "manifest.json", manifest.model_dump_json(indent=2))
    return manifest
