"""Input formats: one converter per format, looked up by name in FORMATS.

Each entry says how to recognise the format from a record's keys (`detect.py` uses that) and how
to turn one record into episodes. `explode` splits container records (a SQuAD article) into the
records that are counted and converted one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gamelog.formats.chat import convert_openai, convert_sharegpt
from gamelog.formats.feedback import convert_kto, convert_stepwise
from gamelog.formats.instruct import convert_alpaca
from gamelog.formats.oasst import convert_oasst
from gamelog.formats.preference import (
    convert_dpo,
    convert_hh_rlhf,
    convert_openai_dpo,
    convert_ratings,
    convert_sharegpt_preference,
)
from gamelog.formats.qa import convert_qa, explode_squad
from gamelog.formats.text import convert_text


@dataclass(frozen=True)
class Format:
    convert: Callable
    matches: Callable[[dict], bool]
    explode: Callable[[object, str], Iterator[tuple[str, object]]] | None = None
    summary: str = ""


def _is_hh(r: dict) -> bool:
    chosen = r.get("chosen")
    return isinstance(chosen, str) and "prompt" not in r and "\n\nHuman:" in chosen


def _rated(r: dict) -> bool:
    completions = r.get("completions")
    return isinstance(completions, list) and bool(completions) and all(isinstance(c, dict) for c in completions)


# In detection order: the most specific signatures first.
FORMATS: dict[str, Format] = {
    "oasst": Format(convert_oasst, lambda r: isinstance(r.get("prompt"), dict) and "replies" in r["prompt"] or "message_tree_id" in r or ("replies" in r and "role" in r and "text" in r), summary="OpenAssistant message trees (nested replies with rank)"),
    "squad": Format(convert_qa, lambda r: "paragraphs" in r or {"context", "question", "answers"} <= r.keys(), explode_squad, "SQuAD v1/v2 articles or flat rows"),
    "openai-dpo": Format(convert_openai_dpo, lambda r: {"preferred_output", "non_preferred_output"} <= r.keys(), summary="OpenAI preference fine-tuning {input, preferred_output, non_preferred_output}"),
    "sharegpt-preference": Format(convert_sharegpt_preference, lambda r: {"conversations", "chosen", "rejected"} <= r.keys(), summary="ShareGPT {conversations, chosen, rejected}"),
    "hh-rlhf": Format(convert_hh_rlhf, _is_hh, summary="Anthropic HH-RLHF transcripts {chosen, rejected}"),
    "dpo": Format(convert_dpo, lambda r: {"chosen", "rejected"} <= r.keys(), summary="{prompt, chosen, rejected}: strings or message lists"),
    "kto": Format(convert_kto, lambda r: "label" in r and ("messages" in r or {"prompt", "completion"} <= r.keys()), summary="KTO {messages | prompt + completion, label}"),
    "stepwise": Format(convert_stepwise, lambda r: {"prompt", "completions", "labels"} <= r.keys(), summary="stepwise supervision {prompt, completions, labels}"),
    "ratings": Format(convert_ratings, lambda r: ("prompt" in r or "instruction" in r) and _rated(r), summary="{prompt, completions: [{response, rating}]}"),
    "sharegpt": Format(convert_sharegpt, lambda r: "conversations" in r, summary="ShareGPT {conversations: [{from, value}]}, system, tools"),
    "openai": Format(convert_openai, lambda r: "messages" in r, summary="OpenAI {messages: [{role, content}]}, tools, tool_calls, typed parts"),
    "alpaca": Format(convert_alpaca, lambda r: "instruction" in r and ("output" in r or "instances" in r), summary="Alpaca {instruction, input, output}, history, instances"),
    "qa": Format(convert_qa, lambda r: "question" in r and ("answer" in r or "answers" in r), summary="NQ-open / generic {question, answer}"),
    "text": Format(convert_text, lambda r: "text" in r, summary="raw text: .txt documents, {text} rows"),
}
ALIASES = {"nq-open": "qa", "sharegpt-dpo": "sharegpt-preference", "hh": "hh-rlhf", "pretrain": "text", "chatml": "openai"}
