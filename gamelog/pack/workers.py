"""The per-batch stage of pack, run on a crew of processes (`gamelog.crew`) or in process.

A batch is an Arrow record batch of at most ENCODE_BATCH episodes. The stage renders, encodes,
masks, verifies and fits it (everything per episode), in the main process or a worker; the main
process alone reads the batches, bins the segments of a window and writes rows. Batches are cut
the same way whatever the worker count and their results are taken in input order, so the output
is byte-identical for any --workers. The main process loads the tokenizer and renderer before
the crew starts, so forked workers share them (`prime`); a spawned worker loads its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gamelog.crew import one_tokenizer_thread
from gamelog.pack.offsets import Encoder
from gamelog.pack.segments import PackCounts, encode_episodes, fit
from gamelog.pack.tokens import LossPolicy, Segment

NO_TURNS = np.zeros(0, np.int32)
OPTIONAL = ("reward", "returns", "weight")  # per-token columns a segment may lack


@dataclass(frozen=True)
class Stage:
    """What a worker needs to turn a batch of episodes into fitted segments (picklable)."""

    tokenizer: str
    template: str  # as asked (auto, jinja or a built-in): each process resolves it from its tokenizer
    objective: str
    policy: LossPolicy
    gamma: float | None
    seq_len: int
    overflow: str

    def prepare(self) -> None:
        """Load the tokenizer and renderer (a spawned worker does, before its first batch)."""
        _tools(self)

    def __call__(self, batch: pa.RecordBatch) -> Encoded:
        return run_stage(self, batch)


@dataclass
class Encoded:
    """One batch's result: its segments in episode order, its rejects, and its counts.

    Between processes the segments travel as a few flat arrays, not as thousands of small ones
    (pickling each segment's arrays cost more than the rest of the transfer); the receiving side
    gets its segments back as views into those arrays.
    """

    segments: list[Segment]
    rejects: list[dict]
    counts: PackCounts = field(default_factory=PackCounts)

    def __getstate__(self) -> dict:
        segments = self.segments
        flat = {"ids": [], "mask": [], "player": [], "reward": [], "returns": [], "weight": []}
        present = {name: np.zeros(len(segments), dtype=bool) for name in OPTIONAL}
        for k, segment in enumerate(segments):
            for name in ("ids", "mask", "player"):
                flat[name].append(getattr(segment, name))
            for name in OPTIONAL:
                values = getattr(segment, name)
                if values is not None:
                    present[name][k] = True
                    flat[name].append(values)
        joined = {name: np.concatenate(parts) if parts else None for name, parts in flat.items()}
        lengths = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
        episode_ids = [s.episode_id for s in segments]
        return {"rejects": self.rejects, "counts": self.counts, "lengths": lengths, "episode_ids": episode_ids, "present": present, "flat": joined}

    def __setstate__(self, state: dict) -> None:
        self.rejects, self.counts = state["rejects"], state["counts"]
        lengths, flat, present = state["lengths"], state["flat"], state["present"]
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        # optional columns hold only the segments that have them: their own running offsets
        cursor = {name: np.concatenate([[0], np.cumsum(np.where(present[name], lengths, 0))]).tolist() for name in OPTIONAL}
        segments = []
        for k, episode_id in enumerate(state["episode_ids"]):
            a, b = bounds[k], bounds[k + 1]
            extra = {name: flat[name][cursor[name][k] : cursor[name][k + 1]] if present[name][k] else None for name in OPTIONAL}
            segments.append(Segment(episode_id, flat["ids"][a:b], flat["mask"][a:b], flat["player"][a:b], extra["reward"], extra["returns"], NO_TURNS, extra["weight"]))
        self.segments = segments


_loaded: dict[Stage, tuple] = {}


def _tools(stage: Stage):
    """Tokenizer and renderer of a stage, loaded once per process."""
    if stage not in _loaded:
        from gamelog.pack.tokenizer import load_tokenizer

        prime(stage, load_tokenizer(stage.tokenizer))
    return _loaded[stage]


def prime(stage: Stage, tok) -> None:
    """A stage's tools from a tokenizer this process has loaded already (the main process has)."""
    from gamelog.pack import choose_template, make_renderer

    if stage not in _loaded:
        with one_tokenizer_thread():  # the encoder's start-up probe; see gamelog.crew.Crew.start
            _loaded[stage] = (Encoder(tok.tokenizer), make_renderer(tok, choose_template(tok, stage.template), stage.objective))


def run_stage(stage: Stage, batch: pa.RecordBatch) -> Encoded:
    encoder, render = _tools(stage)
    episodes = batch.to_pylist()
    if stage.objective == "pretrain":
        episodes = [e | {"regime": "pretrain"} for e in episodes]
    result = Encoded(segments=[], rejects=[])
    counts = result.counts
    counts.episodes_read = len(episodes)
    segments = encode_episodes(episodes, render=render, encoder=encoder, policy=stage.policy, gamma=stage.gamma, counts=counts, rejects=result.rejects)
    encoded, dropped = len(segments), counts.episodes_dropped
    result.segments = fit(segments, seq_len=stage.seq_len, overflow=stage.overflow, counts=counts)
    counts.episodes_packed += encoded - (counts.episodes_dropped - dropped)
    for segment in result.segments:
        segment.turn = NO_TURNS  # only the overflow split needs move indices: 4 bytes a token less to ship and hold
    return result
