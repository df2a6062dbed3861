"""The Ray engine: `gamelog convert|pack --engine ray` on Ray Data.

The work runs in Ray tasks; the driver only gathers results in input order and writes them with
the same writers as the local engine, so the shard layout, rejects, report.json and manifest.json
are the same. Each task returns one row holding its pickled result (Arrow tables inside travel as
Arrow buffers through the object store).

- convert: one task per input file (`ray.data.from_items` over the inputs), each running the local
  engine's `convert_source`. Exact de-duplication runs per file in the task and across files in the
  driver, from the record digests the tasks return, so the episodes kept are the local engine's. A
  record dropped there as a repeat of another file's record is rejected without its raw copy (its
  source and location name it).
- pack: `ray.data.read_parquet` over the episodes files, then `map_batches` in blocks of `window`
  episodes. A task renders, encodes, verifies and fits a block with the local engine's stage
  (`gamelog.pack.workers.run_stage`) and packs it best-fit decreasing. Packing within blocks instead
  of one stream of windows costs a little fill: benchmarks/README.md gives the figure.

The preference objective runs on the local engine only.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from gamelog.errors import GamelogError
from gamelog.write.atomic import episode_files, episode_rows, footer_rows

PAYLOAD = pa.schema([pa.field("payload", pa.binary())])


def _payload(result) -> pa.Table:
    return pa.Table.from_arrays([pa.array([pickle.dumps(result, protocol=5)], pa.binary())], schema=PAYLOAD)


def _results(dataset):
    """The tasks' results, in input order."""
    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        for blob in batch.column("payload").to_pylist():
            yield pickle.loads(blob)


def start(address: str | None, num_cpus: int | None):
    """Join the cluster at `address` (or RAY_ADDRESS), or start a local one; results keep input order."""
    try:
        import ray
    except ImportError:
        raise GamelogError("--engine ray needs Ray: pip install 'gamelog[ray]'.") from None
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": num_cpus}
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **kwargs)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    return ray


# convert


def _convert_file(batch: pa.Table, options) -> pa.Table:
    from gamelog.convert import Tally, convert_source
    from gamelog.dedup import FirstSeen
    from gamelog.write.shards import reject_table

    source = batch.column("source")[0].as_py()
    tally, seen = Tally(), FirstSeen()
    episodes, rejects = [], []
    for table, bad in convert_source(source, options, tally, seen):
        if table is not None:
            episodes.append(table)
        if bad:
            rejects.append(reject_table(bad))
    firsts = [(digest, location) for digest, (_, location) in seen.items()]
    return _payload({"source": source, "tally": tally, "episodes": episodes, "rejects": rejects, "firsts": firsts})


def convert_on_ray(inputs: list[str], *, out: Path, options, address: str | None = None, num_cpus: int | None = None):
    from gamelog.convert import Tally, write_report
    from gamelog.dedup import FirstSeen
    from gamelog.read import expand_inputs
    from gamelog.write.shards import EPISODE_SCHEMA, REJECT_SCHEMA, ShardWriter, publishing

    sources = expand_inputs(inputs)
    ray = start(address, num_cpus)
    dataset = ray.data.from_items([{"source": s} for s in sources], override_num_blocks=max(1, len(sources)))
    dataset = dataset.map_batches(_convert_file, batch_size=1, batch_format="pyarrow", fn_kwargs={"options": options})
    episodes = ShardWriter(out, "episodes", EPISODE_SCHEMA, shard_rows=options.shard_rows)
    rejects = ShardWriter(out, "rejects", REJECT_SCHEMA, shard_rows=0, single=True)
    tally, seen = Tally(), FirstSeen()
    with publishing(out, episodes, rejects):
        for result in _results(dataset):
            repeats = _cross_file_repeats(result, seen) if options.dedup == "exact" else {}
            tally.add(result["tally"])
            for table in result["episodes"]:
                if repeats:
                    table = _drop_repeats(table, repeats, result["source"], tally, rejects)
                episodes.write(table)
            for table in result["rejects"]:
                rejects.write(table)
    return write_report(out, sources, options, tally, episodes.names)


def _cross_file_repeats(result: dict, seen) -> dict[str, tuple[str, str]]:
    """Location -> first occurrence, for this file's records that repeat an earlier file's."""
    firsts = seen.settle(result["source"], result["firsts"])
    return {location: first for (_, location), first in zip(result["firsts"], firsts) if first is not None and first[0] != result["source"]}


def _drop_repeats(table: pa.Table, repeats: dict, source: str, tally, rejects) -> pa.Table:
    import orjson
    import pyarrow.compute as pc

    from gamelog.write.shards import reject_table

    locations = [orjson.loads(m)["location"] for m in table.column("meta").to_pylist()]
    repeat = pa.array([loc in repeats for loc in locations])
    if not pc.any(repeat).as_py():
        return table
    dropped = table.filter(repeat)
    turns = pc.list_value_length(dropped.column("turns")).to_pylist()
    tally.episodes -= dropped.num_rows
    tally.turns -= sum(turns)
    tally.regimes.subtract(Counter(dropped.column("regime").to_pylist()))
    tally.regimes += Counter()  # drop regimes that fell to zero
    records = list(dict.fromkeys(loc for loc in locations if loc in repeats))  # in order of first appearance
    tally.converted -= len(records)
    tally.rejected["duplicate"] += len(records)
    rows = [{"reason": "duplicate", "detail": f"{loc}: same episodes as {repeats[loc][0]} {repeats[loc][1]}; kept once (--dedup none keeps both).", "source": source, "location": loc, "raw": None} for loc in records]
    rejects.write(reject_table(rows))
    return table.filter(pc.invert(repeat))


# pack


def _pack_block(block: pa.Table, stage, options) -> pa.Table:
    """A block's rows, packed in windows as the local engine packs them (a block of long episodes in several)."""
    from gamelog.pack import Window, cut_by_text
    from gamelog.pack.segments import ENCODE_BATCH, PackCounts
    from gamelog.pack.workers import run_stage

    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one task per CPU that Ray hands out
    counts, window, rows, rejects = PackCounts(), Window(options), [], []
    for chunk in block.to_batches(max_chunksize=ENCODE_BATCH):
        for batch in cut_by_text(chunk):
            result = run_stage(stage, batch)
            counts.add(result.counts)
            rejects.extend(result.rejects)
            if window.add(result):
                rows.extend(window.pack(counts))
    rows.extend(window.pack(counts))
    return _payload({"rows": rows, "rejects": rejects, "counts": counts})


def _episode_files(episodes: str):
    """The episodes files of a local directory, or of a URI (s3://, gs://, file://...) through pyarrow's filesystems."""
    if "://" not in episodes:
        episode_rows(Path(episodes))  # each file's footer read: raw data or a damaged file stops here, with its name
        return [str(f) for f in episode_files(Path(episodes))], None
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(episodes)
        found = filesystem.get_file_info(fs.FileSelector(root))
    except (pa.ArrowException, OSError) as exc:
        raise GamelogError(f"{episodes}: cannot list it ({exc}); check the URI and the credentials of its filesystem.") from None
    files = sorted(f.path for f in found if f.is_file and f.base_name.startswith("episodes-") and f.base_name.endswith(".parquet"))
    if not files:
        raise GamelogError(f"{episodes}: no episodes-*.parquet files here; pass the --out directory of gamelog convert.")
    scheme = episodes.split("://", 1)[0]
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:  # the footers, read at once (remote stores answer slowly, in parallel)
        list(pool.map(lambda path: footer_rows(path, f"{scheme}://{path}", filesystem), files))
    return files, filesystem


def pack_on_ray(episodes: str | Path, *, out: Path, options, address: str | None = None, num_cpus: int | None = None):
    from gamelog.pack import PackCounts, check_options, choose_template, stage_for, write_manifest
    from gamelog.pack.rows import PACKED_SCHEMA
    from gamelog.pack.tokenizer import load_tokenizer
    from gamelog.write.shards import REJECT_SCHEMA, ShardWriter, publishing, reject_table

    check_options(options)
    if options.objective == "preference":
        raise GamelogError("--objective preference runs on the local engine only; drop --engine ray.")
    tok = load_tokenizer(options.tokenizer)
    template = choose_template(tok, options.template)
    files, filesystem = _episode_files(str(episodes))
    ray = start(address, num_cpus)
    columns = ["episode_id", "source", "regime", "group_id", "rank", "outcome", "turns"]
    dataset = ray.data.read_parquet(files, filesystem=filesystem).select_columns(columns)
    dataset = dataset.repartition(target_num_rows_per_block=options.window, strict=True)  # one block per task, whatever the files' sizes
    dataset = dataset.map_batches(_pack_block, batch_size=options.window, batch_format="pyarrow", fn_kwargs={"stage": stage_for(options, template), "options": options})
    counts = PackCounts()
    shards = ShardWriter(out, "part", PACKED_SCHEMA, shard_rows=options.shard_rows)
    rejects = ShardWriter(out, "rejects", REJECT_SCHEMA, shard_rows=0, single=True)
    with publishing(out, shards, rejects):
        for result in _results(dataset):
            counts.add(result["counts"])
            if result["rejects"]:
                rejects.write(reject_table(result["rejects"]))
            for table in result["rows"]:
                shards.write(table)
    return write_manifest(out, shards.names, counts, options, tok, template)
