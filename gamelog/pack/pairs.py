"""`--objective preference`: one row per (chosen, rejected) pair that shares a prompt.

Episodes of a group (same `group_id`, written next to each other by convert) expand to pairs by
one rule: the best-ranked episode against every episode ranked below it (a pair per worse
answer; ties make no pair). Both are rendered and encoded whole; `prompt_ids` is the common
prefix up to the first move where they differ, so `prompt_ids + chosen_ids` is exactly the
chosen episode's encoding (and likewise for rejected). A pair whose encodings already differ
inside the shared moves (a merge across the boundary) is rejected with `prompt_mismatch`. The
margin is the chosen outcome minus the rejected one. Pairs longer than seq_len follow
`--overflow`: `truncate` cuts the answers' ends, `drop` and `split` leave the pair out (counted
in pairs_dropped and tokens_dropped); `error` stops. Counts: episodes_read = episodes_packed (in a
pair) + episodes_skipped; pairs = rows + pairs_rejected + pairs_dropped.
"""

from __future__ import annotations

from itertools import groupby
from pathlib import Path

import numpy as np
import pyarrow as pa

from gamelog.errors import GamelogError, RecordError
from gamelog.pack.offsets import Encoder
from gamelog.pack.segments import ENCODE_BATCH, PackCounts
from gamelog.pack.tokens import LossPolicy, build_segments
from gamelog.records import PreferenceRow, arrow_schema
from gamelog.write.arrays import lists, numeric, scalars
from gamelog.write.shards import REJECT_SCHEMA, ShardWriter, publishing, reject_table

PAIR_SCHEMA = arrow_schema(PreferenceRow)


def pairs_of(group: list[dict]) -> list[tuple[dict, dict]]:
    ranked = sorted((e for e in group if e["rank"] is not None), key=lambda e: e["rank"])
    if len(ranked) < 2:
        return []
    best = ranked[0]
    return [(best, other) for other in ranked[1:] if other["rank"] > best["rank"]]


def first_difference(a: list[dict], b: list[dict]) -> int:
    shared = 0
    while shared < min(len(a), len(b)) and a[shared] == b[shared]:
        shared += 1
    return shared


PAIR_BATCH = ENCODE_BATCH // 2  # pairs encoded together: a batch of episodes


def encode_pairs(pairs: list[tuple[dict, dict, str]], render, encoder: Encoder, policy: LossPolicy) -> list:
    """Per pair (chosen, rejected, group): its two segments and where the prompt ends, or the
    RecordError that rejects it. The pairs' episodes are encoded and masked as one batch, each as
    it would be alone (every step is per episode)."""
    outcome: list = [None] * len(pairs)
    episodes, rendered, kept = [], [], []  # kept: (pair, the move where the answers part)
    for k, (chosen, rejected, _) in enumerate(pairs):
        split_turn = first_difference(chosen["turns"], rejected["turns"])
        if split_turn == 0:
            outcome[k] = RecordError("prompt_mismatch", "chosen and rejected share no opening move.")
            continue
        try:
            both = [render(chosen), render(rejected)]
        except RecordError as exc:
            outcome[k] = exc
            continue
        episodes += [chosen, rejected]
        rendered += both
        kept.append((k, split_turn))
    if not kept:
        return outcome
    segments, failures = build_segments(episodes, rendered, encoder.encode([r.text for r in rendered]), policy, None)
    built = iter(segments)
    placed = [None if at in failures else next(built) for at in range(len(episodes))]
    for i, (k, split_turn) in enumerate(kept):
        if 2 * i in failures or 2 * i + 1 in failures:  # the chosen answer's failure first, as its moves come first
            outcome[k] = failures.get(2 * i) or failures[2 * i + 1]
            continue
        good, worse = placed[2 * i], placed[2 * i + 1]
        cut = int(np.argmax(good.turn >= split_turn)) if (good.turn >= split_turn).any() else len(good)
        if cut == 0 or not np.array_equal(good.ids[:cut], worse.ids[:cut]):
            outcome[k] = RecordError("prompt_mismatch", f"the encodings of chosen and rejected differ inside their shared moves (a merge across the boundary at move {split_turn}).")
        else:
            outcome[k] = ((good, worse), cut)
    return outcome


def pack_pairs(episodes: Path, *, out: Path, options, tok, template: str, renderer) -> object:
    from gamelog.pack import read_windows, write_manifest

    policy = LossPolicy(thoughts=options.train_thoughts, tool_calls=options.train_tool_calls, suboptimal=True)
    encoder = Encoder(tok.tokenizer)
    counts = PackCounts()
    shards = ShardWriter(out, "part", PAIR_SCHEMA, shard_rows=options.shard_rows)
    rejects = ShardWriter(out, "rejects", REJECT_SCHEMA, shard_rows=0, single=True)
    with publishing(out, shards, rejects):
        for window in read_windows(episodes, options.window):
            counts.episodes_read += len(window)
            pairs, rows, bad = [], [], []
            for group_id, members in groupby(window, key=lambda e: e["group_id"] or e["episode_id"]):
                members = list(members)
                found = pairs_of(members) if members[0]["group_id"] else []
                used = {id(e) for pair in found for e in pair}
                counts.episodes_skipped += sum(1 for e in members if id(e) not in used)
                counts.episodes_packed += len(used)
                pairs += [(chosen, rejected, group_id) for chosen, rejected in found]
            for start in range(0, len(pairs), PAIR_BATCH):
                batch = pairs[start : start + PAIR_BATCH]
                for pair, encoded in zip(batch, encode_pairs(batch, renderer, encoder, policy)):
                    if row := _pair_row(*pair, encoded, options, counts, bad):
                        rows.append(row)
            if rows:
                shards.write(pairs_table(rows))
                counts.rows += len(rows)
            counts.pairs = counts.rows + counts.pairs_rejected + counts.pairs_dropped
            if bad:
                rejects.write(reject_table(bad))
    return write_manifest(out, shards.names, counts, options, tok, template)


def _pair_row(chosen, rejected, group_id, encoded, options, counts: PackCounts, bad: list) -> dict | None:
    if isinstance(exc := encoded, RecordError):
        counts.pairs_rejected += 1
        counts.rejected_by_reason[exc.reason] += 1
        bad.append({"reason": exc.reason, "detail": f"pair {chosen['episode_id']} / {rejected['episode_id']}: {exc.detail}", "source": chosen["source"], "location": f"group {group_id}", "raw": None})
        return None
    (good, worse), cut = encoded
    size = max(len(good), len(worse))
    tokens = len(good) + len(worse) - cut
    if size > options.seq_len:
        if options.overflow == "error":
            raise GamelogError(f"pair in group {group_id} has {size} tokens, over --seq-len {options.seq_len}; raise it or choose --overflow truncate|drop.")
        if options.overflow != "truncate" or cut >= options.seq_len:
            counts.pairs_dropped += 1
            counts.tokens_dropped += tokens
            return None
        counts.tokens_truncated += max(0, len(good) - options.seq_len) + max(0, len(worse) - options.seq_len)
        counts.episodes_truncated += 1
    limit = options.seq_len
    counts.segments += 2
    counts.tokens_total += min(len(good), limit) + min(len(worse), limit) - cut
    counts.tokens_trained += int(good.mask[cut:limit].sum() + worse.mask[cut:limit].sum())
    margin = (chosen["outcome"] or 0.0) - (rejected["outcome"] or 0.0)
    return {
        "prompt_ids": good.ids[:cut],
        "chosen_ids": good.ids[cut:limit],
        "rejected_ids": worse.ids[cut:limit],
        "chosen_mask": good.mask[cut:limit],
        "rejected_mask": worse.mask[cut:limit],
        "margin": margin,
        "group_id": group_id,
        "chosen_id": chosen["episode_id"],
        "rejected_id": rejected["episode_id"],
    }


def pairs_table(rows: list[dict]) -> pa.Table:
    """The pair rows as a table of PAIR_SCHEMA, each list column one numpy concatenation
    (`pa.Table.from_pylist` imports pandas: 0.25 s of the command)."""
    columns = []
    for field in PAIR_SCHEMA:
        values = [row[field.name] for row in rows]
        if pa.types.is_list(field.type):
            item = field.type.value_type
            sizes = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            offsets = np.zeros(len(values) + 1, dtype=np.int64)
            np.cumsum(sizes, out=offsets[1:])
            columns.append(lists(numeric(np.concatenate(values), item), offsets, field.type))
        else:
            columns.append(scalars(values, field.type))
    return pa.Table.from_arrays(columns, schema=PAIR_SCHEMA)
