"""Every real file in ../shared/data converts with --format auto, validates, and loses nothing."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from gamelog.convert import ConvertOptions, convert
from gamelog.errors import GamelogError
from gamelog.records import Episode
from gamelog.validate import validate

from conftest import SHARED, shared

EXPECTED_FORMAT = {
    "instruct/alpaca_en_demo.json": "alpaca",
    "instruct/alpaca_data_cleaned_1000.json": "alpaca",
    "instruct/identity.json": "alpaca",
    "chat/dummy_conversation.json": "sharegpt",
    "chat/dummy_conversation_with_system.json": "sharegpt",
    "chat/glaive_toolcall_en_demo.json": "sharegpt",
    "chat/stock_toolcall_training.jsonl": "openai",
    "chat/gsm8k_chat_train.jsonl": "openai",
    "chat/reason_tool_use_demo_50.jsonl": "openai",
    "preference/dpo_en_demo.json": "sharegpt-preference",
    "preference/kto_en_demo.json": "kto",
    "preference/harmless-base_test.jsonl.gz": "hh-rlhf",
    "preference/en_100_tree.jsonl": "oasst",
    "qa/haystack_squad2_small.json": "squad",
    "qa/NQ-open.dev.jsonl": "qa",
    "text/tinyshakespeare.txt": "text",
    "text/wiki_demo.txt": "text",
    "text/c4_demo.jsonl": "text",
    "text/pg11_alice_11-0.txt": "text",
}


def test_every_shared_file_is_covered():
    on_disk = {str(p.relative_to(SHARED)) for d in ("instruct", "chat", "preference", "qa", "text") for p in (SHARED / d).iterdir()}
    assert on_disk == set(EXPECTED_FORMAT)


def _raw_records(path: Path) -> list:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    if path.suffix == ".json":
        return json.loads(data)
    return [json.loads(line) for line in data.splitlines() if line.strip()]


@pytest.mark.parametrize("relative", sorted(EXPECTED_FORMAT))
def test_shared_file_converts_validates_and_accounts(relative, run):
    result = run(shared(relative))
    report = result.report
    assert report.formats == {shared(relative): EXPECTED_FORMAT[relative]}
    assert report.records_read > 0 and report.records_converted > 0
    assert report.records_read == report.records_converted + report.records_rejected
    assert report.records_rejected == len(result.rejects) == sum(report.rejected_by_reason.values())
    assert report.episodes_written == len(result.episodes)
    assert validate(result.out).valid, validate(result.out).listed
    for episode in result.episodes:
        Episode.model_validate(episode)
    # Every reject is one we can defend: an exact repeat of an earlier record, or an empty answer.
    assert set(report.rejected_by_reason) <= {"duplicate", "empty_content"}
    for reject in result.rejects:
        assert reject["source"] == shared(relative) and reject["location"] and reject["detail"].startswith(reject["location"])


@pytest.mark.parametrize("relative", [r for r in EXPECTED_FORMAT if r.endswith((".json", ".jsonl")) and "squad" not in r and "tree" not in r])
def test_duplicates_rejected_are_real_repeats(relative, run):
    result = run(shared(relative))
    records = _raw_records(Path(shared(relative)))
    for reject in result.by_reason("duplicate"):
        kind, index = reject["location"].split()
        me = records[int(index) - (1 if kind == "line" else 0)]
        first = reject["detail"].split("same episodes as ")[1].split(";")[0].rsplit(" ", 2)
        other = records[int(first[2]) - (1 if first[1] == "line" else 0)]
        fields = ("conversations", "messages", "instruction", "input", "output", "chosen", "rejected", "text")
        assert {k: me.get(k) for k in fields} == {k: other.get(k) for k in fields}


def test_no_dedup_keeps_every_record(run):
    result = run(shared("chat/glaive_toolcall_en_demo.json"), dedup="none")
    assert result.report.records_converted == result.report.records_read == 300


def test_hh_rlhf_pairs_share_a_prompt_and_differ_in_the_last_answer(run):
    result = run(shared("preference/harmless-base_test.jsonl.gz"))
    raw = _raw_records(Path(shared("preference/harmless-base_test.jsonl.gz")))
    last = "\n\nAssistant:"
    same_before_last_answer = {f"line {i + 1}" for i, r in enumerate(raw) if r["chosen"].rsplit(last, 1)[0] == r["rejected"].rsplit(last, 1)[0]}
    groups: dict[str, list[dict]] = {}
    for ep in result.episodes:
        groups.setdefault(ep["group_id"], []).append(ep)
    assert len(groups) == result.report.records_converted
    for pair in groups.values():
        chosen, rejected = sorted(pair, key=lambda e: e["rank"])
        assert (chosen["rank"], rejected["rank"]) == (0, 1) and chosen["regime"] == "preference"
        prompt = [t for t in chosen["turns"] if t["optimality"] == "unknown"]
        assert prompt == rejected["turns"][: len(prompt)] and prompt[-1]["player"] == 1
        assert chosen["turns"][len(prompt):] != rejected["turns"][len(prompt):]
        assert {(t["optimality"], t["reward"]) for t in chosen["turns"][len(prompt):] if t["player"] == 2} == {("optimal", 1.0)}
        assert {(t["optimality"], t["reward"]) for t in rejected["turns"][len(prompt):] if t["player"] == 2} == {("suboptimal", -1.0)}
        only_last = chosen["turns"][:-1] == rejected["turns"][:-1]
        same_history = chosen["meta"]["location"] in same_before_last_answer
        assert only_last == same_history, chosen["meta"]["location"]
    # the 4 rejects are pairs whose chosen answer is an empty Assistant turn
    for reject in result.rejects:
        assert reject["reason"] == "empty_content"
        assert orjson.loads(reject["raw"])["chosen"].endswith("Assistant: ")


def test_hh_rlhf_recipe_marks_red_team_data_adversarial(run):
    from gamelog.formats.recipe import load_recipe

    result = run(shared("preference/harmless-base_test.jsonl.gz"), recipe=load_recipe("pipelines/hh-rlhf-harmless.toml"))
    assert {(e["game"], e["task"]) for e in result.episodes} == {("adversarial", "harmlessness")}


def test_oasst_paths_ranks_and_groups(run):
    result = run(shared("preference/en_100_tree.jsonl"))
    assert result.report.records_converted == 100
    groups: dict[str, list[dict]] = {}
    for ep in result.episodes:
        last = ep["turns"][-1]
        assert last["player"] == 2
        if ep["rank"] == 0:
            assert last["optimality"] == "optimal"
        elif ep["rank"] is not None:
            assert last["optimality"] == "suboptimal" and last["reward"] < 1.0
        for t in ep["turns"]:
            assert t["player"] == (1 if t["role"] == "user" else 2)
        groups.setdefault(ep["group_id"], []).append(ep)
    ranked = [g for g in groups.values() if any(e["rank"] is not None for e in g)]
    assert ranked and all(min(e["rank"] for e in g if e["rank"] is not None) == 0 for g in ranked)
    # every leaf of every tree ends an episode (leaves that are prompter messages end at their parent)
    trees = [json.loads(line) for line in open(shared("preference/en_100_tree.jsonl"))]
    leaves = []
    for tree in trees:
        stack = [tree["prompt"]]
        while stack:
            node = stack.pop()
            stack.extend(node["replies"])
            if not node["replies"] and node["role"] == "assistant":
                leaves.append(node["message_id"])
    ends = {ep["meta"]["message_ids"][-1] for ep in result.episodes}
    assert set(leaves) <= ends


def test_glaive_tool_calls_and_observations(run):
    result = run(shared("chat/glaive_toolcall_en_demo.json"))
    turns = [t for ep in result.episodes for t in ep["turns"]]
    calls = [t for t in turns if t["role"] == "tool_call"]
    results = [t for t in turns if t["role"] == "tool"]
    assert calls and results
    assert all(t["player"] == 2 and t["optimality"] == "optimal" for t in calls)
    assert all(t["player"] == 1 and t["optimality"] == "unknown" for t in results)
    assert all(isinstance(json.loads(t["content"])["name"], str) for t in calls)
    with_calls = [ep for ep in result.episodes if any(t["role"] == "tool_call" for t in ep["turns"])]
    assert all(ep["task"] == "tool-use" and isinstance(ep["meta"]["tools"], list) for ep in with_calls)


def test_openai_tool_calls_without_content(run):
    result = run(shared("chat/stock_toolcall_training.jsonl"))
    calls = [t for ep in result.episodes for t in ep["turns"] if t["role"] == "tool_call"]
    assert calls and all(t["name"] == json.loads(t["content"])["name"] for t in calls)


def test_reasoning_parts_become_player2_thoughts(run):
    result = run(shared("chat/reason_tool_use_demo_50.jsonl"))
    roles = Counter(t["role"] for ep in result.episodes for t in ep["turns"])
    raw = Counter(p["type"] for r in _raw_records(Path(shared("chat/reason_tool_use_demo_50.jsonl"))) for m in r["messages"] for p in m["content"])
    assert roles["thought"] == raw["reasoning"] and roles["tool_call"] == raw["tool_call"]
    assert all(t["player"] == 2 for ep in result.episodes for t in ep["turns"] if t["role"] == "thought")


def test_system_prompt_is_a_player1_move(run):
    result = run(shared("chat/dummy_conversation_with_system.json"), dedup="none")
    raw = _raw_records(Path(shared("chat/dummy_conversation_with_system.json")))
    firsts = [ep["turns"][0] for ep in result.episodes]
    assert [t["content"] for t in firsts if t["role"] == "system"] == [r["system"] for r in raw if r.get("system")]
    assert all(t["player"] == 1 for t in firsts)


def test_kto_label_sets_reward_on_the_answer(run):
    result = run(shared("preference/kto_en_demo.json"))
    for ep in result.episodes:
        last = ep["turns"][-1]
        assert ep["regime"] == "feedback" and last["player"] == 2
        assert last["reward"] == ep["outcome"] == (1.0 if ep["meta"]["label"] else -1.0)
    assert Counter(ep["meta"]["label"] for ep in result.episodes) == {True: 150, False: 150}


def test_squad_unanswerable_kept_with_abstention_or_rejected(run):
    kept = run(shared("qa/haystack_squad2_small.json"))
    impossible = [ep for ep in kept.episodes if ep["meta"].get("unanswerable")]
    assert len(kept.episodes) == 626 and len(impossible) == 333
    assert {ep["turns"][-1]["content"] for ep in impossible} == {"The context does not contain the answer to this question."}
    assert all([t["role"] for t in ep["turns"]] == ["context", "user", "assistant"] for ep in kept.episodes)
    rejected = run(shared("qa/haystack_squad2_small.json"), unanswerable="reject")
    assert rejected.report.rejected_by_reason == {"unanswerable": 333}
    assert all(".qas[" in r["location"] for r in rejected.rejects)


def test_nq_open_keeps_aliases(run):
    result = run(shared("qa/NQ-open.dev.jsonl"))
    first = result.episodes[0]
    assert first["turns"][-1]["content"] == "14 December 1972 UTC"
    assert first["meta"]["answers"] == ["14 December 1972 UTC", "December 1972"]


@pytest.mark.parametrize("split, expected", [("line", 30), ("file", 1)])
def test_text_split_modes(split, expected, run):
    result = run(shared("text/wiki_demo.txt"), split=split)
    assert result.report.records_converted == expected
    assert all(ep["regime"] == "pretrain" and ep["turns"][0]["role"] == "text" for ep in result.episodes)
    assert all(ep["turns"][0]["optimality"] == "suboptimal" for ep in result.episodes)


def test_blank_line_blocks_locate_their_lines(run):
    result = run(shared("text/tinyshakespeare.txt"), dedup="none")
    first = result.episodes[0]
    assert first["meta"]["location"] == "lines 1-2"
    assert first["turns"][0]["content"] == "First Citizen:\nBefore we proceed any further, hear me speak."


def test_convert_writes_the_same_bytes_for_any_worker_count(tmp_path):
    """Batches are converted by several processes and gathered in input order, and duplicates are
    found in that order: the same files for 1, 2 and 3 processes, repeats across batches included."""
    gsm8k = Path(shared("chat/gsm8k_chat_train.jsonl")).read_bytes()
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_bytes(gsm8k + gsm8k)  # every record again, batches later
    inputs = [shared("chat"), shared("preference"), str(doubled)]
    outputs = {}
    for workers in (1, 2, 3):
        report = convert(inputs, out=tmp_path / str(workers), options=ConvertOptions(workers=workers))
        outputs[workers] = {f.name: f.read_bytes() for f in sorted((tmp_path / str(workers)).iterdir())}
    assert outputs[1] == outputs[2] == outputs[3]
    assert report.rejected_by_reason["duplicate"] >= gsm8k.count(b"\n")
    assert report.records_read == report.records_converted + report.records_rejected


def test_strict_stops_at_the_first_bad_record_whichever_process_converts_it(tmp_path):
    lines = Path(shared("chat/gsm8k_chat_train.jsonl")).read_bytes()
    late = tmp_path / "late.jsonl"
    late.write_bytes(lines * 4 + b'{"messages": 3}\n' + lines)  # over a MiB: workers convert it
    bad_line = 4 * lines.count(b"\n") + 1
    with pytest.raises(GamelogError, match=rf"line {bad_line}: .*--strict"):
        convert([str(late)], out=tmp_path / "out", options=ConvertOptions(strict=True, dedup="none", workers=2))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
