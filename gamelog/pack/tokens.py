"""Tokenize each rendered episode once, and give every token its player, loss mask and reward.

The whole rendered text is encoded in one call (`encode_batch`, no special tokens added), so a
segment's ids are exactly the tokenizer's encoding of that episode: no per-turn encoding that
changes merges at boundaries, no added BOS. Each token's start offset says which move it belongs
to (anchored at its first visible character), and whether it falls in that move's trained span
(text plus end-of-turn marker).
Then every episode is checked: the characters covered by trained tokens must hold each trained
move (edge whitespace aside, which special tokens may absorb) and nothing of any other move; an
episode that fails is rejected with reason `mask_mismatch`, never packed wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gamelog.errors import RecordError
from gamelog.render import Rendered


@dataclass(slots=True)
class Segment:
    """One episode (or a part of one) as token arrays."""

    episode_id: str
    ids: np.ndarray  # int32
    mask: np.ndarray  # uint8
    player: np.ndarray  # int8
    reward: np.ndarray | None  # float32, None when the episode has no rewards
    returns: np.ndarray | None = None  # float32
    turn: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # move index of each token
    weight: np.ndarray | None = None  # float32, None when no move has an explicit weight

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class LossPolicy:
    """Which moves are training targets."""

    thoughts: bool = True
    tool_calls: bool = True
    suboptimal: bool = False  # train player-2 moves labelled suboptimal too (with their negative reward)

    def trains(self, turn: dict, regime: str) -> bool:
        if regime == "pretrain":
            return True
        if turn["player"] != 2 or turn.get("weight") == 0:
            return False
        if (turn["role"] == "thought" and not self.thoughts) or (turn["role"] == "tool_call" and not self.tool_calls):
            return False
        if regime == "sft":
            return True
        return turn["optimality"] == "optimal" or (self.suboptimal and turn["optimality"] == "suboptimal")


WHITESPACE = np.asarray([9, 10, 11, 12, 13, 32], dtype=np.uint32)


def anchors(text: str, offsets: np.ndarray) -> np.ndarray:
    """Where each token is placed: its first non-blank character (its start when it is all blank).

    Byte-level BPE glues the space before a word to the word (" Hello" after "Assistant:"), and
    special tokens may swallow the blanks after them: the first visible character says whose
    token it is.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    index = np.where(np.isin(codes, WHITESPACE), len(codes), np.arange(len(codes)))
    next_visible = np.append(np.minimum.accumulate(index[::-1])[::-1], len(codes))
    start, end = offsets[:, 0], offsets[:, 1]
    visible = next_visible[np.clip(start, 0, len(codes))]
    return np.where(visible < end, visible, start)


def token_arrays(rendered: Rendered, offsets: np.ndarray, trained: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(move index per token, loss mask per token) from where each token is anchored."""
    starts = np.asarray(rendered.starts, dtype=np.int64)
    content_start = np.asarray([c[0] for c in rendered.content], dtype=np.int64)
    trained_end = np.asarray(rendered.trained_end, dtype=np.int64)
    token_start = anchors(rendered.text, offsets)
    turn = np.searchsorted(starts, token_start, side="right") - 1
    inside = np.clip(turn, 0, None)
    mask = (turn >= 0) & trained[inside] & (token_start >= content_start[inside]) & (token_start < trained_end[inside])
    return turn.astype(np.int32), mask.astype(np.uint8)


def check_mask(rendered: Rendered, offsets: np.ndarray, mask: np.ndarray, trained: np.ndarray) -> None:
    """Trained tokens cover each trained move and nothing of the others (edge whitespace aside)."""
    text = rendered.text
    covered = np.zeros(len(text) + 1, dtype=np.int32)
    chosen = offsets[mask.astype(bool)]
    np.add.at(covered, chosen[:, 0], 1)
    np.add.at(covered, chosen[:, 1], -1)
    covered = np.cumsum(covered)[:-1] > 0
    for i, (begin, end) in enumerate(rendered.content):
        body = text[begin:end]
        lo = begin + (len(body) - len(body.lstrip()))
        hi = end - (len(body) - len(body.rstrip()))
        if hi <= lo:
            continue
        if trained[i] and not covered[lo:hi].all():
            raise RecordError("mask_mismatch", f"move {i} ({rendered.turns[i]['role']}) is not fully covered by trained tokens.")
        if not trained[i] and covered[lo:hi].any():
            raise RecordError("mask_mismatch", f"move {i} ({rendered.turns[i]['role']}) is not trained but shares tokens with a trained move (a merge across the move boundary).")


def move_rewards(turns: list[dict]) -> np.ndarray | None:
    rewards = [t["reward"] for t in turns]
    if all(r is None for r in rewards):
        return None
    return np.asarray([0.0 if r is None else r for r in rewards], dtype=np.float32)


def move_returns(turns: list[dict], gamma: float) -> np.ndarray:
    """Per move: discounted sum of this and later player-2 rewards, discounting per player-2 move.

    A player-1 move gets the return of the next player-2 move (the value of the state it leaves).
    """
    out = np.zeros(len(turns), dtype=np.float32)
    running = 0.0
    for i in range(len(turns) - 1, -1, -1):
        turn = turns[i]
        if turn["player"] == 2:
            running = (turn["reward"] or 0.0) + gamma * running
        out[i] = running
    return out


def build_segment(episode: dict, rendered: Rendered, encoding, policy: LossPolicy, gamma: float | None) -> Segment:
    ids = np.asarray(encoding.ids, dtype=np.int32)
    if len(ids) == 0:
        raise RecordError("empty_tokens", "the rendered episode encodes to no tokens.")
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    turns = rendered.turns
    trained = np.asarray([policy.trains(t, episode["regime"]) for t in turns], dtype=bool)
    turn, mask = token_arrays(rendered, offsets, trained)
    check_mask(rendered, offsets, mask, trained)
    inside = np.clip(turn, 0, None)
    players = np.asarray([t["player"] for t in turns], dtype=np.int8)
    player = np.where(turn >= 0, players[inside], 1).astype(np.int8)
    rewards = move_rewards(turns)
    reward = None if rewards is None else np.where(turn >= 0, rewards[inside], 0).astype(np.float32)
    returns = None
    if gamma is not None:
        returns = np.where(turn >= 0, move_returns(turns, gamma)[inside], 0).astype(np.float32)
    weights = [t.get("weight") for t in turns]
    weight = None
    if any(w is not None for w in weights):
        per_move = np.asarray([1.0 if w is None else w for w in weights], dtype=np.float32)
        weight = np.where(turn >= 0, per_move[inside], 1.0).astype(np.float32)
    return Segment(episode["episode_id"], ids, mask, player, reward, returns, turn, weight)
