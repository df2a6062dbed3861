"""`gamelog inspect`: look at episodes or packed rows in the terminal.

Episodes: each move in its player's colour (player 1 cyan, player 2 green), with its role, name,
reward and optimality. Packed rows: each token coloured by the loss mask (trained tokens bold
green on a dark background, the rest dim), player-1 tokens underlined, and `┃` between segments,
so what is trained shows at a glance.
"""

from __future__ import annotations

import bisect
import random
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from gamelog.errors import GamelogError
from gamelog.write.atomic import read_output, unreadable

PLAYER_STYLE = {1: "cyan", 2: "green"}


def pick(files: list[Path], keep: np.ndarray, *, sample: int | None, seed: int) -> list[dict]:
    """The kept rows of the files (counted across them), sampled; only the row groups that hold
    them are read, and only those rows become Python objects."""
    indices = np.flatnonzero(keep).tolist()
    if sample is not None and sample < len(indices):
        indices = random.Random(seed).sample(indices, sample)
    return [dict(row, _index=i) for i, row in zip(indices, _rows_at(files, indices))]


def _rows_at(files: list[Path], indices: list[int]) -> list[dict]:
    """The rows at these indices (counted across the files), in that order."""
    import pyarrow.parquet as pq

    groups = []  # (first row, file, its Parquet reader, row group), in order
    first = 0
    for file in files:
        parquet = pq.ParquetFile(file)
        for group in range(parquet.metadata.num_row_groups):
            groups.append((first, file, parquet, group))
            first += parquet.metadata.row_group(group).num_rows
    firsts = [g[0] for g in groups]
    read: dict[int, pa.Table] = {}
    rows = []
    for index in indices:
        k = bisect.bisect_right(firsts, index) - 1
        start, file, parquet, group = groups[k]
        if k not in read:
            try:
                read[k] = parquet.read_row_group(group)
            except (pa.ArrowException, OSError) as exc:
                raise unreadable(file, exc) from exc
        rows.append(read[k].slice(index - start, 1).to_pylist()[0])
    return rows


def _missing(episode: str) -> GamelogError:
    return GamelogError(f"no episode {episode} here; list ids with: gamelog inspect PATH --sample 5")


def episode_view(row: dict) -> Panel:
    lines = []
    for turn in row["turns"]:
        head = Text(f"P{turn['player']} {turn['role']}", style=f"bold {PLAYER_STYLE.get(turn['player'], 'white')}")
        if turn["name"]:
            head.append(f" ({turn['name']})")
        if turn["player"] == 2 or turn["reward"] is not None:
            head.append(f"  [{turn['optimality']}" + (f", reward {turn['reward']:+.3g}" if turn["reward"] is not None else "") + "]", style="yellow")
        lines += [head, Text(turn["content"], style=PLAYER_STYLE.get(turn["player"], "white")), Text("")]
    meta = orjson.loads(row["meta"]) if isinstance(row["meta"], str) else row["meta"]
    title = f"{row['episode_id']}  {row['regime']}  {row['task'] or ''}  {row['game']}"
    if row["group_id"]:
        title += f"  group {row['group_id'][:12]} rank {row['rank']}"
    subtitle = f"{row['source']} {meta.get('location', '')}" + (f"  outcome {row['outcome']:+.3g}" if row["outcome"] is not None else "")
    return Panel(Group(*lines), title=title, subtitle=subtitle, title_align="left", subtitle_align="left")


def packed_view(row: dict, index: int, decode) -> Panel:
    text = Text()
    boundaries = set()
    at = 0
    for length in row["seq_lens"]:
        at += length
        boundaries.add(at)
    for k, (token, trained, player) in enumerate(zip(row["input_ids"], row["loss_mask"], row["player"])):
        if k in boundaries:
            text.append(" ┃ ", style="bold magenta")
        style = "bold green on grey11" if trained else "dim"
        if player == 1:
            style += " underline"
        text.append(decode(token), style=style)
    trained = sum(row["loss_mask"])
    title = f"row {index}: {len(row['input_ids'])} tokens, {len(row['seq_lens'])} segments, {trained} trained"
    return Panel(text, title=title, subtitle=", ".join(row["episode_ids"][:6]) + (" ..." if len(row["episode_ids"]) > 6 else ""), title_align="left")


def inspect(path: Path, *, episode: str | None = None, regime: str | None = None, sample: int | None = 3, seed: int = 0, tokenizer: str | None = None) -> list[Panel]:
    """Panels for the selected episodes or packed rows of PATH (an episodes or a packed directory, or one file)."""
    if path.is_dir() and (path / "manifest.json").exists():
        return _packed(path, episode=episode, sample=sample, seed=seed, tokenizer=tokenizer)
    from gamelog.write.atomic import episode_files

    files = episode_files(path)
    table = pa.concat_tables(read_output(f, columns=["episode_id", "regime"]) for f in files)  # what selects, not the moves
    keep = np.ones(table.num_rows, dtype=bool)
    if episode:
        keep &= pc.equal(table["episode_id"], episode).to_numpy(zero_copy_only=False)
        if not keep.any():
            raise _missing(episode)
    if regime:
        keep &= pc.equal(table["regime"], regime).to_numpy(zero_copy_only=False)
    return [episode_view(r) for r in pick(files, keep, sample=sample, seed=seed)]


def _packed(path: Path, *, episode, sample, seed, tokenizer) -> list[Panel]:
    from gamelog.pack.tokenizer import load_tokenizer
    from gamelog.records import PackManifest

    manifest = PackManifest.model_validate_json((path / "manifest.json").read_bytes())
    if manifest.objective == "preference":
        raise GamelogError(f"{path}: preference pairs are not shown token by token yet; inspect the episodes directory instead.")
    tok = load_tokenizer(tokenizer or manifest.tokenizer["name"])
    decode = lambda token: tok.tokenizer.decode([token], skip_special_tokens=False)
    files = [path / s["name"] for s in manifest.shards]
    table = pa.concat_tables(read_output(f, columns=["episode_ids"]) for f in files)  # what selects, not the tokens
    keep = np.ones(table.num_rows, dtype=bool)
    if episode:
        ids = pc.list_flatten(table["episode_ids"])
        hit = pc.or_(pc.equal(ids, episode), pc.starts_with(ids, episode + ":"))
        rows = pc.list_parent_indices(table["episode_ids"]).to_numpy()[hit.to_numpy(zero_copy_only=False)]
        keep = np.zeros(table.num_rows, dtype=bool)
        keep[rows] = True
        if not keep.any():
            raise _missing(episode)
    return [packed_view(r, r["_index"], decode) for r in pick(files, keep, sample=sample, seed=seed)]
