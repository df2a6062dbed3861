"""The packer on the real shared data: exact tokens, exact masks, nothing lost, efficient, loadable."""

from __future__ import annotations

import gc
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gamelog.convert import ConvertOptions, convert
from gamelog.errors import GamelogError
from gamelog.pack import PackOptions, make_renderer, pack
from gamelog.pack.segments import PackCounts
from gamelog.pack.block import Block
from gamelog.pack.offsets import Tokens
from gamelog.pack.tokenizer import load_tokenizer
from gamelog.pack.tokens import LossPolicy, Segment, build_segments
from gamelog.pack.workers import Encoded
from gamelog.validate import validate

from conftest import ROOT, SHARED, arrow_held_while, shared

TOKENIZERS = {"phi-3-mini": "tokenizers/phi-3-mini", "phi-2": "tokenizers/phi-2"}
FAMILIES = ("chat", "instruct", "preference")


@pytest.fixture(scope="session")
def episodes(tmp_path_factory) -> dict[str, Path]:
    """Episodes of every shared chat, instruct and preference file (one directory per family)."""
    base = tmp_path_factory.mktemp("episodes")
    for family in FAMILIES:
        convert([shared(family)], out=base / family, options=ConvertOptions())
    return {family: base / family for family in FAMILIES}


@pytest.fixture(scope="session")
def packed(episodes, tmp_path_factory):
    """(tokenizer, family) -> (shard dir, manifest); preference branches all kept so every episode is checked."""
    base = tmp_path_factory.mktemp("packed")
    done = {}
    for name, relative in TOKENIZERS.items():
        for family in FAMILIES:
            out = base / f"{name}-{family}"
            options = PackOptions(tokenizer=shared(relative), seq_len=4096, keep_suboptimal=True)
            done[name, family] = (out, pack(episodes[family], out=out, options=options))
    return done


def _episode_rows(directory: Path) -> dict[str, dict]:
    return {r["episode_id"]: r for f in sorted(directory.glob("episodes-*.parquet")) for r in pq.read_table(f).to_pylist()}


def _segments(directory: Path) -> dict[str, dict[str, np.ndarray]]:
    """Episode id -> its tokens, mask and player, re-joined from split parts."""
    parts = defaultdict(list)
    for file in sorted(directory.glob("part-*.parquet")):
        for row in pq.read_table(file).to_pylist():
            at = 0
            for episode_id, length in zip(row["episode_ids"], row["seq_lens"]):
                base, _, k = episode_id.partition(":")
                sl = slice(at, at + length)
                parts[base].append((int(k or 0), row["input_ids"][sl], row["loss_mask"][sl], row["player"][sl]))
                at += length
    joined = {}
    for episode_id, pieces in parts.items():
        pieces.sort()
        joined[episode_id] = {key: np.concatenate([p[i] for p in pieces]) for i, key in enumerate(("ids", "mask", "player"), start=1)}
    return joined


@pytest.mark.parametrize("tokenizer", sorted(TOKENIZERS))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_packed_segment_is_the_exact_encoding(tokenizer, family, episodes, packed):
    out, manifest = packed[tokenizer, family]
    assert manifest.counts["episodes_rejected"] == 0 and manifest.counts["tokens_truncated"] == 0
    tok = load_tokenizer(shared(TOKENIZERS[tokenizer]))
    render = make_renderer(tok, manifest.template, "auto")
    rows = _episode_rows(episodes[family])
    segments = _segments(out)
    assert manifest.counts["episodes_packed"] == len(segments) == len(rows) - manifest.counts["episodes_skipped"]
    ids = sorted(segments)
    texts = [render(rows[i]).text for i in ids]
    for episode_id, text in zip(ids, texts):
        expected = tok.tokenizer.encode(text, add_special_tokens=False).ids
        got = segments[episode_id]["ids"]
        if len(got) != len(expected):  # split episodes may leave untrained parts out, counted as dropped
            assert manifest.counts["tokens_dropped"] > 0
            continue
        assert got.tolist() == expected, episode_id


@pytest.mark.parametrize("tokenizer", sorted(TOKENIZERS))
@pytest.mark.parametrize("family", ("chat", "instruct"))
def test_trained_tokens_decode_to_the_player2_moves(tokenizer, family, episodes, packed):
    out, manifest = packed[tokenizer, family]
    tok = load_tokenizer(shared(TOKENIZERS[tokenizer]))
    render = make_renderer(tok, manifest.template, "auto")
    rows = _episode_rows(episodes[family])
    squash = lambda text: "".join(text.split())
    for episode_id, segment in _segments(out).items():
        rendered = render(rows[episode_id])
        if len(segment["ids"]) != len(tok.tokenizer.encode(rendered.text, add_special_tokens=False).ids):
            continue  # a split episode with a part left out
        decoded = tok.tokenizer.decode(segment["ids"][segment["mask"] == 1].tolist(), skip_special_tokens=False)
        expected = "".join(rendered.text[c[0] : end] for t, c, end in zip(rendered.turns, rendered.content, rendered.trained_end) if t["player"] == 2)
        assert squash(decoded) == squash(expected), episode_id
        assert all(rendered.text[c[0]:c[1]] == t["content"] for t, c in zip(rendered.turns, rendered.content))
        assert set(segment["player"][segment["mask"] == 1].tolist()) <= {2}


def test_sft_efficiency_at_4096_beats_trl_bfd_without_truncation(packed):
    for tokenizer in TOKENIZERS:
        counts = [packed[tokenizer, f][1] for f in ("chat", "instruct")]
        for manifest in counts:
            assert manifest.counts["tokens_truncated"] == 0
        assert all(m.efficiency >= 0.991 for m in counts), [m.efficiency for m in counts]


@pytest.mark.parametrize("overflow", ["split", "truncate", "drop"])
def test_every_token_is_packed_or_counted(overflow, episodes, tmp_path):
    tok_dir = shared(TOKENIZERS["phi-2"])
    manifest = pack(episodes["chat"], out=tmp_path / overflow, options=PackOptions(tokenizer=tok_dir, seq_len=256, overflow=overflow))
    c = manifest.counts
    tok = load_tokenizer(tok_dir)
    render = make_renderer(tok, manifest.template, "auto")
    rows = list(_episode_rows(episodes["chat"]).values())
    encoded = sum(len(e.ids) for e in tok.tokenizer.encode_batch([render(r).text for r in rows], add_special_tokens=False))
    assert c["tokens_total"] + c["tokens_dropped"] + c["tokens_truncated"] == encoded
    assert c["episodes_read"] == c["episodes_packed"] + c["episodes_rejected"] + c["episodes_skipped"] + c["episodes_dropped"]
    assert {"split": c["tokens_truncated"] == 0 and c["episodes_split"] > 0, "truncate": c["tokens_truncated"] > 0, "drop": c["episodes_dropped"] > 0}[overflow]
    assert validate(tmp_path / overflow).valid


def test_overflow_error_stops_with_a_clear_message(episodes, tmp_path):
    with pytest.raises(GamelogError, match="over --seq-len 64"):
        pack(episodes["chat"], out=tmp_path / "e", options=PackOptions(tokenizer=shared("tokenizers/phi-2"), seq_len=64, overflow="error"))


def test_preference_pairs_share_the_prompt_exactly(episodes, tmp_path):
    tok_dir = shared(TOKENIZERS["phi-3-mini"])
    manifest = pack(episodes["preference"], out=tmp_path / "pairs", options=PackOptions(tokenizer=tok_dir, objective="preference"))
    tok = load_tokenizer(tok_dir)
    render = make_renderer(tok, manifest.template, "sft")
    rows = _episode_rows(episodes["preference"])
    table = pq.read_table(tmp_path / "pairs" / "part-00000.parquet").to_pylist()
    assert len(table) == manifest.counts["rows"] > 2000
    for pair in table[::25]:
        for side, key in (("chosen", "chosen_id"), ("rejected", "rejected_id")):
            full = tok.tokenizer.encode(render(rows[pair[key]]).text, add_special_tokens=False).ids
            assert pair["prompt_ids"] + pair[f"{side}_ids"] == full
        assert rows[pair["chosen_id"]]["rank"] < rows[pair["rejected_id"]]["rank"]
        assert pair["margin"] == pytest.approx((rows[pair["chosen_id"]]["outcome"] or 0) - (rows[pair["rejected_id"]]["outcome"] or 0))
    assert validate(tmp_path / "pairs").valid


def test_pairs_encoded_together_are_kept_or_rejected_one_by_one(tmp_path):
    """Pairs are encoded a batch at a time; a pair whose answers share no opening move is rejected
    alone, in its place, and the pairs around it are packed as they would be alone."""
    from gamelog.write.shards import episode_table

    good = lambda k: {"chosen": f"\n\nHuman: question {k}?\n\nAssistant: a fine answer {k}.", "rejected": f"\n\nHuman: question {k}?\n\nAssistant: no."}
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(good(k)) + "\n" for k in range(2)))
    convert([str(tmp_path / "pairs.jsonl")], out=tmp_path / "converted", options=ConvertOptions())
    rows = [r | {"meta": {}} for r in pq.read_table(next((tmp_path / "converted").glob("episodes-*.parquet"))).to_pylist()]
    # a group whose answers part at their first move (convert never writes one; a hand-made file may)
    apart = [dict(rows[0], episode_id="apart-0", group_id="apart"), dict(rows[1], episode_id="apart-1", group_id="apart", turns=[dict(rows[1]["turns"][0], content="another question"), *rows[1]["turns"][1:]])]
    (tmp_path / "episodes").mkdir()
    pq.write_table(episode_table(rows[:2] + apart + rows[2:]), tmp_path / "episodes" / "episodes-00000.parquet")
    tok_dir = shared(TOKENIZERS["phi-3-mini"])
    manifest = pack(tmp_path / "episodes", out=tmp_path / "out", options=PackOptions(tokenizer=tok_dir, objective="preference"))
    counts = manifest.counts
    assert (counts["rows"], counts["pairs_rejected"], counts["pairs"]) == (2, 1, 3)
    rejects = pq.read_table(tmp_path / "out" / "rejects.parquet").to_pylist()
    assert [(r["reason"], r["location"]) for r in rejects] == [("prompt_mismatch", "group apart")]
    tok = load_tokenizer(tok_dir)
    render = make_renderer(tok, manifest.template, "sft")
    by_id = {r["episode_id"]: r for r in rows}
    packed = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    assert [p["group_id"] for p in packed] == [rows[0]["group_id"], rows[2]["group_id"]]
    for pair in packed:
        for side in ("chosen", "rejected"):
            assert pair["prompt_ids"] + pair[f"{side}_ids"] == tok.tokenizer.encode(render(by_id[pair[f"{side}_id"]]).text, add_special_tokens=False).ids


def test_pair_tables_built_from_buffers_are_arrows_own():
    """pairs_table builds its list columns from one numpy concatenation each: the same table as
    Arrow's own from_pylist (which imports pandas), empty answers and other text alike."""
    import pyarrow as pa

    from gamelog.pack.pairs import PAIR_SCHEMA, pairs_table

    def row(k, prompt, chosen, rejected, margin):
        ids = lambda n: np.arange(k, k + n, dtype=np.int32)
        masks = lambda n: (np.arange(n) % 2).astype(np.uint8)
        return {"prompt_ids": ids(prompt), "chosen_ids": ids(chosen), "rejected_ids": ids(rejected), "chosen_mask": masks(chosen), "rejected_mask": masks(rejected), "margin": margin, "group_id": f"g{k} 日本", "chosen_id": f"c{k}", "rejected_id": f"r{k}"}

    rows = [row(0, 3, 5, 2, 1.0), row(1, 1, 0, 4, -0.5), row(2, 7, 3, 0, 0.0)]
    theirs = pa.Table.from_pylist([{k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in r.items()} for r in rows], schema=PAIR_SCHEMA)
    assert pairs_table(rows).equals(theirs)


def test_auto_objective_trains_only_the_optimal_branch(episodes, tmp_path):
    manifest = pack(episodes["preference"], out=tmp_path / "auto", options=PackOptions(tokenizer=shared("tokenizers/phi-2")))
    rows = _episode_rows(episodes["preference"])
    packed_ids = set(_segments(tmp_path / "auto"))
    assert packed_ids and all(any(t["optimality"] == "optimal" for t in rows[i]["turns"]) for i in packed_ids)
    assert manifest.counts["episodes_skipped"] == len(rows) - len(packed_ids) - manifest.counts["episodes_dropped"]


def test_returns_discount_player2_rewards(tmp_path):
    steps = tmp_path / "steps.jsonl"
    steps.write_text(json.dumps({"prompt": "2+2?", "completions": ["Two plus two.", "Is four."], "labels": [True, False]}) + "\n")
    convert([str(steps)], out=tmp_path / "ep", options=ConvertOptions())
    pack(tmp_path / "ep", out=tmp_path / "sh", options=PackOptions(returns=0.5, seq_len=256))
    row = pq.read_table(tmp_path / "sh" / "part-00000.parquet").to_pylist()[0]
    by_player = {(p, r, g) for p, r, g in zip(row["player"], row["reward"], row["returns"])}
    # step 1: +1 + 0.5 * (-1) = 0.5; step 2: -1; the user move sees the value of step 1
    assert {(2, 1.0, 0.5), (2, -1.0, -1.0), (1, 0.0, 0.5)} <= by_player


def test_reruns_are_byte_identical_and_validate_catches_damage(episodes, tmp_path):
    options = PackOptions(tokenizer=shared("tokenizers/phi-2"), seq_len=1024, shard_rows=200)
    first = pack(episodes["instruct"], out=tmp_path / "a", options=options)
    second = pack(episodes["instruct"], out=tmp_path / "b", options=options)
    assert [s["sha256"] for s in first.shards] == [s["sha256"] for s in second.shards] and len(first.shards) > 1
    assert validate(tmp_path / "a").valid
    shard = tmp_path / "a" / first.shards[0]["name"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (tmp_path / "a" / first.shards[1]["name"]).unlink()
    rules = {p.rule for p in validate(tmp_path / "a").listed}
    assert {"checksum", "missing_shard", "counts"} <= rules


def test_output_is_the_same_bytes_for_any_worker_count(episodes, tmp_path):
    """Batches are cut and gathered in input order, so workers change the speed, never the bytes."""
    outputs = {}
    for workers in (1, 2, 3):
        options = PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=2048, window=600, shard_rows=60, workers=workers, keep_suboptimal=True)
        manifest = pack(episodes["chat"], out=tmp_path / str(workers), options=options)
        outputs[workers] = {f.name: f.read_bytes() for f in sorted((tmp_path / str(workers)).iterdir())}
        assert manifest.counts["episodes_read"] > 2 * 600 and len(manifest.shards) > 1  # several windows, several shards
    assert outputs[1] == outputs[2] == outputs[3]
    assert validate(tmp_path / "2").valid


def test_the_last_batches_are_read_in_parts_that_the_plan_counts(episodes, monkeypatch):
    """The processes share out the end of the input in small batches: the last FINER_BATCHES batches
    come in parts of FINER_ROWS episodes, the plan counts them exactly (the crew keeps the last
    batches in the main process by that count), and every episode comes once, in order."""
    import gamelog.pack as packing
    from gamelog.pack import FINER_ROWS, batch_plan, episode_batches, finer_at_end

    monkeypatch.setattr(packing, "FINER_BATCHES", 2)  # the chat episodes are 3 batches: the first stays whole
    plan = batch_plan(episodes["chat"])
    whole = list(episode_batches(episodes["chat"]))
    parts = list(finer_at_end(iter(whole), plan))
    assert plan.sizes == [b.num_rows for b in whole] and plan.count == len(whole) > 2
    assert len(parts) == plan.read > len(whole)
    kept = len(whole) - 2
    assert plan.cut_from == kept
    assert [b.num_rows for b in parts[:kept]] == [b.num_rows for b in whole[:kept]]
    assert max(b.num_rows for b in parts[kept:]) <= FINER_ROWS
    ids = lambda batches: [i for b in batches for i in b.column("episode_id").to_pylist()]
    assert ids(parts) == ids(whole)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_end_by_themselves_however_they_start(episodes, monkeypatch, start):
    """A forked worker inherits this process's ends of its own and the other workers' pipes and must
    close them: otherwise it never sees its pipe close, and is killed after a wait (exit code -9)."""
    from gamelog import crew as crews
    from gamelog.pack import episode_batches, stage_for
    from gamelog.pack.workers import prime

    monkeypatch.setattr(crews, "START", start)
    stage = stage_for(PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=2048), "auto")
    with crews.Crew(stage, 3) as crew:
        prime(stage, load_tokenizer(stage.tokenizer))
        read = sum(r.counts.episodes_read for r in crew.run(episode_batches(episodes["chat"])))
    assert read == sum(pq.ParquetFile(f).metadata.num_rows for f in episodes["chat"].glob("episodes-*.parquet"))
    assert [m.process.exitcode for m in crew.members] == [0, 0]


def _collector_threshold(_batch) -> tuple[int, int]:
    time.sleep(0.05)  # long enough that the worker, not only this process, runs batches
    return os.getpid(), gc.get_threshold()[0]


def test_the_cyclic_collector_runs_less_often_while_a_crew_runs_and_as_before_after():
    """Batches make and drop many objects in no cycle: while a crew runs, the collector runs every
    COLLECT_EVERY new objects, in this process and in its workers; the caller's setting comes back."""
    from gamelog import crew as crews

    before = gc.get_threshold()
    with crews.Crew(_collector_threshold, 2) as crew:
        seen = list(crew.run(range(20), 20))
    assert {threshold for _, threshold in seen} == {crews.COLLECT_EVERY}
    assert len({pid for pid, _ in seen}) == 2
    assert gc.get_threshold() == before


def _unpicklable_in_a_worker(parent: int):
    """A lock (which does not pickle) where a worker runs the batch; the pid where this process does."""
    time.sleep(0.05)  # long enough that the worker, not only this process, runs batches
    return os.getpid() if os.getpid() == parent else threading.Lock()


def test_a_worker_result_that_does_not_pickle_stops_the_run_with_a_clear_error():
    """The worker pickles its results itself: one that does not pickle comes back as an error that
    names it, instead of a worker that stops answering."""
    from gamelog import crew as crews

    def waited_too_long(*_):
        raise TimeoutError("the run waited for a result that never came")

    before = signal.signal(signal.SIGALRM, waited_too_long)
    signal.alarm(30)  # a run that waits for ever fails here instead of hanging the suite
    try:
        with crews.Crew(_unpicklable_in_a_worker, 2) as crew:
            with pytest.raises(GamelogError, match=r"a worker could not send its result back \(TypeError: .*lock.*\); re-run with --workers 1"):
                list(crew.run([os.getpid()] * 20, 20))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


def _page_faults_of_big_buffers(_batch) -> tuple[int, int]:
    """The page faults of making and dropping 64 MiB of arrays, as a batch's stage does."""
    time.sleep(0.05)  # long enough that the worker, not only this process, runs batches
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    arrays = [np.ones(1 << 19) for _ in range(16)]  # 16 arrays of 4 MiB
    del arrays
    return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings; other allocators are left alone")
def test_freed_buffers_are_reused_by_the_next_batch_instead_of_faulted_in_anew():
    """While a crew runs, the big buffers a batch frees stay in each process's heap, so the next
    batch does not fault their pages in again (by default glibc returns them to the system: thousands of
    faults a batch here)."""
    from gamelog import crew as crews

    with crews.Crew(_page_faults_of_big_buffers, 2) as crew:
        seen = list(crew.run(range(8), 8))
    assert len({pid for pid, _ in seen}) == 2
    later = [faults for k, (pid, faults) in enumerate(seen) if pid in {p for p, _ in seen[:k]}]  # each process's second batch on
    assert len(later) >= 4 and max(later) < 1000, seen


def test_a_script_without_a_main_guard_can_pack_with_workers(episodes, tmp_path):
    """Workers start without the caller's main module, so a plain script runs once, not once per worker."""
    script = tmp_path / "plain.py"
    script.write_text(
        "from pathlib import Path\n"
        "from gamelog.pack import PackOptions, pack\n"
        f"manifest = pack({str(episodes['chat'])!r}, out=Path({str(tmp_path / 'out')!r}), options=PackOptions(tokenizer={shared('tokenizers/phi-3-mini')!r}, workers=2))\n"
        "print('packed', manifest.counts['episodes_packed'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("packed") == 1 and validate(tmp_path / "out").valid


def test_rewards_and_returns_are_the_same_bytes_for_any_worker_count(episodes, tmp_path):
    """Preference episodes carry per-move rewards: with --returns, every optional column crosses the process boundary."""
    outputs = {}
    for workers in (1, 2):
        options = PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=2048, window=1024, workers=workers, keep_suboptimal=True, returns=0.9)
        manifest = pack(episodes["preference"], out=tmp_path / str(workers), options=options)
        outputs[workers] = {f.name: f.read_bytes() for f in sorted((tmp_path / str(workers)).iterdir())}
    table = pq.read_table(tmp_path / "2" / manifest.shards[0]["name"], columns=["reward", "returns"])
    assert table.column("reward").null_count < table.num_rows and table.column("returns").null_count == 0
    assert outputs[1] == outputs[2]


def test_a_batch_result_crosses_processes_with_each_segment_as_it_was():
    """Segments travel as one block of flat arrays; packed one to a row, each row holds its segment's
    own values, its defaults where it lacked an optional column, and null where no segment had it."""
    from gamelog.pack.block import OPTIONAL, Block, Blocks
    from gamelog.pack.rows import rows_table

    rng = np.random.default_rng(7)
    segments = []
    for k in range(6):
        n = int(rng.integers(1, 40))
        optional = lambda present: rng.random(n).astype(np.float32) if present else None
        segments.append(Segment(f"e{k}", rng.integers(0, 1000, n).astype(np.int32), rng.integers(0, 2, n).astype(np.uint8), rng.integers(1, 3, n).astype(np.int8), optional(k % 2 == 0), None, weight=optional(k in (1, 4))))
    counts = PackCounts(episodes_read=7, episodes_rejected=1)
    back = pickle.loads(pickle.dumps(Encoded(Block.from_segments(segments), [{"reason": "x"}], counts)))
    assert back.counts == counts and back.rejects == [{"reason": "x"}]
    rows = [[k] for k in range(len(segments))]
    table = rows_table(Blocks([back.block, Block.from_segments([])]), rows, with_returns=False).to_pylist()
    for sent, got in zip(segments, table):
        assert got["episode_ids"] == [sent.episode_id] and got["seq_lens"] == [len(sent)]
        assert got["input_ids"] == sent.ids.tolist() and got["loss_mask"] == sent.mask.tolist() and got["player"] == sent.player.tolist()
        assert got["returns"] is None
        for name in ("reward", "weight"):
            values = getattr(sent, name)
            assert got[name] == (None if values is None else values.tolist()), (sent.episode_id, name)
    two = rows_table(Blocks([back.block]), [[0, 1], [2, 3], [4, 5]], with_returns=False).to_pylist()  # a row with one segment that has it: the other's default
    assert two[0]["weight"] == [OPTIONAL["weight"]] * len(segments[0]) + segments[1].weight.tolist()
    assert two[1]["weight"] is None


@pytest.mark.parametrize("tokenizer", sorted(TOKENIZERS))
def test_tokens_are_placed_by_their_first_visible_character(tokenizer, episodes):
    """Placing tokens by counting the sorted move bounds, scanning only the tokens that cross one,
    gives what scanning every token for its first visible character gives."""
    from gamelog.pack import choose_template, episode_batches
    from gamelog.pack.offsets import Encoder
    from gamelog.pack.tokens import _place, first_visible, lay_out, moves_of

    tok = load_tokenizer(shared(TOKENIZERS[tokenizer]))
    render, encoder = make_renderer(tok, choose_template(tok, "auto"), "auto"), Encoder(tok.tokenizer)
    rows = next(episode_batches(episodes["chat"])).to_pylist()
    rendered = [render(row) for row in rows]
    tokens = encoder.encode([r.text for r in rendered])
    batch = lay_out(rows, rendered, moves_of(rows, rendered, LossPolicy()))
    shift = np.repeat(batch.text_base, tokens.lengths)
    start, end = tokens.offsets[:, 0] + shift, tokens.offsets[:, 1] + shift
    visible = first_visible(batch.codes, start, end)
    anchor = np.where(visible < end, visible, start)
    assert (anchor != start).any()  # some tokens start blank, so the rule matters
    for out_of_order in (False, True):
        if out_of_order:  # a trained span past the next move's start: the bounds are not sorted
            batch.trained_end[0] = batch.turn_start[2]
        turn = np.searchsorted(batch.turn_start, anchor, side="right") - 1
        inside = np.clip(turn, 0, None)
        in_span = (anchor >= batch.content_start[inside]) & (anchor < batch.trained_end[inside])
        placed, placed_in_span = _place(batch, start, end)
        assert np.array_equal(placed, turn) and np.array_equal(placed_in_span, in_span)


def _by_pieces_and_by_tokens(tok, template: str, rows: list[dict]):
    """A batch built twice: its tokens placed a piece at a time (how pack places them) and each by its own offsets."""
    from gamelog.pack.offsets import Encoder

    render, encoder = make_renderer(tok, template, "auto"), Encoder(tok.tokenizer)
    rendered = [render(row) for row in rows]
    texts = [r.text for r in rendered]
    cut = encoder.encode(texts)
    assert cut.cut is not None
    each = Tokens(cut.lengths, cut.ids, cut.offsets.copy())  # the same tokens, without their cut
    return build_segments(rows, rendered, encoder.encode(texts), LossPolicy(), 0.9), build_segments(rows, rendered, each, LossPolicy(), 0.9), encoder


@pytest.mark.parametrize(("tokenizer", "template", "inside"), [("phi-3-mini", "jinja", False), ("phi-3-mini", "chatml", True), ("phi-3-mini", "llama-3", True), ("phi-2", "chatml", True)])
def test_tokens_placed_a_piece_at_a_time_are_where_their_own_offsets_place_them(tokenizer, template, inside, episodes, monkeypatch):
    """Placing the tokens of a piece (the text between added tokens) by the piece's start, and one by
    one only where a move bound lies inside the piece, gives the same segments as placing every token
    by its offsets: with Phi-3's own template no piece holds a bound, with ChatML's and Llama 3's most do."""
    from gamelog.pack import choose_template, episode_batches

    tok = load_tokenizer(shared(TOKENIZERS[tokenizer]))
    rows = [row for family in ("chat", "instruct") for row in next(episode_batches(episodes[family])).to_pylist()]
    template = choose_template(tok, template)
    (pieces, failed), (tokens, failed_too), encoder = _by_pieces_and_by_tokens(tok, template, rows)
    assert len(pieces) == len(tokens) > 0 and failed.keys() == failed_too.keys()
    for a, b in zip(pieces, tokens):
        assert a.episode_id == b.episode_id
        for name in ("ids", "mask", "player", "reward", "returns", "turn", "weight"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or np.array_equal(x, y), (a.episode_id, name)
    # which pieces hold a bound: none with Phi-3's template, so no offsets are worked out at all
    asked: list[int] = []
    derive = Tokens.derive
    monkeypatch.setattr(Tokens, "derive", lambda self, tokens=None: asked.append(len(tokens)) or derive(self, tokens))
    render = make_renderer(tok, template, "auto")
    rendered = [render(row) for row in rows]
    batch_tokens = encoder.encode([r.text for r in rendered])
    build_segments(rows, rendered, batch_tokens, LossPolicy(), 0.9)
    assert bool(asked) == inside and all(asked)  # offsets of the tokens of pieces that hold a bound, and only where some do
    assert batch_tokens.cut is not None and batch_tokens.given is None  # the offsets of the whole batch were never worked out


def test_a_piece_whose_spelling_does_not_check_out_sends_the_batch_to_the_tokenizer(episodes, monkeypatch):
    """Where a piece that holds a move bound needs its tokens' offsets and their spelling does not
    check out, the tokenizer's own encodings replace the batch: the same segments, the tokenizer asked once."""
    from gamelog.pack import episode_batches
    from gamelog.pack.offsets import Encoder, Spelling

    tok = load_tokenizer(shared("tokenizers/phi-3-mini"))
    rows = next(episode_batches(episodes["chat"])).to_pylist()
    (right, _), _, _ = _by_pieces_and_by_tokens(tok, "chatml", rows)
    monkeypatch.setattr(Spelling, "_spells", lambda self, *args: False)
    render, encoder = make_renderer(tok, "chatml", "auto"), Encoder(tok.tokenizer)
    rendered = [render(row) for row in rows]
    tokens = encoder.encode([r.text for r in rendered])
    assert tokens.cut is not None and encoder.asked == 0
    asked, _ = build_segments(rows, rendered, tokens, LossPolicy(), 0.9)
    assert encoder.asked == 1 and tokens.cut is None  # the batch is the tokenizer's now
    assert [s.episode_id for s in asked] == [s.episode_id for s in right]
    assert all(np.array_equal(a.ids, b.ids) and np.array_equal(a.mask, b.mask) and np.array_equal(a.player, b.player) for a, b in zip(asked, right))


def test_the_mask_check_rejects_a_hole_and_a_merge_across_moves(episodes):
    """Offsets that leave a trained move partly uncovered, or let a trained token reach into the next move, are caught."""
    tok = load_tokenizer(shared("tokenizers/phi-3-mini"))
    render = make_renderer(tok, "jinja", "auto")
    rows = [row for f in sorted(Path(episodes["chat"]).glob("episodes-*.parquet")) for row in pq.read_table(f).to_pylist()]
    episode = next(r for r in rows if [t["player"] for t in r["turns"]][:3] == [1, 2, 1])
    rendered = render(episode)
    policy = LossPolicy()
    tokens = Tokens.from_encodings(tok.tokenizer.encode_batch([rendered.text], add_special_tokens=False))
    segments, failures = build_segments([episode], [rendered], tokens, policy, None)
    assert not failures and segments[0].mask.any()
    answer = rendered.turns.index(next(t for t in rendered.turns if t["player"] == 2))
    trained = np.flatnonzero(segments[0].mask)
    inside = [k for k in trained if segments[0].turn[k] == answer]

    hole = Tokens(tokens.lengths, tokens.ids, tokens.offsets.copy())
    middle = inside[len(inside) // 2]
    hole.offsets[middle, 1] = hole.offsets[middle, 0]  # that token now covers no character
    _, failures = build_segments([episode], [rendered], hole, policy, None)
    assert failures[0].reason == "mask_mismatch" and "not fully covered" in failures[0].detail

    merge = Tokens(tokens.lengths, tokens.ids, tokens.offsets.copy())
    next_content = rendered.content[answer + 1]
    merge.offsets[inside[-1], 1] = next_content[0] + 1  # the last trained token runs into the next move's text
    _, failures = build_segments([episode], [rendered], merge, policy, None)
    assert failures[0].reason == "mask_mismatch" and "shares tokens with a trained move" in failures[0].detail


def test_a_smaller_window_bounds_memory_at_a_small_cost_in_fill(episodes, tmp_path):
    whole = pack(episodes["chat"], out=tmp_path / "whole", options=PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=2048))
    windowed = pack(episodes["chat"], out=tmp_path / "windowed", options=PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=2048, window=500))
    assert windowed.counts["tokens_total"] == whole.counts["tokens_total"] and windowed.counts["segments"] == whole.counts["segments"]
    windows = -(-whole.counts["episodes_read"] // 500)
    assert whole.counts["rows"] <= windowed.counts["rows"] <= whole.counts["rows"] + windows  # at most one part-filled row more per window


def test_shards_load_in_datasets_polars_duckdb(packed):
    import datasets
    import duckdb
    import polars as pl

    out, manifest = packed["phi-3-mini", "chat"]
    files = sorted(str(p) for p in out.glob("part-*.parquet"))
    assert datasets.load_dataset("parquet", data_files=files, split="train").num_rows == manifest.counts["rows"]
    assert pl.read_parquet(files).select(pl.col("input_ids").list.len().sum()).item() == manifest.counts["tokens_total"]
    glob = str(out / "part-*.parquet")
    assert duckdb.sql(f"select sum(len(input_ids)) from read_parquet('{glob}')").fetchall()[0][0] == manifest.counts["tokens_total"]


def test_builtin_templates_and_tokenizers(episodes, tmp_path):
    for template in ("chatml", "llama-3", "phi-3", "mistral", "gemma", "plain"):
        manifest = pack(episodes["chat"], out=tmp_path / template, options=PackOptions(tokenizer="builtin", template=template, seq_len=8192))
        assert manifest.counts["episodes_rejected"] == 0, (template, manifest.rejected_by_reason)
        assert validate(tmp_path / template).valid
    gpt2 = pack(episodes["instruct"], out=tmp_path / "gpt2", options=PackOptions(tokenizer=shared("tokenizers/gpt2"), seq_len=1024))
    assert gpt2.template == "plain" and gpt2.counts["episodes_rejected"] == 0


def test_qwen_chat_template_with_tools(episodes, tmp_path):
    tok_dir = tmp_path / "qwen"
    tok_dir.mkdir()
    (tok_dir / "tokenizer_config.json").write_text((SHARED / "tokenizers/chat_templates/qwen2.5_tokenizer_config.json").read_text())
    (tok_dir / "tokenizer.json").write_text((SHARED / "tokenizers/phi-2/tokenizer.json").read_text())
    manifest = pack(episodes["chat"], out=tmp_path / "q", options=PackOptions(tokenizer=str(tok_dir), seq_len=8192))
    assert manifest.template == "jinja"
    assert manifest.counts["episodes_packed"] > 0.9 * manifest.counts["episodes_read"], manifest.rejected_by_reason
    assert validate(tmp_path / "q").valid


def test_sandbox_refuses_templates_that_reach_for_internals(episodes, tmp_path):
    tok_dir = tmp_path / "evil"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text((SHARED / "tokenizers/phi-2/tokenizer.json").read_text())
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages.__class__.__mro__[1].__subclasses__() }}"}))
    with pytest.raises(GamelogError, match="sandbox"):
        pack(episodes["instruct"], out=tmp_path / "e", options=PackOptions(tokenizer=str(tok_dir)))


def test_a_template_that_does_not_parse_stops_the_run_and_publishes_nothing(episodes, tmp_path):
    tok_dir = tmp_path / "broken"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text((SHARED / "tokenizers/phi-2/tokenizer.json").read_text())
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{% for m in messages %}{{ m.content }}"}))
    seen = []
    with pytest.raises(GamelogError, match="does not parse"):
        pack(episodes["instruct"], out=tmp_path / "b", options=PackOptions(tokenizer=str(tok_dir), workers=2), on_progress=seen.append)
    assert seen == [] and not (tmp_path / "b" / "manifest.json").exists()


def test_generation_tags_mark_the_trained_text(tmp_path):
    from gamelog.render.jinja import render_jinja

    source = "{% for m in messages %}<|{{ m.role }}|>{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<|end|>{% endgeneration %}{% else %}{{ m.content }}<|end|>{% endif %}{% endfor %}"
    turns = [{"role": "user", "player": 1, "content": "Hi", "name": None}, {"role": "assistant", "player": 2, "content": "Hello", "name": None}]
    rendered = render_jinja(turns, source, bos=None, eos=None, specials=frozenset())
    assert rendered.text == "<|user|>Hi<|end|><|assistant|>Hello<|end|>"
    begin, _ = rendered.content[1]
    assert rendered.text[begin : rendered.trained_end[1]] == "Hello<|end|>"


def test_a_move_that_spells_a_role_tag_is_found_after_the_tag_not_inside_it(tmp_path):
    """phi-3's template writes `<|user|>` before a user move: a move `user` is the text after the tag,
    so its tokens are player 1's; an assistant move `assistant` is trained, not rejected as a mask mismatch."""
    source = tmp_path / "tags.jsonl"
    source.write_text(json.dumps({"messages": [{"role": "user", "content": "user"}, {"role": "assistant", "content": "assistant"}]}) + "\n")
    convert([str(source)], out=tmp_path / "episodes", options=ConvertOptions())
    manifest = pack(tmp_path / "episodes", out=tmp_path / "packed", options=PackOptions(tokenizer=shared("tokenizers/phi-3-mini")))
    assert manifest.counts["episodes_packed"] == 1 and not manifest.rejected_by_reason
    row = pq.read_table(tmp_path / "packed" / manifest.shards[0]["name"]).to_pylist()[0]
    tokenizer = load_tokenizer(shared("tokenizers/phi-3-mini")).tokenizer
    tokens = [(tokenizer.id_to_token(i), player, trained) for i, player, trained in zip(row["input_ids"], row["player"], row["loss_mask"])]
    assert ("▁user", 1, 0) in tokens
    assert [t for t, _, trained in tokens if trained] == ["▁assistant", "<|end|>", "<|endoftext|>"]


def test_cli_pack_and_validate(episodes, tmp_path):
    gamelog = [sys.executable, "-m", "gamelog.cli"]
    done = subprocess.run([*gamelog, "pack", str(episodes["instruct"]), "--tokenizer", shared("tokenizers/phi-3-mini"), "--seq-len", "2048", "--out", str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "efficiency" in done.stdout
    assert subprocess.run([*gamelog, "validate", str(tmp_path / "s")], capture_output=True).returncode == 0
    bad = subprocess.run([*gamelog, "pack", str(episodes["instruct"]), "--tokenizer", str(tmp_path / "nope"), "--out", str(tmp_path / "t")], capture_output=True, text=True)
    assert bad.returncode == 2 and "tokenizer" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_checks_a_shard_a_few_rows_at_a_time_and_names_each_rule_once(episodes, tmp_path, monkeypatch):
    """A packed shard is checked CHECK_ROWS rows at a time (a default shard of 50,000 rows of 4096
    tokens would take gigabytes whole); a rule broken in many of those parts is reported once."""
    import pyarrow as pa

    from gamelog.pack import check
    from gamelog.write.atomic import sha256

    monkeypatch.setattr(check, "CHECK_ROWS", 32)
    manifest = pack(episodes["chat"], out=tmp_path / "sh", options=PackOptions(tokenizer=shared("tokenizers/phi-3-mini"), seq_len=512))
    shard = tmp_path / "sh" / manifest.shards[0]["name"]
    whole = pq.read_table(shard)
    assert whole.num_rows > 10 * 32
    held = []
    original = check._check_rows
    monkeypatch.setattr(check, "_check_rows", lambda table, *rest: held.append(pa.default_memory_pool().bytes_allocated()) or original(table, *rest))
    assert validate(tmp_path / "sh").valid
    assert len(held) == -(-whole.num_rows // 32) and max(held) - min(held) < whole.nbytes / 4
    rows = whole.to_pylist()
    for row in rows[::7]:  # a wrong position in rows of every part
        row["position_ids"][-1] += 1
    pq.write_table(pa.Table.from_pylist(rows, schema=whole.schema), shard, row_group_size=128)
    text = (tmp_path / "sh" / "manifest.json").read_text().replace(manifest.shards[0]["sha256"], sha256(shard))
    (tmp_path / "sh" / "manifest.json").write_text(text)
    problems = validate(tmp_path / "sh").listed
    assert [p.rule for p in problems] == ["positions"]


def test_validate_checks_per_token_columns_lengths(tmp_path):
    import pyarrow as pa

    from gamelog.pack.rows import PACKED_SCHEMA
    from gamelog.write.atomic import sha256

    convert([str(Path(__file__).parents[1] / "samples")], out=tmp_path / "ep", options=ConvertOptions())
    manifest = pack(tmp_path / "ep", out=tmp_path / "sh", options=PackOptions(seq_len=512, returns=0.9))
    assert validate(tmp_path / "sh").valid
    shard = tmp_path / "sh" / manifest.shards[0]["name"]
    rows = pq.read_table(shard).to_pylist()
    rows[0]["returns"] = rows[0]["returns"][:-1]
    pq.write_table(pa.Table.from_pylist(rows, schema=PACKED_SCHEMA), shard)
    text = (tmp_path / "sh" / "manifest.json").read_text().replace(manifest.shards[0]["sha256"], sha256(shard))
    (tmp_path / "sh" / "manifest.json").write_text(text)
    problems = validate(tmp_path / "sh").listed
    assert [p.rule for p in problems] == ["lengths"] and "returns" in problems[0].detail


class _SlowWorker:
    """A stand-in for a worker process: starts after `start` polls, and each result is ready `lag` polls after it was sent."""

    def __init__(self, start: int, lag: int):
        from collections import deque

        self.start, self.lag, self.pending, self.done, self.ran = start, lag, deque(), False, []
        self.conn = type("Conn", (), {"close": lambda self: None, "closed": False})()

    held = property(lambda self: len(self.pending))

    def started(self) -> bool:
        self.start -= 1
        return self.start < 0

    def send(self, batch):
        from gamelog.crew import _Slot

        self.ran.append(batch)
        self.pending.append([_Slot(), batch, self.lag])
        return self.pending[-1][0]

    def ready(self) -> bool:
        self.pending[0][2] -= 1
        return self.pending[0][2] < 0

    def holds(self, slot) -> bool:
        return bool(self.pending) and self.pending[0][0] is slot

    def receive(self) -> None:
        slot, batch, _ = self.pending.popleft()
        slot.result = Encoded(Block.from_segments([]), [batch])

    def join(self) -> None:
        pass


@pytest.mark.parametrize("total", [float("inf"), 40, 30])
@pytest.mark.parametrize("start, lag", [(0, 0), (3, 2), (1, 9), (1000, 0)])
def test_the_main_process_and_its_workers_share_batches_and_results_keep_input_order(monkeypatch, start, lag, total):
    """However fast the workers start and answer, and whether the batch count is known (or off), every batch comes back once, in input order; the main process runs a batch whenever the oldest is still out."""
    from gamelog import crew as crews

    monkeypatch.setattr(crews, "_run_here", lambda task, batch: Encoded(Block.from_segments([]), [batch]))
    crew = [_SlowWorker(start, lag), _SlowWorker(start + 1, lag + 1)]
    results = [r.rejects[0] for r in crews._share(None, crew, iter(range(40)), total)]
    assert results == list(range(40))
    by_workers = sum(len(w.ran) for w in crew)
    assert 0 < by_workers < 40 if start < 1000 else by_workers == 0  # a worker that never starts leaves all to this process
    assert all(w.held == 0 for w in crew)
    if total == 40 and lag > 2:  # workers busy to the end: the last batches stay here, so nobody waits for a worker
        assert max(crew[0].ran + crew[1].ran) < 38  # (with the count unknown, batch 38 goes to a worker)


@pytest.mark.parametrize("bounds", ["default", "pack"])
def test_the_main_process_runs_ahead_of_a_slow_worker_by_a_bounded_number_of_batches(monkeypatch, bounds):
    """Results are given in input order, so what the main process runs while a worker holds the
    oldest batch waits in memory: past `ahead` batches a process (AHEAD by default, pack's CREW
    for pack) it waits for the worker instead; a worker holds at most `depth` batches."""
    from gamelog import crew as crews
    from gamelog.pack import CREW

    depth, ahead = (crews.DEPTH, crews.AHEAD) if bounds == "default" else (CREW["depth"], CREW["ahead"])
    here = []
    monkeypatch.setattr(crews, "_run_here", lambda task, batch: here.append(batch) or Encoded(Block.from_segments([]), [batch]))
    crew = [_SlowWorker(0, 10**6), _SlowWorker(0, 10**6)]  # they never answer by themselves: only when waited for
    waiting, held = [], []
    for k, result in enumerate(crews._share(None, crew, iter(range(200)), depth=depth, ahead=ahead)):
        assert result.rejects[0] == k
        waiting.append(len(here) - sum(1 for b in here if b <= k))  # run here, not yet given
        held.append(max(w.held for w in crew))
    assert max(waiting) <= ahead * (len(crew) + 1) and len(here) > 0
    assert max(held) == depth  # a slow worker is kept full, and no fuller


@pytest.mark.parametrize("weight", [None, 0.5, 1.0, 2.5, 4.0])
def test_batches_that_weigh_more_than_a_full_batch_are_held_fewer_at_a_time(monkeypatch, weight):
    """Where the task weighs its batches (convert: input bytes over the reader's batch bytes), the
    batches out are bounded by weight as well as by count (AHEAD full batches a process): batches
    of one big document each are not held AHEAD a process, yet every process still gets one, and
    results keep input order. Light batches are held as many as unweighted ones."""
    from gamelog import crew as crews

    here = []
    monkeypatch.setattr(crews, "_run_here", lambda task, batch: here.append(batch) or Encoded(Block.from_segments([]), [batch]))
    crew = [_SlowWorker(0, 10**6), _SlowWorker(0, 10**6)]  # they answer only when waited for: this process runs ahead as far as it may
    out = []  # batches out when each result is given (that one included)
    weigh = None if weight is None else (lambda batch: weight)
    for k, result in enumerate(crews._share(None, crew, iter(range(120)), float("inf"), weigh)):
        assert result.rejects[0] == k
        out.append(len(here) + sum(len(w.ran) for w in crew) - k)
    processes = len(crew) + 1
    assert len(here) > 0 and all(w.ran for w in crew)  # every process ran batches
    unweighted = crews.AHEAD * processes  # this process runs AHEAD a process ahead; the workers hold some besides
    if weight is None or weight <= 1:
        assert unweighted <= max(out) <= unweighted + crews.DEPTH * len(crew)
    else:  # a batch is taken while less than AHEAD full batches a process are out, or as a process's only one
        assert max(out) * weight < crews.AHEAD * processes + processes * weight and max(out) < unweighted


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> Path:
    """Episodes of long documents: wiki_demo.txt (one document of about 1 MB) three times, and the
    lines of c4_demo.jsonl's texts, as pre-training text."""
    base = tmp_path_factory.mktemp("books")
    text = Path(shared("text/wiki_demo.txt")).read_bytes().rstrip(b"\n")
    (base / "books.txt").write_bytes((text + b"\n\n") * 3)
    convert([str(base / "books.txt"), shared("text/c4_demo.jsonl")], out=base / "episodes", options=ConvertOptions(dedup="none"))
    return base / "episodes"


def test_batches_of_long_documents_are_cut_by_their_text(books):
    """A batch holds at most BATCH_TEXT bytes of move text (or one episode): 512 books in one batch,
    with their encodings, would bound nothing. A file of long episodes is read fewer episodes at a
    time, and each batch read is cut where its text passes BATCH_TEXT. The parts are the batches, in
    order; the count from the footers matches; the text sizes are the moves' UTF-8 bytes."""
    from gamelog.pack import BATCH_TEXT, ENCODE_BATCH, _episode_batches, _footer_plan, batch_plan, episode_batches, text_bytes
    from gamelog.write.atomic import episode_files

    (file,) = episode_files(books)
    rows, text, batch_rows = _footer_plan(file)
    assert batch_rows < ENCODE_BATCH and batch_rows * text <= 2 * rows * BATCH_TEXT  # a read batch holds about BATCH_TEXT on average, not 512 episodes
    whole = list(_episode_batches(file))
    cut = list(episode_batches(books))
    assert [r["episode_id"] for b in cut for r in b.select(["episode_id"]).to_pylist()] == [r["episode_id"] for b in whole for r in b.select(["episode_id"]).to_pylist()]
    for batch in cut:
        sizes = text_bytes(batch)
        expected = [sum(len(t["content"].encode()) for t in row["turns"]) for row in batch.select(["turns"]).to_pylist()]
        assert sizes.tolist() == expected
        assert sizes.sum() <= BATCH_TEXT or batch.num_rows == 1
    assert [int((text_bytes(b) > 900_000).sum()) for b in cut if (text_bytes(b) > 900_000).any()] == [1, 1, 1]  # no two books in a batch
    assert len(cut) > len(whole) and len(cut) <= batch_plan(books).count <= len(cut) + len(whole)  # from above: the crew's workers are not stopped early


def test_episodes_are_read_a_row_group_at_a_time(episodes, tmp_path):
    """Pre-buffering would read all of an episodes file's columns at once (a file of 100,000
    conversations held 25 MiB, a file of books would hold its size); pack reads a row group at a time."""
    import pyarrow as pa

    from gamelog.pack import episode_batches

    chat = pa.concat_tables([pq.read_table(f) for f in sorted(episodes["chat"].glob("episodes-*.parquet"))])
    folder = tmp_path / "episodes"
    folder.mkdir()
    pq.write_table(pa.concat_tables([chat] * 30), folder / "episodes-00000.parquet", row_group_size=256)
    size = (folder / "episodes-00000.parquet").stat().st_size
    assert 0 < arrow_held_while(episode_batches(folder)) < size / 4


def test_a_window_of_long_episodes_closes_by_its_tokens(books, tmp_path, monkeypatch):
    """A window closes at `window` episodes or window * seq_len / WINDOW_ROWS tokens: long
    documents do not make a window of 20,000 episodes hold every token. Every token is still packed
    and counted, and the output is the same for any number of workers."""
    import gamelog.pack as packing

    seen = []
    original = packing.pack_window
    monkeypatch.setattr(packing, "pack_window", lambda block, counts, options: seen.append((len(block), block.tokens)) or original(block, counts, options))
    tok = shared("tokenizers/phi-3-mini")
    one = pack(books, out=tmp_path / "one", options=PackOptions(tokenizer=tok, seq_len=1024, window=2000, workers=1))
    windows = len(seen)
    bound = 2000 * 1024 // packing.WINDOW_ROWS
    assert windows > 1 and all(tokens < bound + 300_000 for _, tokens in seen[:-1])  # closed within a batch of the bound
    assert all(tokens >= bound for _, tokens in seen[:-1])  # by tokens, not episodes (there are fewer than 2,000)
    two = pack(books, out=tmp_path / "two", options=PackOptions(tokenizer=tok, seq_len=1024, window=2000, workers=2))
    assert seen[windows:] == seen[:windows]
    assert [s["sha256"] for s in one.shards] == [s["sha256"] for s in two.shards]
    counts = one.counts
    assert counts["episodes_read"] == counts["episodes_packed"] + counts["episodes_rejected"] + counts["episodes_skipped"] + counts["episodes_dropped"]
    assert counts["tokens_total"] == sum(tokens for _, tokens in seen[:windows])
