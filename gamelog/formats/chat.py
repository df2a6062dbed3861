"""Dialogues: ShareGPT and OpenAI messages, with tools, tool calls and reasoning.

    {"system": "Be brief.", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}
    -> turns: system(1) "Be brief." | user(1) "Hi" | assistant(2, optimal) "Hello!"   regime sft
"""

from __future__ import annotations

from gamelog.errors import RecordError
from gamelog.formats.common import (
    Context,
    conversation_turns,
    episode,
    infer_task,
    keep_meta,
    label,
    require_player2,
    text_of,
    turn,
)

META_KEYS = ("id", "tools", "source", "category")


def system_turns(record: dict) -> list[dict]:
    system = record.get("system")
    if system is None or system == "":
        return []
    return [turn("system", text_of(system, "'system'"))]


def sharegpt_turns(record: dict, ctx: Context, key: str = "conversations") -> list[dict]:
    if record.get(key) is None:
        raise RecordError("missing_field", f"missing '{key}'; present keys: {sorted(record)[:12]}.")
    turns = conversation_turns(record[key], ctx, key, role_key="from", content_key="value")
    return system_turns(record) + turns


def openai_turns(record: dict, ctx: Context, key: str = "messages") -> list[dict]:
    if record.get(key) is None:
        raise RecordError("missing_field", f"missing '{key}'; present keys: {sorted(record)[:12]}.")
    return system_turns(record) + conversation_turns(record[key], ctx, key)


def sft_episode(ctx: Context, turns: list[dict], record: dict, default_task: str = "chat") -> list[dict]:
    if not turns:
        raise RecordError("empty_conversation", "the conversation has no messages.")
    require_player2(turns)
    label(turns, "optimal")
    return [episode(ctx, turns, regime="sft", task=infer_task(turns, default_task), meta=keep_meta(record, META_KEYS))]


def convert_sharegpt(record: dict, ctx: Context) -> list[dict]:
    return sft_episode(ctx, sharegpt_turns(record, ctx), record)


def convert_openai(record: dict, ctx: Context) -> list[dict]:
    return sft_episode(ctx, openai_turns(record, ctx), record)
