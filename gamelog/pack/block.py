"""Segments as blocks of flat arrays: a batch's result as it crosses processes, and a window's.

A block holds a batch's segments' tokens back to back in a few numpy arrays, with each segment's
length and episode id; a window is its batches' blocks (`Blocks`), from which packed rows take
their tokens by index (`gamelog.pack.rows`). Past the stage no segment is a Python object of its
own: a batch's 512 segments cross between processes as a dozen arrays and a list of ids (a
Segment per episode took 1.1 ms to unpickle a batch, this 0.3 ms), and a table of rows is a few
gathers instead of concatenating thousands of small arrays. A batch whose episodes all fit
seq_len never has Segments at all (`gamelog.pack.tokens.Columns.block`).

    block = columns.block(keep)                # a batch's, in the stage
    block = Block.from_segments(fitted)        # a batch's, where the overflow policy split some
    window = Blocks([block, other])            # a window's, in the main process
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gamelog.pack.tokens import Segment

# Per-token float columns a segment may lack, and the value its tokens take in a row where another
# segment has the column (a row where none has it holds null).
OPTIONAL = {"reward": 0.0, "returns": 0.0, "weight": 1.0}


@dataclass
class OptionalColumn:
    """One optional column of a block: every token's value (the default where its segment lacks
    the column) and, per segment, whether it has the column."""

    values: np.ndarray  # float32, one per token
    present: np.ndarray  # bool, one per segment


@dataclass
class Block:
    """Segments back to back: `lengths[k]` tokens of segment k, after those of segments 0..k-1."""

    episode_ids: list[str]
    lengths: np.ndarray  # int64, one per segment
    ids: np.ndarray  # int32, one per token
    mask: np.ndarray  # uint8
    player: np.ndarray  # int8
    optional: dict[str, OptionalColumn]  # only the columns some segment has

    def __len__(self) -> int:
        return len(self.episode_ids)

    @property
    def tokens(self) -> int:
        return len(self.ids)

    @property
    def starts(self) -> np.ndarray:
        """Each segment's first token."""
        return np.cumsum(self.lengths) - self.lengths

    @classmethod
    def from_segments(cls, segments: list[Segment]) -> Block:
        lengths = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
        joined = lambda name, dtype: np.concatenate([getattr(s, name) for s in segments]) if segments else np.zeros(0, dtype)
        optional = {}
        for name, default in OPTIONAL.items():
            present = np.fromiter((getattr(s, name) is not None for s in segments), dtype=bool, count=len(segments))
            if present.any():
                values = [getattr(s, name) if has else np.full(len(s), default, np.float32) for s, has in zip(segments, present.tolist())]
                optional[name] = OptionalColumn(np.concatenate(values).astype(np.float32, copy=False), present)
        return cls([s.episode_id for s in segments], lengths, joined("ids", np.int32), joined("mask", np.uint8), joined("player", np.int8), optional)


class Blocks:
    """A window's blocks, in order, as one sequence of segments (index k: the k-th segment of them
    all). Packed rows take their tokens from the blocks where they are (`take`): joining a window's
    blocks first held it twice, and grew the heap at every window (a 10x pack peaked 30 MiB higher)."""

    def __init__(self, blocks: list[Block]):
        self.blocks = blocks
        self.lengths = _joined([b.lengths for b in blocks], np.int64)
        self.block_of = np.repeat(np.arange(len(blocks)), [len(b) for b in blocks])
        self.local_start = _joined([b.starts for b in blocks], np.int64)  # each segment's first token in its block
        self.episode_ids = [e for b in blocks for e in b.episode_ids]
        self.tokens = sum(b.tokens for b in blocks)

    def __len__(self) -> int:
        return len(self.episode_ids)

    def present(self, name: str) -> np.ndarray | None:
        """Per segment, whether it has the optional column; None where no segment has it."""
        if not any(name in b.optional for b in self.blocks):
            return None
        return np.concatenate([b.optional[name].present if name in b.optional else np.zeros(len(b), bool) for b in self.blocks])

    def take(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """The tokens of segments `order`, back to back in that order: ids, mask, player and the
        optional columns some segment has (their defaults where a block lacks one)."""
        lengths, owner = self.lengths[order], self.block_of[order]
        by_block = np.argsort(owner, kind="stable")  # the segments grouped by their block, in order within it
        grouped = lengths[by_block]
        ends = np.cumsum(grouped)
        source = np.repeat(self.local_start[order][by_block] - (ends - grouped), grouped)
        source += np.arange(len(source))  # each token's place in its block, grouped by block
        runs = np.searchsorted(owner[by_block], np.arange(len(self.blocks) + 1))
        bounds = np.concatenate([[0], ends])[runs]  # the tokens of block k: bounds[k]:bounds[k + 1]
        placed = np.cumsum(lengths) - lengths
        target = np.repeat(placed[by_block] - (ends - grouped), grouped)
        target += np.arange(len(source))  # each token's place in the rows, grouped by block
        back = np.empty_like(target)
        back[target] = np.arange(len(target))  # rows' order from the grouped order
        names = ["ids", "mask", "player"] + [n for n in OPTIONAL if any(n in b.optional for b in self.blocks)]
        return {name: self._gather(name, source, bounds)[back] for name in names}

    def _gather(self, name: str, source: np.ndarray, bounds: np.ndarray) -> np.ndarray:
        """One column's tokens at `source`, block by block (block k: source[bounds[k]:bounds[k + 1]])."""
        parts = []
        for k, block in enumerate(self.blocks):
            a, z = bounds[k], bounds[k + 1]
            if a == z:
                continue
            if name in ("ids", "mask", "player"):
                parts.append(getattr(block, name)[source[a:z]])
            elif name in block.optional:
                parts.append(block.optional[name].values[source[a:z]])
            else:
                parts.append(np.full(z - a, OPTIONAL[name], np.float32))
        return np.concatenate(parts)


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype)
