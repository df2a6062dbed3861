"""Train on packed shards with PyTorch (the `torch` extra): a streaming dataset and a padding-free collator.

    from torch.utils.data import DataLoader
    from gamelog.torch import PackedDataset, collate

    loader = DataLoader(PackedDataset("shards/"), batch_size=4, collate_fn=collate)
    for batch in loader:
        loss = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"]).loss

Each row yields `input_ids`, `labels` (Hugging Face convention: aligned with input_ids, the
model shifts; -100 where the token is not trained and on the first token of every segment, which
no earlier token of its segment predicts), `shift_labels` (the same, already shifted: the target
of position t), `position_ids` (restarting per segment), `cu_seqlens`, `player`, `reward` and
`loss_mask`. `collate` flattens rows into one sequence the way padding-free / flash-attention
varlen training expects: position_ids restart per segment, and `cu_seq_lens_q/k` with
`max_length_q/k` give the segment boundaries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from gamelog.read.tables import parquet_batches

IGNORE = -100


def row_tensors(row: dict) -> dict[str, torch.Tensor]:
    ids = np.asarray(row["input_ids"], dtype=np.int64)
    mask = np.asarray(row["loss_mask"], dtype=bool)
    lengths = np.asarray(row["seq_lens"], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    labels = np.where(mask, ids, IGNORE)
    labels[starts] = IGNORE
    shift = np.full_like(labels, IGNORE)
    shift[:-1] = labels[1:]
    reward = row.get("reward")
    return {
        "input_ids": torch.from_numpy(ids),
        "labels": torch.from_numpy(labels),
        "shift_labels": torch.from_numpy(shift),
        "position_ids": torch.tensor(row["position_ids"], dtype=torch.long),
        "cu_seqlens": torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
        "player": torch.tensor(row["player"], dtype=torch.int8),
        "reward": torch.tensor(reward if reward is not None else [0.0] * len(ids), dtype=torch.float32),
        "loss_mask": torch.from_numpy(mask.astype(np.uint8)),
    }


class PackedDataset(IterableDataset):
    """Rows of a packed directory, shard by shard; DataLoader workers split the shards between them."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = json.loads((self.path / "manifest.json").read_text(encoding="utf-8"))
        if manifest["objective"] == "preference":
            raise ValueError(f"{path} holds preference pairs; PackedDataset reads packed rows (objective auto, sft or pretrain).")
        self.shards = [self.path / s["name"] for s in manifest["shards"]]
        self.rows = manifest["counts"]["rows"]

    def __iter__(self):
        worker = get_worker_info()
        shards = self.shards if worker is None else self.shards[worker.id :: worker.num_workers]
        for shard in shards:
            for batch in parquet_batches(shard, 256):
                for row in batch.to_pylist():
                    yield row_tensors(row)

    def __len__(self) -> int:
        return self.rows


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | int]:
    """Flatten rows into one [1, total] sequence with cumulative segment lengths (padding-free)."""
    flat = {key: torch.cat([s[key] for s in samples])[None] for key in ("input_ids", "labels", "shift_labels", "position_ids", "player", "reward", "loss_mask")}
    offsets, cu = 0, [torch.zeros(1, dtype=torch.int32)]
    for sample in samples:
        cu.append(sample["cu_seqlens"][1:] + offsets)
        offsets += int(sample["cu_seqlens"][-1])
    cu_seqlens = torch.cat(cu)
    longest = int((cu_seqlens[1:] - cu_seqlens[:-1]).max()) if len(cu_seqlens) > 1 else 0
    return flat | {"cu_seq_lens_q": cu_seqlens, "cu_seq_lens_k": cu_seqlens, "max_length_q": longest, "max_length_k": longest}
