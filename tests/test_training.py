"""Packed training is exact: a tiny causal transformer gives every token the same loss packed as alone.

The model is random (CPU, float64); packed rows use a block-diagonal causal mask built from
seq_lens and the restarting position_ids. Without the segment mask the losses differ, so the
test can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gamelog.convert import ConvertOptions, convert
from gamelog.hf import load
from gamelog.pack import PackOptions, pack
from gamelog.torch import IGNORE, PackedDataset, collate, row_tensors

from conftest import shared

SEQ_LEN = 1024


class TinyCausalLM(nn.Module):
    def __init__(self, vocab: int, width: int = 32, layers: int = 2, heads: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(SEQ_LEN, width)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True) for _ in range(layers))
        self.head = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """allowed[i, j]: may token i attend to token j."""
        x = self.tokens(ids) + self.positions(positions)
        for block in self.blocks:
            x = block(x[None], src_mask=~allowed)[0]
        return self.head(x)


def causal(n: int) -> torch.Tensor:
    return torch.tril(torch.ones(n, n, dtype=torch.bool))


def block_causal(seq_lens: list[int]) -> torch.Tensor:
    segment = torch.repeat_interleave(torch.arange(len(seq_lens)), torch.tensor(seq_lens))
    return causal(len(segment)) & (segment[:, None] == segment[None, :])


def token_losses(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Loss of predicting token t from position t-1, for t >= 1."""
    return nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="none")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    convert([shared("chat/glaive_toolcall_en_demo.json")], out=base / "ep", options=ConvertOptions())
    pack(base / "ep", out=base / "sh", options=PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=SEQ_LEN))
    return base / "sh"


@pytest.fixture(scope="module")
def model():
    return TinyCausalLM(vocab=32064).double().eval()


def _rows(shards, n=3):
    """Rows that pack several episodes (best-fit decreasing fills early rows with the longest)."""
    return [row for row in load(shards) if len(row["seq_lens"]) >= 3][:n]


def test_packed_losses_equal_each_episode_alone(shards, model):
    checked = 0
    with torch.no_grad():
        for row in _rows(shards):
            ids = torch.tensor(row["input_ids"])
            packed = token_losses(model(ids, torch.tensor(row["position_ids"]), block_causal(row["seq_lens"])), ids)
            start = 0
            for length in row["seq_lens"]:
                alone_ids = ids[start : start + length]
                alone = token_losses(model(alone_ids, torch.arange(length), causal(length)), alone_ids)
                inside = packed[start : start + length - 1]  # predictions of this segment's tokens 1..n-1
                assert torch.allclose(inside, alone, atol=1e-5, rtol=0), float((inside - alone).abs().max())
                start += length
                checked += 1
    assert checked > 5


def test_without_the_segment_mask_losses_differ(shards, model):
    row = next(r for r in _rows(shards) if len(r["seq_lens"]) > 1)
    ids = torch.tensor(row["input_ids"])
    positions = torch.tensor(row["position_ids"])
    with torch.no_grad():
        masked = token_losses(model(ids, positions, block_causal(row["seq_lens"])), ids)
        leaky = token_losses(model(ids, positions, causal(len(ids))), ids)
    second = row["seq_lens"][0]
    assert float((masked[second:] - leaky[second:]).abs().max()) > 1e-3


def test_dataset_and_collator_follow_the_varlen_convention(shards):
    dataset = PackedDataset(shards)
    samples = [s for _, s in zip(range(3), dataset)]
    batch = collate(samples)
    total = sum(len(s["input_ids"]) for s in samples)
    assert batch["input_ids"].shape == (1, total) and batch["position_ids"].shape == (1, total)
    cu = batch["cu_seq_lens_q"]
    assert cu[0] == 0 and cu[-1] == total and batch["max_length_q"] == int((cu[1:] - cu[:-1]).max())
    assert (batch["position_ids"][0, cu[:-1].long()] == 0).all()
    labels = batch["labels"][0]
    assert (labels[cu[:-1].long()] == IGNORE).all()
    trained = batch["loss_mask"][0].bool()
    inner = trained.clone()
    inner[cu[:-1].long()] = False
    assert torch.equal(labels[inner], batch["input_ids"][0][inner]) and (labels[~trained] == IGNORE).all()
    assert torch.equal(batch["shift_labels"][0][:-1], labels[1:])
    assert len(dataset) == len(load(shards))


def test_row_tensors_players_and_rewards(shards):
    row = _rows(shards, 1)[0]
    tensors = row_tensors(row)
    assert set(np.unique(tensors["player"].numpy())) <= {1, 2}
    assert tensors["reward"].shape == tensors["input_ids"].shape
