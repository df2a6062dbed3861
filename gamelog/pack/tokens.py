"""Tokenize each rendered episode once, and give every token its player, loss mask and reward.

The whole rendered text is encoded in one call (a batch at a time, no special tokens added; see
`gamelog.pack.offsets`), so a segment's ids are exactly the tokenizer's encoding of that episode:
no per-turn encoding that changes merges at boundaries, no added BOS. Each token's start offset says which move it belongs
to (anchored at its first visible character), and whether it falls in that move's trained span
(text plus end-of-turn marker); the tokens of a piece between added tokens that holds no move
bound all fall where the piece starts, so only the others need offsets (`_by_pieces`).
Then every episode is checked: the characters covered by trained tokens must hold each trained
move (edge whitespace aside, which special tokens may absorb) and nothing of any other move; an
episode that fails is rejected with reason `mask_mismatch`, never packed wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gamelog.errors import RecordError
from gamelog.pack.block import Block, OptionalColumn
from gamelog.pack.offsets import Tokens
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

    def trained(self, turns: list[dict], regime: np.ndarray, player: np.ndarray, zero_weight: np.ndarray) -> np.ndarray:
        """Per move (with its episode's regime): is it a training target. Pre-training text trains
        every move; otherwise player 2's moves of non-zero weight, of the roles asked for, and
        outside SFT only the optimal ones (and the sub-optimal ones when asked)."""
        column = lambda key: np.asarray([t[key] for t in turns], dtype=object)
        target = (player == 2) & ~zero_weight
        if not (self.thoughts and self.tool_calls):
            role = column("role")
            target &= ~((role == "thought") & (not self.thoughts)) & ~((role == "tool_call") & (not self.tool_calls))
        choice = regime == "sft"
        if not choice.all():
            optimality = column("optimality")
            choice |= (optimality == "optimal") | ((optimality == "suboptimal") & self.suboptimal)
        return (regime == "pretrain") | (target & choice)


WHITESPACE = np.asarray([9, 10, 11, 12, 13, 32], dtype=np.uint32)


def move_returns(turns: list[dict], gamma: float) -> list[float]:
    """Per move: discounted sum of this and later player-2 rewards, discounting per player-2 move.

    A player-1 move gets the return of the next player-2 move (the value of the state it leaves).
    """
    out = [0.0] * len(turns)
    running = 0.0
    for i in range(len(turns) - 1, -1, -1):
        turn = turns[i]
        if turn["player"] == 2:
            running = (turn["reward"] or 0.0) + gamma * running
        out[i] = running
    return out


@dataclass
class Batch:
    """Many rendered episodes laid end to end, so every per-token step is one numpy operation."""

    text_base: np.ndarray  # where each episode's text starts in the joined text
    codes: np.ndarray  # the joined text as code points
    turn_start: np.ndarray  # per move, in joined-text coordinates
    content_start: np.ndarray
    content_end: np.ndarray
    trained_end: np.ndarray
    first_turn: np.ndarray  # per episode: index of its first move
    trained: np.ndarray  # per move: is it a training target


@dataclass
class Moves:
    """Per move of a batch, in order: the fields the masks and per-token columns need, as arrays."""

    player: np.ndarray  # int8
    reward: np.ndarray  # float32, 0 where none
    has_reward: np.ndarray  # bool
    weight: np.ndarray  # float32, 1 where none
    has_weight: np.ndarray  # bool
    trained: np.ndarray  # bool: a training target under the policy


def moves_of(episodes: list[dict], rendered: list[Rendered], policy: LossPolicy) -> Moves:
    turns = [t for r in rendered for t in r.turns]
    count = len(turns)
    column = lambda key: [t.get(key) for t in turns]
    player = np.fromiter((t["player"] for t in turns), dtype=np.int8, count=count)
    rewards, weights = column("reward"), column("weight")
    has_reward = np.fromiter((r is not None for r in rewards), dtype=bool, count=count)
    has_weight = np.fromiter((w is not None for w in weights), dtype=bool, count=count)
    reward = np.asarray([r or 0.0 for r in rewards], dtype=np.float32)
    weight = np.asarray([1.0 if w is None else w for w in weights], dtype=np.float32)
    turns_per = [len(r.turns) for r in rendered]
    regime = np.repeat(np.asarray([e["regime"] for e in episodes], dtype=object), turns_per)
    trained = policy.trained(turns, regime, player, has_weight & (weight == 0))
    return Moves(player, reward, has_reward, weight, has_weight, trained)


def lay_out(episodes: list[dict], rendered: list[Rendered], moves: Moves) -> Batch:
    sizes = np.fromiter((len(r.text) for r in rendered), dtype=np.int64, count=len(rendered))
    text_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    turns_per = np.fromiter((len(r.turns) for r in rendered), dtype=np.int64, count=len(rendered))
    base = np.repeat(text_base, turns_per)
    flat = lambda key: np.fromiter((x for r in rendered for x in getattr(r, key)), dtype=np.int64)
    content = np.asarray([c for r in rendered for c in r.content], dtype=np.int64).reshape(-1, 2)
    return Batch(
        text_base=text_base,
        codes=np.frombuffer("".join(r.text for r in rendered).encode("utf-32-le"), dtype=np.uint32),
        turn_start=flat("starts") + base,
        content_start=content[:, 0] + base,
        content_end=content[:, 1] + base,
        trained_end=flat("trained_end") + base,
        first_turn=np.concatenate([[0], np.cumsum(turns_per)[:-1]]).astype(np.int64),
        trained=moves.trained,
    )


BLANK = np.zeros(33, dtype=bool)
BLANK[WHITESPACE] = True


def _blank(codes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Whether the characters at these positions are whitespace (all of WHITESPACE is below 33)."""
    c = codes[positions]
    return BLANK[np.minimum(c, 32)] & (c <= 32)


def first_visible(codes: np.ndarray, begin: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per span: the first non-blank position in [begin, stop), or stop when there is none.

    Scans only the spans that start blank, one character a round, so the cost follows the
    leading whitespace of the spans, not the length of the text.
    """
    found = stop.copy()
    pending = np.flatnonzero(begin < stop)
    at = begin[pending]
    while pending.size:
        visible = ~_blank(codes, at)
        found[pending[visible]] = at[visible]
        at = at[~visible] + 1
        pending = pending[~visible]
        more = at < stop[pending]
        at, pending = at[more], pending[more]
    return found


def last_visible_end(codes: np.ndarray, begin: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per span: one past the last non-blank position in [begin, stop), or begin when there is none."""
    found = begin.copy()
    pending = np.flatnonzero(begin < stop)
    at = stop[pending] - 1
    while pending.size:
        visible = ~_blank(codes, at)
        found[pending[visible]] = at[visible] + 1
        at = at[~visible] - 1
        pending = pending[~visible]
        more = at >= begin[pending]
        at, pending = at[more], pending[more]
    return found


def build_segments(episodes: list[dict], rendered: list[Rendered], tokens: Tokens, policy: LossPolicy, gamma: float | None) -> tuple[list[Segment], dict[int, RecordError]]:
    """Segments for a batch of rendered episodes; failures map episode position -> RecordError."""
    columns, failures = build_columns(episodes, rendered, tokens, policy, gamma)
    return columns.segments([k not in failures for k in range(len(episodes))]), failures


def build_columns(episodes: list[dict], rendered: list[Rendered], tokens: Tokens, policy: LossPolicy, gamma: float | None) -> tuple[Columns, dict[int, RecordError]]:
    """Every token's columns for a batch of rendered episodes, back to back; failures map episode
    position -> RecordError (their tokens are still there: `Columns.block` and `segments` leave them out)."""
    moves = moves_of(episodes, rendered, policy)
    batch = lay_out(episodes, rendered, moves)
    placed = _by_pieces(batch, tokens) if tokens.cut is not None else None
    if placed is None:
        placed = _by_tokens(batch, tokens)
    lengths, ids = tokens.lengths, tokens.ids  # the tokenizer's own where derived offsets did not check out
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    turn = np.where(placed.turn >= batch.first_turn[episode_of], placed.turn, -1)
    inside = np.clip(turn, 0, None)
    mask = (turn >= 0) & batch.trained[inside] & placed.in_span
    covered = mask[placed.span_token]
    failures = check_masks(batch, placed.span_start[covered], placed.span_end[covered], rendered)
    return _columns(episodes, rendered, lengths, ids, turn, inside, mask.astype(np.uint8), batch, moves, gamma), failures


@dataclass
class Placed:
    """Per token: the move its anchor falls in and whether that is in the move's trained span; and
    the character spans the tokens cover (batch coordinates), each with a token whose mask it shares."""

    turn: np.ndarray
    in_span: np.ndarray
    span_start: np.ndarray
    span_end: np.ndarray
    span_token: np.ndarray


def _by_tokens(batch: Batch, tokens: Tokens) -> Placed:
    """Every token placed by its own offsets."""
    offsets = tokens.offsets  # first: the tokenizer's own encodings replace the batch where derived offsets do not check out
    shift = np.repeat(batch.text_base, tokens.lengths)
    start, end = offsets[:, 0] + shift, offsets[:, 1] + shift
    turn, in_span = _place(batch, start, end)
    return Placed(turn, in_span, start, end, np.arange(len(start)))


def _by_pieces(batch: Batch, tokens: Tokens) -> Placed | None:
    """Tokens placed a piece at a time (a piece: the text between two added tokens, which the
    tokenizer encodes on its own). A piece that holds no move bound lies in one stretch between
    bounds, so all its tokens have the place of its start, whatever their offsets, and together
    they cover it: only the added tokens (whose offsets are their matches) and the tokens of pieces
    that hold a bound (offsets derived for them alone) are placed one by one. With Phi-3's template
    no piece holds a bound; with ChatML's, each move's header and text share one.
    None where the bounds are out of order, or the spelling of a piece that holds a bound does not
    check out (the tokenizer's own encodings then replace the batch)."""
    bounds = _bounds(batch)
    if (np.diff(bounds) < 0).any():
        return None
    cut = tokens.cut
    pieces = cut.pieces
    piece_text = np.repeat(np.arange(len(tokens.lengths)), np.diff(np.append(pieces.first_gap, len(pieces.gap_start))))
    start, end = pieces.gap_start - piece_text, pieces.gap_end - piece_text
    at_start = np.searchsorted(bounds, start, side="right")
    holds = (end > start) & (np.searchsorted(bounds, end - 1, side="right") != at_start)
    turn, in_span = ((at_start - 1) // 3)[cut.piece], ((at_start - 1) % 3 == 1)[cut.piece]  # each token as its piece's start
    plain = np.flatnonzero(~cut.is_added)
    plain_piece = cut.piece[plain]
    alone = plain[holds[plain_piece]]
    added = np.flatnonzero(cut.is_added)
    match = cut.added_before[added]
    one_start = [pieces.match_start[match] - pieces.match_text[match]]
    one_end = [pieces.match_end[match] - pieces.match_text[match]]
    if alone.size:
        offsets = tokens.derive(alone)
        if offsets is None:
            tokens.ask()
            return None
        shift = batch.text_base[(cut.piece - cut.added_before)[alone]]  # each one's text (the pieces of a text: one more than its added tokens)
        one_start.append(offsets[:, 0] + shift)
        one_end.append(offsets[:, 1] + shift)
    one = np.concatenate([added, alone])
    one_start, one_end = np.concatenate(one_start), np.concatenate(one_end)
    count = _counts(bounds, batch.codes, one_start, one_end)
    turn[one], in_span[one] = (count - 1) // 3, (count - 1) % 3 == 1
    # the spans covered: each piece that holds no bound and has tokens (with its first), and each token placed alone
    whole = np.flatnonzero(~holds & (np.bincount(plain_piece, minlength=len(start)) > 0))
    first = plain[np.searchsorted(plain_piece, whole)]
    return Placed(turn, in_span, np.concatenate([start[whole], one_start]), np.concatenate([end[whole], one_end]), np.concatenate([first, one]))


def _bounds(batch: Batch) -> np.ndarray:
    """Each move's start, content start and trained end in turn: sorted, unless a template writes moves out of order."""
    return np.stack([batch.turn_start, batch.content_start, batch.trained_end], axis=1).ravel()


def _place(batch: Batch, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token: the move of its anchor, its first visible character (its start when all blank),
    and whether the anchor is in that move's trained span [content start, trained end).

    The moves' bounds, each move's start, content start and trained end in turn, are one sorted
    list (checked); the count of bounds at or before a position says its move (a third of it) and
    where in the move it is (see _counts).
    """
    bounds = _bounds(batch)
    if (np.diff(bounds) < 0).any():  # a template that writes moves out of order: every token by the rule itself
        anchor = _anchor(batch.codes, start, end)
        turn = np.searchsorted(batch.turn_start, anchor, side="right") - 1
        inside = np.clip(turn, 0, None)
        return turn, (anchor >= batch.content_start[inside]) & (anchor < batch.trained_end[inside])
    count = _counts(bounds, batch.codes, start, end)
    return (count - 1) // 3, (count - 1) % 3 == 1


def _counts(bounds: np.ndarray, codes: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per token: the count of (sorted) bounds at or before its anchor. A token within one stretch
    between bounds has the count of its start, so only the few tokens that cross a bound are
    scanned for their first visible character."""
    count = np.searchsorted(bounds, start, side="right")
    crossing = np.flatnonzero(np.searchsorted(bounds, np.maximum(end - 1, start), side="right") != count)
    count[crossing] = np.searchsorted(bounds, _anchor(codes, start[crossing], end[crossing]), side="right")
    return count


def _anchor(codes: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Per token: its first visible character, or its start when it is all blank."""
    visible = first_visible(codes, start, end)
    return np.where(visible < end, visible, start)


def covered_spans(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of character intervals [start, end) (in text order) as disjoint sorted intervals."""
    keep = end > start
    start, end = start[keep], end[keep]
    if not start.size:
        return start, end
    if (np.diff(start) < 0).any():
        order = np.argsort(start, kind="stable")
        start, end = start[order], end[order]
    reach = np.maximum.accumulate(end)
    opens = np.flatnonzero(np.concatenate([[True], start[1:] > reach[:-1]]))
    closes = np.concatenate([opens[1:] - 1, [len(start) - 1]])
    return start[opens], reach[closes]


def check_masks(batch: Batch, trained_start: np.ndarray, trained_end: np.ndarray, rendered: list[Rendered]) -> dict[int, RecordError]:
    """Trained tokens cover each trained move and nothing of the others (edge whitespace aside)."""
    lo = first_visible(batch.codes, batch.content_start, batch.content_end)
    hi = last_visible_end(batch.codes, batch.content_start, batch.content_end)
    solid = hi > lo  # the move has a visible character
    span_start, span_end = covered_spans(trained_start, trained_end)
    # an empty interval before all text and one after it: every lookup below finds an interval
    far = len(batch.codes) + 1
    span_start, span_end = np.concatenate([[-1], span_start, [far]]), np.concatenate([[-1], span_end, [far]])
    # trained move: one covered interval holds all of [lo, hi)
    held = span_end[np.searchsorted(span_start, lo, side="right") - 1] >= hi
    # untrained move: no covered interval meets [lo, hi)
    touched = span_start[np.searchsorted(span_end, lo, side="right")] < hi
    bad = np.flatnonzero(solid & np.where(batch.trained, ~held, touched))
    failures: dict[int, RecordError] = {}
    episode_of_turn = np.searchsorted(batch.first_turn, bad, side="right") - 1
    for turn_index, episode in zip(bad.tolist(), episode_of_turn.tolist()):
        if episode in failures:
            continue
        move = turn_index - int(batch.first_turn[episode])
        role = rendered[episode].turns[move]["role"]
        if batch.trained[turn_index]:
            failures[episode] = RecordError("mask_mismatch", f"move {move} ({role}) is not fully covered by trained tokens.")
        else:
            failures[episode] = RecordError("mask_mismatch", f"move {move} ({role}) is not trained but shares tokens with a trained move (a merge across the move boundary).")
    return failures


@dataclass
class Columns:
    """A batch's tokens, episode after episode (`lengths[k]` of episode k), with every per-token
    column; the optional ones hold their default where an episode lacks them (`has_reward`, `has_weight`)."""

    episode_ids: list[str]
    lengths: np.ndarray  # int64
    ids: np.ndarray
    mask: np.ndarray
    player: np.ndarray
    reward: np.ndarray
    returns: np.ndarray | None
    move: np.ndarray  # int32: each token's move within its episode (-1 before the first)
    weight: np.ndarray
    has_reward: np.ndarray  # bool, per episode: any of its moves has a reward
    has_weight: np.ndarray

    def segments(self, keep: list[bool]) -> list[Segment]:
        """A Segment of each episode kept (views into the columns)."""
        bounds = np.concatenate([[0], np.cumsum(self.lengths)]).tolist()
        has_reward, has_weight = self.has_reward.tolist(), self.has_weight.tolist()
        out = []
        for k, episode_id in enumerate(self.episode_ids):
            if not keep[k]:
                continue
            a, b = bounds[k], bounds[k + 1]
            out.append(
                Segment(
                    episode_id, self.ids[a:b], self.mask[a:b], self.player[a:b],
                    self.reward[a:b] if has_reward[k] else None,
                    self.returns[a:b] if self.returns is not None else None,
                    self.move[a:b],
                    self.weight[a:b] if has_weight[k] else None,
                )
            )
        return out

    def trained(self) -> np.ndarray:
        """Per episode: whether any of its tokens is a training target."""
        return np.add.reduceat(self.mask, np.cumsum(self.lengths) - self.lengths) > 0 if len(self.mask) else np.zeros(len(self.lengths), bool)

    def block(self, keep: np.ndarray) -> Block:
        """The episodes kept as a block, without a Segment each."""
        tokens = np.repeat(keep, self.lengths) if not keep.all() else None
        take = (lambda values: values) if tokens is None else (lambda values: values[tokens])
        candidates = {"reward": (self.reward, self.has_reward), "weight": (self.weight, self.has_weight)}
        if self.returns is not None:  # asked for (--returns): every episode has them
            candidates["returns"] = (self.returns, np.ones(len(keep), bool))
        optional = {name: OptionalColumn(take(values), present[keep]) for name, (values, present) in candidates.items() if present[keep].any()}
        episode_ids = self.episode_ids if tokens is None else [e for e, k in zip(self.episode_ids, keep.tolist()) if k]
        return Block(episode_ids, self.lengths[keep], take(self.ids), take(self.mask), take(self.player), optional)


def _columns(episodes, rendered, lengths, ids, turn, inside, mask, batch: Batch, moves: Moves, gamma) -> Columns:
    player = np.where(turn >= 0, moves.player[inside], 1).astype(np.int8)
    reward, weight = moves.reward[inside], moves.weight[inside]
    returns = np.asarray([g for r in rendered for g in move_returns(r.turns, gamma)], dtype=np.float32)[inside] if gamma is not None else None
    move = np.where(turn >= 0, turn - np.repeat(batch.first_turn, lengths), -1).astype(np.int32)  # index within its episode
    first = np.append(batch.first_turn, len(moves.player))
    per_episode = lambda flags: np.diff(np.concatenate([[0], np.cumsum(flags)])[first]) > 0  # any of its moves
    episode_ids = [e["episode_id"] for e in episodes]
    return Columns(episode_ids, lengths.astype(np.int64), ids, mask, player, reward, returns, move, weight, per_episode(moves.has_reward), per_episode(moves.has_weight))
