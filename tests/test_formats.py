"""Formats with no real sample in ../shared/data (ratings, stepwise, ...) and the details of each converter."""

from __future__ import annotations

import json

import pytest

from gamelog.formats.recipe import load_recipe
from gamelog.validate import validate

from conftest import ROOT, SAMPLES

SAMPLE_FORMATS = {
    "alpaca.json": "alpaca",
    "corpus.csv": "text",
    "corpus.txt": "text",
    "dpo.jsonl": "dpo",
    "hh_rlhf.jsonl": "hh-rlhf",
    "kto.jsonl": "kto",
    "nq_open.jsonl": "qa",
    "oasst.jsonl": "oasst",
    "openai.jsonl": "openai",
    "openai_dpo.jsonl": "openai-dpo",
    "ratings.jsonl": "ratings",
    "reasoning.jsonl": "openai",
    "sharegpt.json": "sharegpt",
    "sharegpt_preference.json": "sharegpt-preference",
    "squad.json": "squad",
    "stepwise.jsonl": "stepwise",
}


def test_samples_cover_every_format_and_are_detected(run):
    from gamelog.formats import FORMATS

    assert set(SAMPLE_FORMATS.values()) == set(FORMATS)
    assert sorted(p.name for p in SAMPLES.iterdir() if p.suffix != ".md") == sorted(SAMPLE_FORMATS)
    result = run(SAMPLES)
    assert {k.rsplit("/", 1)[1]: v for k, v in result.report.formats.items()} == SAMPLE_FORMATS
    assert result.report.records_rejected == 0
    assert validate(result.out).valid


def _episodes(run, name: str, **options) -> list[dict]:
    return run(SAMPLES / name, **options).episodes


def test_ratings_rank_and_normalised_reward(run):
    episodes = _episodes(run, "ratings.jsonl")
    assert len({e["group_id"] for e in episodes}) == 1
    by_rating = {e["meta"]["rating"]: e for e in episodes}
    assert {r: (e["rank"], e["outcome"]) for r, e in by_rating.items()} == {9: (0, 1.0), 7: (1, pytest.approx(2 * 4 / 6 - 1)), 3: (2, -1.0)}
    assert by_rating[9]["turns"][-1]["optimality"] == "optimal" and by_rating[3]["turns"][-1]["optimality"] == "suboptimal"


def test_stepwise_each_step_carries_its_reward(run):
    first, second = _episodes(run, "stepwise.jsonl")
    assert [(t["role"], t["reward"]) for t in second["turns"]] == [("user", None), ("assistant", 1.0), ("assistant", -1.0), ("assistant", -1.0)]
    assert (first["outcome"], second["outcome"]) == (1.0, -1.0) and first["regime"] == "feedback"


def test_think_spans_and_reasoning_fields_become_thoughts(run):
    think, field = _episodes(run, "reasoning.jsonl")
    assert [(t["role"], t["player"]) for t in think["turns"]] == [("user", 1), ("thought", 2), ("assistant", 2)]
    assert "<think>" not in think["turns"][2]["content"] and think["turns"][1]["content"].startswith("91 = 7 * 13")
    assert [t["role"] for t in field["turns"]] == ["user", "thought", "assistant"]


def test_openai_typed_parts_tools_developer_and_weight(run):
    plain, tools, parts = _episodes(run, "openai.jsonl")
    assert plain["turns"][0]["role"] == "system" and plain["turns"][-1]["weight"] == 1.0
    assert [t["role"] for t in tools["turns"]] == ["user", "tool_call", "tool", "assistant"]
    assert json.loads(tools["turns"][1]["content"]) == {"name": "weather", "arguments": {"city": "Oslo"}}
    assert tools["turns"][2]["name"] == "weather" and tools["meta"]["tools"][0]["function"]["name"] == "weather"
    assert [(t["role"], t["content"]) for t in parts["turns"]] == [("user", "What is 17 * 3?"), ("thought", "17 * 3 = 51."), ("assistant", "51")]


def test_alpaca_input_history_system_and_instances(run):
    episodes = _episodes(run, "alpaca.json")
    assert episodes[0]["turns"][0]["content"] == "Translate to French.\n\nGood night"
    assert [t["role"] for t in episodes[2]["turns"]] == ["system", "user", "assistant", "user", "assistant"]
    instances = [e for e in episodes if e["meta"]["location"] == "item 3"]
    assert [e["turns"][-1]["content"] for e in instances] == ["positive", "negative"]
    assert len({e["episode_id"] for e in episodes}) == len(episodes) == 5


def test_dpo_string_and_message_prompts(run):
    episodes = _episodes(run, "dpo.jsonl")
    assert len(episodes) == 4 and len({e["group_id"] for e in episodes}) == 2
    assert all(e["turns"][0] == {"player": 1, "role": "user", "name": None, "content": e["turns"][0]["content"], "reward": None, "optimality": "unknown", "weight": None} for e in episodes)


def test_implicit_prompt_pairs(tmp_path, run):
    path = tmp_path / "implicit.jsonl"
    chat = [{"role": "user", "content": "Name a prime."}]
    path.write_text(json.dumps({"chosen": chat + [{"role": "assistant", "content": "7"}], "rejected": chat + [{"role": "assistant", "content": "9"}]}) + "\n")
    chosen, rejected = run(path).episodes
    assert [t["content"] for t in chosen["turns"]] == ["Name a prime.", "7"] and rejected["turns"][-1]["content"] == "9"
    assert chosen["turns"][0]["optimality"] == "unknown" and rejected["turns"][-1]["optimality"] == "suboptimal"


def test_oasst_sample_paths(run):
    episodes = _episodes(run, "oasst.jsonl")
    assert sorted([t["content"] for t in e["turns"]][-1] for e in episodes) == ["Add a rain jacket and a dry bag.", "Just go.", "Water, snacks, a map, sun protection and a warm layer."]
    top = [e for e in episodes if len(e["turns"]) == 2]
    assert len({e["group_id"] for e in top}) == 1 and sorted(e["rank"] for e in top) == [0, 1]
    assert {e["turns"][-1]["reward"] for e in top} == {1.0, -1.0}


def test_identical_pair_is_rejected(tmp_path, run):
    path = tmp_path / "same.jsonl"
    path.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello", "rejected": "Hello"}) + "\n")
    assert run(path).report.rejected_by_reason == {"identical_pair": 1}


def test_nan_rating_is_rejected(tmp_path, run):
    path = tmp_path / "nan.jsonl"
    path.write_text('{"prompt": "Hi", "completions": [{"response": "a", "rating": NaN}, {"response": "b", "rating": 1}]}\n{"prompt": "Hi", "completions": [{"response": "a", "rating": 2}]}\n')
    result = run(path, format="ratings")
    assert result.report.rejected_by_reason == {"bad_json": 1} or result.report.rejected_by_reason == {"bad_value": 1}
    assert result.report.records_converted == 1


def test_recipe_maps_columns_and_roles(tmp_path, run):
    path = tmp_path / "dolly.jsonl"
    rows = [
        {"instruction": "Who wrote Hamlet?", "context": "", "response": "Shakespeare.", "category": "open_qa"},
        {"instruction": "Summarise.", "context": "Rain fell all day.", "response": "It rained.", "category": "summarization"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    episodes = run(path, recipe=load_recipe(str(ROOT / "pipelines" / "dolly.toml"))).episodes
    assert [e["turns"][0]["content"] for e in episodes] == ["Who wrote Hamlet?", "Summarise.\n\nRain fell all day."]
    assert episodes[1]["turns"][-1]["content"] == "It rained." and episodes[1]["meta"]["category"] == "summarization"
    bot = tmp_path / "bot.jsonl"
    bot.write_text(json.dumps({"dialog": [{"speaker": "Customer", "text": "Hi"}, {"speaker": "Agent", "text": "Hello"}]}) + "\n")
    recipe_file = tmp_path / "bot.toml"
    recipe_file.write_text('format = "sharegpt"\n[columns]\nconversations = "dialog"\n[roles]\nCustomer = "user"\nAgent = "assistant"\n')
    unmapped = run(bot, recipe=load_recipe(str(recipe_file)))  # message keys still differ: from/value expected
    assert unmapped.report.rejected_by_reason == {"missing_field": 1} and "[message] table" in unmapped.rejects[0]["detail"]
    recipe_file.write_text(recipe_file.read_text() + '[message]\nfrom = "speaker"\nvalue = "text"\n')
    (episode,) = run(bot, recipe=load_recipe(str(recipe_file))).episodes
    assert [(t["role"], t["player"]) for t in episode["turns"]] == [("user", 1), ("assistant", 2)]


def test_bad_recipe_says_what_is_wrong(tmp_path):
    from gamelog.errors import GamelogError

    path = tmp_path / "bad.toml"
    path.write_text('format = "alpaca"\ngame = "friendly"\n')
    with pytest.raises(GamelogError, match="game"):
        load_recipe(str(path))
