"""`gamelog report`: one self-contained HTML page of plots about episodes (and packed shards).

Plots: move lengths in tokens per regime and player, moves per episode, player balance,
rewards, optimality labels, reject reasons, and with `--shards` the fill of each packed row,
the overall efficiency and trained against total tokens. Everything is inline SVG: the page
needs no network and no script to view.
"""

from __future__ import annotations

import json
from collections import Counter
from html import escape
from pathlib import Path

import numpy as np

from gamelog.report.svg import bars, histogram
from gamelog.write.atomic import output_batches, read_output, write_text

PLOTS_EPISODES = ("move-tokens", "turns-per-episode", "player-balance", "rewards", "optimality", "reject-reasons")
PLOTS_SHARDS = ("row-fill", "trained-tokens")
REPORT_BATCH = 1024  # episodes (or packed rows) read and measured at once: memory does not grow with the dataset


def episode_plots(path: Path, tokenizer) -> list[tuple[str, str]]:
    from gamelog.write.atomic import episode_files

    series: dict[str, list[int]] = {}
    tokens_by_player, moves, optimality = Counter(), Counter(), Counter()
    rewards: list[float] = []
    per_episode: list[int] = []
    for file in episode_files(path):
        for batch in output_batches(file, REPORT_BATCH, ["regime", "turns"]):
            rows = batch.to_pylist()
            turns = [(r["regime"], t) for r in rows for t in r["turns"]]
            lengths = [len(e.ids) for e in tokenizer.encode_batch_fast([t["content"] for _, t in turns], add_special_tokens=False)]
            for (regime, t), n in zip(turns, lengths):
                series.setdefault(f"{regime} / player {t['player']}", []).append(n)
                tokens_by_player[f"player {t['player']}"] += n
            moves.update(f"player {t['player']}" for _, t in turns)
            rewards += [t["reward"] for _, t in turns if t["reward"] is not None]
            optimality.update(f"P{t['player']} {t['optimality']}" for _, t in turns)
            per_episode += [len(r["turns"]) for r in rows]
    total = sum(moves.values())
    rejects = Counter()
    if (path / "rejects.parquet").exists():
        rejects.update(read_output(path / "rejects.parquet", columns=["reason"]).column("reason").to_pylist())
    return [
        ("move-tokens", histogram("move-tokens", "Move length in tokens, per regime and player", series, x_label="tokens per move", log=True)),
        ("turns-per-episode", histogram("turns-per-episode", "Moves per episode", {"episodes": per_episode}, x_label="moves")),
        ("player-balance", bars("player-balance", "Player balance: tokens per player (share of moves in the label)", {f"{k} ({moves[k] / max(1, total):.0%} of moves)": v for k, v in sorted(tokens_by_player.items())}, y_label="tokens")),
        ("rewards", histogram("rewards", "Move rewards", {"rewards": rewards}, x_label="reward")),
        ("optimality", bars("optimality", "Optimality labels", dict(sorted(optimality.items())))),
        ("reject-reasons", bars("reject-reasons", "Rejected records by reason", dict(rejects.most_common()) or {"none": 0})),
    ]


def shard_plots(path: Path) -> tuple[list[tuple[str, str]], dict]:
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    seq_len = manifest["settings"]["seq_len"]
    fills, trained, total = [], 0, 0
    for shard in manifest["shards"]:
        for batch in output_batches(path / shard["name"], REPORT_BATCH, ["input_ids", "loss_mask"]):
            ids, mask = batch.column("input_ids"), batch.column("loss_mask")
            lengths = np.diff(np.frombuffer(ids.buffers()[1], np.int32, len(ids) + 1, 4 * ids.offset))  # from the offsets (to_numpy and compute load pyarrow.compute)
            fills += (lengths / seq_len).tolist()
            total += int(lengths.sum())
            flat = mask.values
            trained += int(np.count_nonzero(np.frombuffer(flat.buffers()[1], np.uint8, len(flat), flat.offset)[mask.offsets[0].as_py() : mask.offsets[-1].as_py()]))
    plots = [
        ("row-fill", histogram("row-fill", f"Packing fill per row (seq_len {seq_len})", {"rows": fills}, x_label="tokens / seq_len")),
        ("trained-tokens", bars("trained-tokens", "Tokens trained vs total", {"trained": trained, "not trained": total - trained, "total": total}, y_label="tokens")),
    ]
    return plots, {"efficiency": manifest["efficiency"], "rows": manifest["counts"]["rows"], "tokens": total, "trained": trained}


def write_report(path: Path, *, out: Path, shards: Path | None = None, tokenizer: str | None = None) -> Path:
    from gamelog.pack.tokenizer import load_tokenizer

    if shards is not None and tokenizer is None:
        tokenizer = json.loads((shards / "manifest.json").read_text(encoding="utf-8"))["tokenizer"]["name"]
    tok = load_tokenizer(tokenizer or "builtin")
    sections = [("Episodes", episode_plots(path, tok.tokenizer), "")]
    if shards is not None:
        plots, summary = shard_plots(shards)
        line = f"{summary['rows']:,} rows, {summary['tokens']:,} tokens, {summary['trained']:,} trained; efficiency {summary['efficiency']:.2%}"
        sections.append(("Packed shards", plots, line))
    report = {}
    if (path / "report.json").exists():
        report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    write_text(out, _page(path, sections, report, tok.name))
    return out


def _page(path: Path, sections, report: dict, tokenizer: str) -> str:
    counts = "".join(f"<tr><td>{escape(k)}</td><td>{report[k]:,}</td></tr>" for k in ("records_read", "records_converted", "records_rejected", "episodes_written", "turns_written") if k in report)
    body = [f"<h1>gamelog report: {escape(str(path))}</h1>", f"<p>Token lengths counted with tokenizer <code>{escape(tokenizer)}</code>.</p>"]
    if counts:
        body.append(f"<table>{counts}</table>")
    for title, plots, line in sections:
        body.append(f"<h2>{escape(title)}</h2>")
        if line:
            body.append(f'<p class="summary">{escape(line)}</p>')
        body += [f'<figure data-plot="{name}">{svg}</figure>' for name, svg in plots]
    style = "body{font-family:sans-serif;margin:2em;max-width:1400px}figure{display:inline-block;margin:8px;border:1px solid #ddd}table td{padding:2px 10px}"
    return f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>gamelog report</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"
