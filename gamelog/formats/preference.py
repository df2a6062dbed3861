"""Preference pairs and ratings: a shared prompt, answers that are better or worse.

Each pair becomes two episodes with the same `group_id`: the chosen one (rank 0, its player-2
moves `optimal`, reward +1) and the rejected one (rank 1, `suboptimal`, reward -1). They share
every move of the prompt and differ only in the answer.

    {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    -> group g: [user "2+2?", assistant "4" (optimal, +1)] rank 0 | [user "2+2?", assistant "5" (suboptimal, -1)] rank 1
"""

from __future__ import annotations

import copy
import math
import re

from gamelog.errors import RecordError
from gamelog.formats.chat import openai_turns, sharegpt_turns, system_turns
from gamelog.formats.common import (
    Context,
    conversation_turns,
    episode,
    infer_task,
    keep_meta,
    label,
    message_turns,
    need,
    text_of,
    turn,
)

META_KEYS = ("id", "tools", "source")
HH_SPEAKER = re.compile(r"\n\n(Human|Assistant):[ ]?")


def pair_episodes(ctx: Context, prompt: list[dict], chosen: list[dict], rejected: list[dict], record: dict, margin: float | None = None) -> list[dict]:
    """Two episodes of one group; the prompt's player-2 moves keep 'unknown' (they are context)."""
    if not chosen or not rejected:
        raise RecordError("empty_content", "the chosen or the rejected answer is empty.")
    if chosen == rejected:
        raise RecordError("identical_pair", "chosen and rejected are identical, so the pair carries no preference.")
    if not any(t["player"] == 2 for t in chosen + rejected):
        raise RecordError("no_player2_move", "neither answer has an assistant move.")
    reward = 1.0 if margin is None else float(margin)
    group = ctx.episode_id("group")
    all_turns = prompt + chosen
    meta = keep_meta(record, META_KEYS) | ({"margin": margin} if margin is not None else {})
    common = dict(regime="preference", task=infer_task(all_turns, "chat"), group_id=group, meta=meta)
    return [
        episode(ctx, copy.deepcopy(prompt) + label(chosen, "optimal", reward), branch="chosen", rank=0, outcome=reward, **common),
        episode(ctx, copy.deepcopy(prompt) + label(rejected, "suboptimal", -reward), branch="rejected", rank=1, outcome=-reward, **common),
    ]


def answer_turns(value, ctx: Context, key: str, *, role_key="role", content_key="content") -> list[dict]:
    """A chosen/rejected answer: a string, one message, or a list of messages."""
    if isinstance(value, str):
        return [turn("assistant", value)] if value.strip() else []
    if isinstance(value, dict):
        return message_turns(value, ctx, f"{key}: ", role_key=role_key, content_key=content_key)
    if isinstance(value, list):
        return conversation_turns(value, ctx, key, role_key=role_key, content_key=content_key)
    raise RecordError("wrong_type", f"'{key}' should be a string, a message or a list of messages, found {type(value).__name__}.")


def margin_of(record: dict) -> float | None:
    margin = record.get("margin", record.get("score_margin"))
    if margin is None or margin == "":
        return None
    if isinstance(margin, str):  # a CSV's text
        try:
            margin = float(margin)
        except ValueError:
            raise RecordError("bad_value", f"'margin' should be a finite number, found {margin!r}.") from None
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin):
        raise RecordError("bad_value", f"'margin' should be a finite number, found {margin!r}.")
    return float(margin)


def split_shared_prefix(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Implicit prompt: the moves both share, up to the last player-1 move before they differ."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while shared > 0 and chosen[shared - 1]["player"] == 2:
        shared -= 1
    return chosen[:shared], chosen[shared:], rejected[shared:]


def convert_sharegpt_preference(record: dict, ctx: Context) -> list[dict]:
    prompt = sharegpt_turns(record, ctx)
    keys = dict(role_key="from", content_key="value")
    chosen = answer_turns(need(record, "chosen", (dict, list, str)), ctx, "chosen", **keys)
    rejected = answer_turns(need(record, "rejected", (dict, list, str)), ctx, "rejected", **keys)
    return pair_episodes(ctx, prompt, chosen, rejected, record, margin_of(record))


def convert_dpo(record: dict, ctx: Context) -> list[dict]:
    """{prompt?, chosen, rejected}: strings or message lists; no prompt means an implicit one."""
    chosen = answer_turns(need(record, "chosen", (str, list, dict)), ctx, "chosen")
    rejected = answer_turns(need(record, "rejected", (str, list, dict)), ctx, "rejected")
    prompt_value = record.get("prompt")
    if prompt_value is None:
        prompt, chosen, rejected = split_shared_prefix(chosen, rejected)
    elif isinstance(prompt_value, str):
        prompt = [turn("user", prompt_value)] if prompt_value.strip() else []
    else:
        prompt = conversation_turns(prompt_value, ctx, "prompt")
    prompt = system_turns(record) + prompt
    if not prompt:
        raise RecordError("empty_content", "the prompt is empty.")
    return pair_episodes(ctx, prompt, chosen, rejected, record, margin_of(record))


def convert_openai_dpo(record: dict, ctx: Context) -> list[dict]:
    """OpenAI preference fine-tuning: {input: {messages, tools}, preferred_output, non_preferred_output}."""
    source = need(record, "input", dict)
    prompt = openai_turns(source, ctx)
    chosen = answer_turns(need(record, "preferred_output", (list, dict, str)), ctx, "preferred_output")
    rejected = answer_turns(need(record, "non_preferred_output", (list, dict, str)), ctx, "non_preferred_output")
    return pair_episodes(ctx, prompt, chosen, rejected, source | record, margin_of(record))


def transcript_turns(text: str, key: str) -> list[dict]:
    """`\\n\\nHuman: ... \\n\\nAssistant: ...` as turns (Anthropic HH-RLHF)."""
    pieces = HH_SPEAKER.split(text)
    if pieces[0].strip():
        raise RecordError("bad_transcript", f"'{key}' should start with '\\n\\nHuman:'; found {pieces[0][:40]!r}.")
    if len(pieces) < 3:
        raise RecordError("bad_transcript", f"'{key}' has no '\\n\\nHuman:' / '\\n\\nAssistant:' turns.")
    roles = {"Human": "user", "Assistant": "assistant"}
    turns = [turn(roles[speaker], body.strip()) for speaker, body in zip(pieces[1::2], pieces[2::2])]
    if turns[-1]["player"] != 2:
        raise RecordError("bad_transcript", f"'{key}' does not end with an Assistant turn.")
    if not turns[-1]["content"]:
        raise RecordError("empty_content", f"'{key}': the last Assistant turn is empty.")
    return [t for t in turns if t["content"]]


def convert_hh_rlhf(record: dict, ctx: Context) -> list[dict]:
    chosen = transcript_turns(need(record, "chosen", str), "chosen")
    rejected = transcript_turns(need(record, "rejected", str), "rejected")
    prompt, chosen, rejected = split_shared_prefix(chosen, rejected)
    if not prompt:
        raise RecordError("bad_transcript", "chosen and rejected share no opening Human turn.")
    return pair_episodes(ctx, prompt, chosen, rejected, record)


# ---- ratings: several answers to one prompt, each with a score ------------------------------

RESPONSE_KEYS = ("response", "text", "completion", "content", "output")
SCORE_KEYS = ("rating", "score", "overall_score")


def convert_ratings(record: dict, ctx: Context) -> list[dict]:
    """{prompt, completions: [{response, rating}]}: one episode per answer, ranked by rating.

    Rewards map the group's ratings linearly onto [-1, 1] (best +1, worst -1; 0 when all tie);
    ranks are dense (equal ratings share a rank); the raw rating stays in meta.
    """
    prompt_key = "prompt" if "prompt" in record else "instruction"
    prompt = [turn("user", text_of(need(record, prompt_key, str), f"'{prompt_key}'"))]
    prompt = system_turns(record) + prompt
    answers = [rated_answer(c, i) for i, c in enumerate(need(record, "completions", list))]
    if not answers:
        raise RecordError("empty_conversation", "'completions' is empty.")
    ratings = [r for _, r in answers]
    low, high = min(ratings), max(ratings)
    order = sorted(set(ratings), reverse=True)
    group = ctx.episode_id("group")
    episodes = []
    for i, (text, rating) in enumerate(answers):
        reward = 0.0 if high == low else 2 * (rating - low) / (high - low) - 1
        rank = order.index(rating)
        turns = copy.deepcopy(prompt) + label([turn("assistant", text)], "optimal" if rank == 0 else "suboptimal", reward)
        meta = keep_meta(record, META_KEYS) | {"rating": rating}
        episodes.append(episode(ctx, turns, regime="preference", task="chat", branch=f"completions[{i}]", group_id=group, rank=rank, outcome=reward, meta=meta))
    return episodes


def rated_answer(completion, i: int) -> tuple[str, float]:
    where = f"completions[{i}]"
    if not isinstance(completion, dict):
        raise RecordError("wrong_type", f"{where} should be an object with a response and a rating.")
    text = next((completion[k] for k in RESPONSE_KEYS if k in completion), None)
    score = next((completion[k] for k in SCORE_KEYS if k in completion), None)
    if text is None or score is None:
        raise RecordError("missing_field", f"{where} needs one of {RESPONSE_KEYS} and one of {SCORE_KEYS}.")
    text = text_of(text, f"{where} response")
    if not text.strip():
        raise RecordError("empty_content", f"{where}: the response is empty.")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise RecordError("bad_value", f"{where}: the rating should be a finite number, found {score!r}.")
    return text, float(score)
