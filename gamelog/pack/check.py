"""Validate a packed directory: manifest, checksums, schema, row invariants, counts.

Row invariants are checked on flattened columns with numpy, CHECK_ROWS rows at a time (a shard of
50,000 rows of 4096 tokens would take gigabytes whole): lengths agree, segments sum to the row
length and fit seq_len, positions restart at 0 in every segment, players are 1 or 2, and (unless
the objective is pretrain) only player-2 tokens are trained. Each rule a shard breaks is reported
once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gamelog.read.tables import parquet_batches
from gamelog.records import PackManifest
from gamelog.write.atomic import parquet_rows

CHECK_ROWS = 256  # rows checked at once: about 256 x seq_len tokens decoded, whatever the shard's size


def validate_packed(path: Path, report) -> None:
    from gamelog.write.atomic import sha256
    from gamelog.pack.pairs import PAIR_SCHEMA
    from gamelog.pack.rows import PACKED_SCHEMA
    from gamelog.validate import Problem

    add = lambda file, rule, detail: report.add([Problem(file=file, rule=rule, detail=detail)])
    try:
        manifest = PackManifest.model_validate_json((path / "manifest.json").read_bytes())
    except ValueError as exc:
        add("manifest.json", "manifest", f"manifest.json does not parse: {str(exc)[:300]}")
        return
    listed = {s["name"]: s for s in manifest.shards}
    on_disk = sorted(p.name for p in path.glob("part-*.parquet"))
    report.files = on_disk
    for name in sorted(set(listed) - set(on_disk)):
        add(name, "missing_shard", f"{name} is listed in manifest.json but missing; re-run gamelog pack.")
    for name in sorted(set(on_disk) - set(listed)):
        add(name, "extra_shard", f"{name} is not listed in manifest.json; it belongs to another run.")
    schema = PAIR_SCHEMA if manifest.objective == "preference" else PACKED_SCHEMA
    totals = {"rows": 0, "tokens": 0, "trained": 0, "segments": 0}
    check = _check_pairs if manifest.objective == "preference" else _check_rows
    for name in sorted(set(listed) & set(on_disk)):
        file = path / name
        if sha256(file) != listed[name]["sha256"]:
            add(name, "checksum", f"{name}: sha256 differs from manifest.json (the file changed or is damaged).")
            continue
        broken: dict[str, str] = {}  # rule -> the first detail: each rule once per shard
        once = lambda _name, rule, detail: broken.setdefault(rule, detail)
        try:
            if not pq.ParquetFile(file).schema_arrow.remove_metadata().equals(schema.remove_metadata()):
                add(name, "schema", f"{name}: schema differs from the packed-row schema.")
                continue
            rows = 0
            for batch in parquet_batches(file, CHECK_ROWS):
                rows += batch.num_rows
                check(pa.Table.from_batches([batch]), name, manifest, totals, once)
        except (pa.ArrowInvalid, OSError) as exc:
            add(name, "readable", f"{name}: not readable ({exc}).")
            continue
        for rule, detail in broken.items():
            add(name, rule, detail)
        if rows != listed[name]["rows"]:
            add(name, "rows", f"{name}: {rows} rows, manifest says {listed[name]['rows']}.")
        totals["rows"] += rows
    _check_counts(path, manifest, totals, add)
    report.rows, report.tokens = totals["rows"], totals["tokens"]


def _flat(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)


def _lengths(table: pa.Table, column: str) -> np.ndarray:
    return pc.list_value_length(table.column(column)).to_numpy(zero_copy_only=False)


def _check_rows(table: pa.Table, name: str, manifest: PackManifest, totals: dict, add) -> None:
    seq_len = manifest.settings["seq_len"]
    n = _lengths(table, "input_ids")
    for column in ("loss_mask", "position_ids", "player", "reward", "returns", "weight"):
        lengths = pc.list_value_length(table.column(column)).to_numpy(zero_copy_only=False)
        present = ~np.isnan(lengths.astype(float))  # optional columns are null where a row has none
        if not np.array_equal(lengths[present].astype(np.int64), n[present]):
            add(name, "lengths", f"{name}: {column} and input_ids differ in length in some row.")
    seq = _flat(table, "seq_lens").astype(np.int64)
    seg_per_row = _lengths(table, "seq_lens")
    row_of_segment = np.repeat(np.arange(len(n)), seg_per_row)
    if not np.array_equal(np.bincount(row_of_segment, weights=seq, minlength=len(n)).astype(np.int64), n) or (n > seq_len).any():
        add(name, "seq_lens", f"{name}: some row's seq_lens do not sum to its length, or a row exceeds seq_len {seq_len}.")
    positions = _flat(table, "position_ids").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(seq)[:-1]])
    expected = np.arange(int(seq.sum())) - np.repeat(starts, seq)
    if len(positions) != len(expected) or not np.array_equal(positions, expected):
        add(name, "positions", f"{name}: position_ids do not restart at 0 at each segment.")
    player = _flat(table, "player")
    mask = _flat(table, "loss_mask")
    if not np.isin(player, (1, 2)).all():
        add(name, "player", f"{name}: player values other than 1 and 2.")
    if manifest.objective != "pretrain" and (mask.astype(bool) & (player != 2)).any():
        add(name, "mask", f"{name}: tokens of player 1 are trained, though the objective trains only player 2.")
    totals["tokens"] += int(n.sum())
    totals["trained"] += int(mask.sum())
    totals["segments"] += int(seg_per_row.sum())


def _check_pairs(table: pa.Table, name: str, manifest: PackManifest, totals: dict, add) -> None:
    seq_len = manifest.settings["seq_len"]
    prompt = _lengths(table, "prompt_ids")
    for side in ("chosen", "rejected"):
        length = _lengths(table, f"{side}_ids")
        if not np.array_equal(length, _lengths(table, f"{side}_mask")):
            add(name, "lengths", f"{name}: {side}_ids and {side}_mask differ in length in some row.")
        if (prompt + length > seq_len).any() or (length == 0).any():
            add(name, "seq_len", f"{name}: a {side} sequence is empty or longer than seq_len {seq_len}.")
        totals["tokens"] += int(length.sum())
        totals["trained"] += int(_flat(table, f"{side}_mask").sum())
    totals["tokens"] += int(prompt.sum())
    totals["segments"] += 2 * table.num_rows


def _check_counts(path: Path, manifest: PackManifest, totals: dict, add) -> None:
    c = manifest.counts
    checks = [
        (totals["rows"] == c["rows"], f"the shards hold {totals['rows']} rows, the manifest counts {c['rows']}"),
        (totals["tokens"] == c["tokens_total"], f"the shards hold {totals['tokens']} tokens, tokens_total is {c['tokens_total']}"),
        (totals["trained"] == c["tokens_trained"], f"the shards train {totals['trained']} tokens, tokens_trained is {c['tokens_trained']}"),
        (totals["segments"] == c["segments"], f"the shards hold {totals['segments']} segments, the manifest counts {c['segments']}"),
        (sum(manifest.rejected_by_reason.values()) == parquet_rows(path / "rejects.parquet"), "rejects.parquet and rejected_by_reason disagree"),
    ]
    if manifest.objective == "preference":
        checks.append((c["pairs"] == c["rows"] + c["pairs_rejected"] + c["pairs_dropped"], "pairs != rows + pairs_rejected + pairs_dropped"))
        checks.append((c["episodes_read"] == c["episodes_packed"] + c["episodes_skipped"], "episodes_read != episodes_packed + episodes_skipped"))
    else:
        accounted = c["episodes_packed"] + c["episodes_rejected"] + c["episodes_skipped"] + c["episodes_dropped"]
        checks.append((c["episodes_read"] == accounted, f"episodes_read {c['episodes_read']} != packed + rejected + skipped + dropped ({accounted})"))
    for ok, detail in checks:
        if not ok:
            add("manifest.json", "counts", detail)

