"""Unpaired feedback: KTO good/bad labels and stepwise supervision (regime `feedback`).

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away"}], "label": false}
    -> [user "Hi", assistant "Go away" (suboptimal, reward -1)]   outcome -1

    {"prompt": "Solve 3x=6", "completions": ["3x/3 = 6/3", "x = 3"], "labels": [true, true]}
    -> [user "Solve 3x=6", assistant "3x/3 = 6/3" (+1), assistant "x = 3" (+1)]   each step its own reward
"""

from __future__ import annotations

from gamelog.errors import RecordError
from gamelog.formats.chat import openai_turns, system_turns
from gamelog.formats.common import Context, conversation_turns, episode, infer_task, keep_meta, label, need, text_of, turn

META_KEYS = ("id", "tools", "source")


TEXT_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}  # as a CSV (all text) writes them


def boolean(value, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TEXT_BOOLEANS:
        return TEXT_BOOLEANS[value.strip().lower()]
    raise RecordError("wrong_type", f"{where} should be true/false, found {value!r}.")


def convert_kto(record: dict, ctx: Context) -> list[dict]:
    good = boolean(record.get("label"), "'label'")
    if "messages" in record:
        turns = openai_turns(record, ctx)
    else:
        prompt = need(record, "prompt", (str, list))
        turns = system_turns(record) + ([turn("user", prompt)] if isinstance(prompt, str) else conversation_turns(prompt, ctx, "prompt"))
        completion = need(record, "completion", (str, list))
        turns += [turn("assistant", completion)] if isinstance(completion, str) else conversation_turns(completion, ctx, "completion")
    if any(not t["content"].strip() for t in turns):
        raise RecordError("empty_content", "a message is empty.")
    answer_start = len(turns)
    while answer_start > 0 and turns[answer_start - 1]["player"] == 2:
        answer_start -= 1
    if answer_start == len(turns):
        raise RecordError("no_player2_move", "the record does not end with an assistant answer for its label to judge.")
    reward = 1.0 if good else -1.0
    label(turns[answer_start:], "optimal" if good else "suboptimal", reward)
    return [episode(ctx, turns, regime="feedback", task=infer_task(turns, "chat"), outcome=reward, meta=keep_meta(record, META_KEYS) | {"label": good})]


def convert_stepwise(record: dict, ctx: Context) -> list[dict]:
    prompt = need(record, "prompt", (str, list))
    turns = system_turns(record) + ([turn("user", prompt)] if isinstance(prompt, str) else conversation_turns(prompt, ctx, "prompt"))
    steps = need(record, "completions", list)
    labels = need(record, "labels", list)
    if len(steps) != len(labels) or not steps:
        raise RecordError("bad_value", f"'completions' ({len(steps)}) and 'labels' ({len(labels)}) should be non-empty and of the same length.")
    for i, (step, good) in enumerate(zip(steps, labels)):
        text = text_of(step, f"completions[{i}]")
        if not text.strip():
            raise RecordError("empty_content", f"completions[{i}] is empty.")
        good = boolean(good, f"labels[{i}]")
        turns += label([turn("assistant", text)], "optimal" if good else "suboptimal", 1.0 if good else -1.0)
    if not turns[0]["content"].strip():
        raise RecordError("empty_content", "the prompt is empty.")
    outcome = 1.0 if all(boolean(g, "labels") for g in labels) else -1.0
    return [episode(ctx, turns, regime="feedback", task="reasoning", outcome=outcome, meta=keep_meta(record, META_KEYS))]
