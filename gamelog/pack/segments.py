"""Episodes -> token segments: render, encode a batch, mask, verify; and the overflow policy.

An episode longer than seq_len is handled by `--overflow`:
- `split` (default): cut into parts of at most seq_len tokens, at move boundaries where it can
  (a single move longer than seq_len is cut inside it); each part is a segment of its own, with
  positions restarting, and its episode id gets `:k`;
- `truncate`: keep the first seq_len tokens; the rest is counted in tokens_truncated;
- `drop`: leave the episode out; its tokens are counted in tokens_dropped;
- `error`: stop with a clear error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gamelog.errors import GamelogError, RecordError
from gamelog.pack.block import Block
from gamelog.pack.offsets import Encoder, Tokens
from gamelog.pack.tokens import LossPolicy, Segment, build_columns
from gamelog.render import Rendered

OVERFLOW = ("split", "truncate", "drop", "error")
ENCODE_BATCH = 512  # episodes a batch holds at most (the reader cuts them so)


@dataclass
class PackCounts:
    episodes_read: int = 0
    episodes_packed: int = 0
    episodes_rejected: int = 0
    episodes_skipped: int = 0  # no trained token under the loss policy (e.g. a rejected branch)
    episodes_dropped: int = 0
    episodes_split: int = 0
    episodes_truncated: int = 0
    segments: int = 0
    rows: int = 0
    tokens_total: int = 0
    tokens_trained: int = 0
    tokens_dropped: int = 0
    tokens_truncated: int = 0
    pairs: int = 0  # preference objective only
    pairs_rejected: int = 0
    pairs_dropped: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)

    def add(self, other: PackCounts) -> None:
        """Fold another batch's counts into these."""
        for name, value in vars(other).items():
            if name == "rejected_by_reason":
                self.rejected_by_reason.update(value)
            else:
                setattr(self, name, getattr(self, name) + value)


def encode_block(episodes: list[dict], *, render: Callable[[dict], Rendered], encoder: Encoder, policy: LossPolicy, gamma: float | None, seq_len: int, overflow: str, counts: PackCounts, rejects: list[dict]) -> Block:
    """A batch's episodes that render, encode and verify, fitted to seq_len, as one block; the
    others become rejects, and those with no trained token are counted as skipped. A batch whose
    episodes all fit (nearly every chat batch) never makes a Segment per episode."""
    rendered, tokens = _encoded(episodes, render, encoder, counts, rejects)
    if not rendered:
        return Block.from_segments([])
    columns, failures = build_columns([e for e, _ in rendered], [r for _, r in rendered], tokens, policy, gamma)
    for position, exc in failures.items():
        _reject(rendered[position][0], exc, counts, rejects)
    built = np.ones(len(rendered), bool)
    built[list(failures)] = False
    trained = columns.trained()
    counts.episodes_skipped += int((built & ~trained).sum())
    keep = built & trained
    counts.episodes_packed += int(keep.sum())
    if (columns.lengths[keep] <= seq_len).all():
        return columns.block(keep)
    dropped = counts.episodes_dropped
    fitted = fit(columns.segments(keep.tolist()), seq_len=seq_len, overflow=overflow, counts=counts)
    counts.episodes_packed -= counts.episodes_dropped - dropped
    return Block.from_segments(fitted)


def _encoded(episodes: list[dict], render, encoder: Encoder, counts: PackCounts, rejects: list[dict]) -> tuple[list[tuple[dict, Rendered]], Tokens]:
    """The episodes that render to text of at least one token, with their renderings and tokens;
    the others become rejects."""
    rendered = []
    for episode in episodes:
        try:
            rendered.append((episode, render(episode)))
        except RecordError as exc:
            _reject(episode, exc, counts, rejects)
    tokens = encoder.encode([r.text for _, r in rendered])
    empty = np.flatnonzero(tokens.lengths == 0).tolist()
    for k in empty:
        _reject(rendered[k][0], RecordError("empty_tokens", "the rendered episode encodes to no tokens."), counts, rejects)
    if empty:
        kept = [k for k in range(len(rendered)) if tokens.lengths[k]]
        rendered, tokens = [rendered[k] for k in kept], tokens.select(kept)
    return rendered, tokens


def _reject(episode: dict, exc: RecordError, counts: PackCounts, rejects: list[dict]) -> None:
    counts.episodes_rejected += 1
    counts.rejected_by_reason[exc.reason] += 1
    rejects.append({"reason": exc.reason, "detail": f"episode {episode['episode_id']}: {exc.detail}", "source": episode["source"], "location": f"episode {episode['episode_id']}", "raw": None})


def fit(segments: list[Segment], *, seq_len: int, overflow: str, counts: PackCounts) -> list[Segment]:
    """Apply the overflow policy; every token is packed or counted."""
    fitted: list[Segment] = []
    for segment in segments:
        size = len(segment)
        if size <= seq_len:
            fitted.append(segment)
        elif overflow == "error":
            raise GamelogError(f"episode {segment.episode_id} has {size} tokens, over --seq-len {seq_len}; raise --seq-len or choose --overflow split|truncate|drop.")
        elif overflow == "drop":
            counts.episodes_dropped += 1
            counts.tokens_dropped += size
        elif overflow == "truncate":
            counts.episodes_truncated += 1
            counts.tokens_truncated += size - seq_len
            fitted.append(_part(segment, 0, seq_len, segment.episode_id))
        else:
            counts.episodes_split += 1
            fitted.extend(_part(segment, a, b, f"{segment.episode_id}:{k}") for k, (a, b) in enumerate(split_points(segment.turn, seq_len)))
    kept = []
    for segment in fitted:
        if overflow in ("split", "truncate") and not segment.mask.any():
            counts.tokens_dropped += len(segment)  # a part with nothing to learn
            continue
        kept.append(segment)
    return kept


def split_points(turn: np.ndarray, seq_len: int) -> list[tuple[int, int]]:
    """Cut [0, n) into spans of at most seq_len, preferring cuts where a new move starts."""
    n = len(turn)
    boundaries = np.flatnonzero(np.diff(turn) != 0) + 1  # token index where a new move begins
    spans, begin = [], 0
    while n - begin > seq_len:
        limit = begin + seq_len
        inside = boundaries[(boundaries > begin) & (boundaries <= limit)]
        cut = int(inside[-1]) if len(inside) else limit
        spans.append((begin, cut))
        begin = cut
    spans.append((begin, n))
    return spans


def _part(segment: Segment, a: int, b: int, episode_id: str) -> Segment:
    pick = lambda x: None if x is None else x[a:b]
    return Segment(episode_id, segment.ids[a:b], segment.mask[a:b], segment.player[a:b], pick(segment.reward), pick(segment.returns), segment.turn[a:b], pick(segment.weight))
