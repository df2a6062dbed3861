"""`gamelog inspect`: look at episodes or packed rows in the terminal.

Episodes: each move in its player's colour (player 1 cyan, player 2 green), with its role, name,
reward and optimality. Packed rows: each token coloured by the loss mask (trained tokens bold
green on a dark background, the rest dim), player-1 tokens underlined, and `┃` between segments,
so what is trained shows at a glance.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from gamelog.errors import GamelogError

PLAYER_STYLE = {1: "cyan", 2: "green"}


def select(rows: list[dict], *, episode: str | None, regime: str | None, sample: int | None, seed: int) -> list[dict]:
    if episode:
        rows = [r for r in rows if r.get("episode_id") == episode or episode in (r.get("episode_ids") or [])]
        if not rows:
            raise GamelogError(f"no episode {episode} here; list ids with: gamelog inspect PATH --sample 5")
    if regime:
        rows = [r for r in rows if r.get("regime") == regime]
    if sample is not None and sample < len(rows):
        rows = random.Random(seed).sample(rows, sample)
    return rows


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
    from gamelog.validate import episode_files

    rows = [r for f in episode_files(path) for r in pq.read_table(f).to_pylist()]
    return [episode_view(r) for r in select(rows, episode=episode, regime=regime, sample=sample, seed=seed)]


def _packed(path: Path, *, episode, sample, seed, tokenizer) -> list[Panel]:
    from gamelog.pack.tokenizer import load_tokenizer
    from gamelog.records import PackManifest

    manifest = PackManifest.model_validate_json((path / "manifest.json").read_bytes())
    if manifest.objective == "preference":
        raise GamelogError(f"{path}: preference pairs are not shown token by token yet; inspect the episodes directory instead.")
    tok = load_tokenizer(tokenizer or manifest.tokenizer["name"])
    decode = lambda token: tok.tokenizer.decode([token], skip_special_tokens=False)
    rows = [r for s in manifest.shards for r in pq.read_table(path / s["name"]).to_pylist()]
    indexed = list(enumerate(rows))
    if episode:
        indexed = [(i, r) for i, r in indexed if any(e == episode or e.startswith(episode + ":") for e in r["episode_ids"])]
    if sample is not None and sample < len(indexed):
        indexed = random.Random(seed).sample(indexed, sample)
    return [packed_view(r, i, decode) for i, r in indexed]
