"""`gamelog pack`: episodes -> tokenized, loss-masked, packed Parquet training shards + manifest.json.

    manifest = pack("out/glaive", out=Path("shards"), options=PackOptions(tokenizer="tok/", seq_len=4096))

Episodes stream in windows (`window` episodes at a time); each window is rendered, encoded,
masked, verified, fitted to seq_len by the overflow policy and packed best-fit decreasing into
rows, which are written as they are made. Objectives:
- `auto` (default): each episode by its regime: pretrain text trains every token (raw template);
  sft, preference and feedback episodes go through the chat template and train player 2's
  optimal moves; sub-optimal branches (rejected answers, bad KTO answers) are counted as skipped,
  or kept with their negative reward by `--keep-suboptimal`;
- `sft`: like auto, but pre-training text too goes through the chat template;
- `pretrain`: every token of every episode is trained;
- `preference`: one row per (chosen, rejected) pair; see `gamelog.pack.pairs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gamelog import __version__
from gamelog.errors import GamelogError
from gamelog.pack.bins import best_fit_decreasing
from gamelog.pack.rows import PACKED_SCHEMA, rows_table
from gamelog.pack.segments import OVERFLOW, PackCounts, encode_episodes, fit
from gamelog.pack.tokenizer import LoadedTokenizer, load_tokenizer
from gamelog.pack.tokens import LossPolicy
from gamelog.records import PackManifest
from gamelog.render import TEMPLATES, render
from gamelog.render.jinja import render_jinja
from gamelog.validate import episode_files
from gamelog.write.atomic import shard_entries, write_text
from gamelog.write.shards import REJECT_SCHEMA, ShardWriter, publishing, reject_table

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
    window: int = 100_000  # episodes packed together (best-fit decreasing runs over the window)
    shard_rows: int = 50_000


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

    def chat(turns):
        if template == "jinja":
            return render_jinja(turns, tok.chat_template, bos=tok.bos, eos=tok.eos, specials=specials)
        return render(turns, TEMPLATES[template], bos=tok.bos, eos=tok.eos)

    def render_episode(episode: dict):
        if episode["regime"] == "pretrain" and objective != "sft":
            return render(episode["turns"], TEMPLATES["raw"], bos=tok.bos, eos=tok.eos)
        return chat(episode["turns"])

    return render_episode


def read_windows(path: Path, window: int):
    """Episodes in windows of at most `window`, streamed from the episodes Parquet files."""
    batch: list[dict] = []
    for file in episode_files(path):
        for record_batch in _episode_batches(file):
            batch.extend(record_batch.to_pylist())
            while len(batch) >= window:
                yield batch[:window]
                batch = batch[window:]
    if batch:
        yield batch


def _episode_batches(file: Path):
    """Record batches of one episodes file; a damaged file stops the run with its name, not a traceback."""
    try:
        yield from pq.ParquetFile(file).iter_batches(batch_size=4096, columns=["episode_id", "source", "regime", "group_id", "rank", "outcome", "turns"])
    except (pa.ArrowException, OSError) as exc:
        raise GamelogError(f"{file}: not a readable episodes file ({exc}); run gamelog validate on it and re-run gamelog convert.") from exc


def pack(episodes: str | Path, *, out: Path, options: PackOptions, on_progress=None) -> PackManifest:
    if options.objective not in OBJECTIVES:
        raise GamelogError(f"unknown objective '{options.objective}'; choose one of: {', '.join(OBJECTIVES)}.")
    if options.overflow not in OVERFLOW:
        raise GamelogError(f"unknown overflow policy '{options.overflow}'; choose one of: {', '.join(OVERFLOW)}.")
    if options.seq_len < 8:
        raise GamelogError(f"--seq-len {options.seq_len} is too small; use at least 8.")
    tok = load_tokenizer(options.tokenizer)
    template = choose_template(tok, options.template)
    if options.objective == "preference":
        from gamelog.pack.pairs import pack_pairs

        return pack_pairs(Path(episodes), out=out, options=options, tok=tok, template=template, renderer=make_renderer(tok, template, "sft"))
    render_episode = make_renderer(tok, template, options.objective)
    policy = LossPolicy(thoughts=options.train_thoughts, tool_calls=options.train_tool_calls, suboptimal=options.keep_suboptimal)
    counts = PackCounts()
    shards = ShardWriter(out, "part", PACKED_SCHEMA, shard_rows=options.shard_rows)
    rejects = ShardWriter(out, "rejects", REJECT_SCHEMA, shard_rows=0, single=True)
    with publishing(out, shards, rejects):
        for window in read_windows(Path(episodes), options.window):
            counts.episodes_read += len(window)
            if options.objective == "pretrain":
                window = [e | {"regime": "pretrain"} for e in window]
            bad: list[dict] = []
            segments = encode_episodes(window, render=render_episode, tokenizer=tok.tokenizer, policy=policy, gamma=options.returns, counts=counts, rejects=bad)
            if bad:
                rejects.write(reject_table(bad))
            encoded, dropped = len(segments), counts.episodes_dropped
            segments = fit(segments, seq_len=options.seq_len, overflow=options.overflow, counts=counts)
            counts.episodes_packed += encoded - (counts.episodes_dropped - dropped)
            if segments:
                rows = best_fit_decreasing([len(s) for s in segments], options.seq_len)
                shards.write(rows_table(segments, rows, with_returns=options.returns is not None))
                counts.rows += len(rows)
                counts.segments += len(segments)
                counts.tokens_total += sum(len(s) for s in segments)
                counts.tokens_trained += int(sum(int(s.mask.sum()) for s in segments))
            if on_progress:
                on_progress(counts)
    return write_manifest(out, shards.names, counts, options, tok, template)


def write_manifest(out: Path, names: list[str], counts: PackCounts, options: PackOptions, tok: LoadedTokenizer, template: str) -> PackManifest:
    """manifest.json, written last: its presence means the run finished."""
    values = {k: v for k, v in asdict(counts).items() if k != "rejected_by_reason"}
    rejected = dict(sorted(counts.rejected_by_reason.items()))
    efficiency = counts.tokens_total / (counts.rows * options.seq_len) if counts.rows else 0.0
    shards = shard_entries(out, names)
    manifest = PackManifest(
        gamelog_version=__version__,
        settings=asdict(options),
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
