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

import pyarrow as pa

from gamelog.crew import one_tokenizer_thread
from gamelog.pack.block import Block
from gamelog.pack.offsets import Encoder
from gamelog.pack.segments import PackCounts, encode_block
from gamelog.pack.tokens import LossPolicy


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
    """One batch's result: its segments in episode order (one block of flat arrays, which crosses
    between processes as a few arrays), its rejects, and its counts."""

    block: Block
    rejects: list[dict]
    counts: PackCounts = field(default_factory=PackCounts)


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
    rejects: list[dict] = []
    counts = PackCounts(episodes_read=len(episodes))
    block = encode_block(episodes, render=render, encoder=encoder, policy=stage.policy, gamma=stage.gamma, seq_len=stage.seq_len, overflow=stage.overflow, counts=counts, rejects=rejects)
    return Encoded(block, rejects, counts)
