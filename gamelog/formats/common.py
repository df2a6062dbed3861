"""Building blocks shared by the format converters: roles, messages, labels, episode ids.

A converter is a function `(record, ctx) -> list[episode dict]` that raises `RecordError` with
a reason code when the record cannot become an episode. The helpers here keep every format's
notion of a message, a role and a label the same.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from gamelog.errors import RecordError
from gamelog.records import ROLE_PLAYER

# Role names seen in the wild (lower-cased, stripped) -> gamelog's normalised role.
ROLE_ALIASES: dict[str, str] = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "user": "user",
    "prompter": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "chatgpt": "assistant",
    "function_call": "tool_call",
    "tool_call": "tool_call",
    "tool_calls": "tool_call",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
    "tool_response": "tool",
    "ipython": "tool",
    "reasoning": "thought",
    "thought": "thought",
    "thinking": "thought",
    "context": "context",
}
THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
ABSTAIN_TEXT = "The context does not contain the answer to this question."


@dataclass(slots=True)
class Context:
    """Where a record came from and the settings that shape its episodes."""

    source: str
    location: str
    roles: dict[str, str] = field(default_factory=lambda: ROLE_ALIASES)
    task: str | None = None
    game: str = "cooperative"
    unanswerable: str = "keep"  # keep | reject
    abstain_text: str = ABSTAIN_TEXT
    options: Any = None  # settings of converters defined further down (role inference)

    def episode_id(self, branch: str = "") -> str:
        key = f"{self.source}\x00{self.location}\x00{branch}".encode()
        return hashlib.blake2b(key, digest_size=8).hexdigest()


# ---- field access ---------------------------------------------------------------------------

def need(record: dict, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    """record[key], checked for presence and type, else a RecordError a user can act on."""
    if key not in record or record[key] is None:
        raise RecordError("missing_field", f"{where}missing '{key}'; present keys: {sorted(record)[:12]}.")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        raise RecordError("wrong_type", f"{where}'{key}' should be {_kind_name(kind)}, found {type(value).__name__}.")
    return value


def optional(record: dict, key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    if record.get(key) is None:
        return None
    return need(record, key, kind, where)


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    names = {str: "a string", list: "a list", dict: "an object", bool: "true/false", int: "a number", float: "a number"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _as_tuple(kind)))


def text_of(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError("wrong_type", f"{where} should be a string, found {type(value).__name__}.")
    return value


# ---- turns ----------------------------------------------------------------------------------

def turn(role: str, content: str, *, name: str | None = None, weight: float | None = None) -> dict:
    return {
        "player": ROLE_PLAYER[role],
        "role": role,
        "name": name,
        "content": content,
        "reward": None,
        "optimality": "unknown",
        "weight": weight,
    }


def normalise_role(raw: Any, ctx: Context, where: str) -> str:
    if raw is None:
        raise RecordError("missing_field", f"{where}the message has no role key; map the dataset's key with a recipe's [message] table.")
    if not isinstance(raw, str):
        raise RecordError("wrong_type", f"{where}role should be a string, found {type(raw).__name__}.")
    role = ctx.roles.get(raw.strip().lower())
    if role is None:
        known = ", ".join(sorted(ctx.roles))
        raise RecordError("unknown_role", f"{where}unknown role '{raw}'; known: {known}. Map it with a recipe's [roles] table.")
    return role


def split_thoughts(role: str, content: str) -> list[tuple[str, str]]:
    """`<think>...</think>` spans in an assistant move become player-2 `thought` moves before it."""
    if role != "assistant" or "<think>" not in content:
        return [(role, content)]
    parts: list[tuple[str, str]] = []
    for thought in THINK.findall(content):
        if thought.strip():
            parts.append(("thought", thought.strip()))
    rest = THINK.sub("", content).strip()
    if rest:
        parts.append((role, rest))
    return parts


def content_turns(role: str, content: Any, where: str, *, name=None, weight=None) -> list[dict]:
    """A message's content (a string or typed parts) as turns; reasoning and tool-call parts split out."""
    if isinstance(content, str):
        return [turn(r, c, name=name, weight=weight) for r, c in split_thoughts(role, content) if c.strip()]
    if not isinstance(content, list):
        raise RecordError("wrong_type", f"{where}content should be a string or a list of parts, found {type(content).__name__}.")
    turns: list[dict] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            raise RecordError("wrong_type", f"{where}content[{j}] should be an object, found {type(part).__name__}.")
        kind = part.get("type", "text")
        value = part.get("value", part.get("text", part.get(kind)))
        part_role = {"text": role, "reasoning": "thought", "thinking": "thought", "tool_call": "tool_call"}.get(kind)
        if part_role is None:
            raise RecordError("unsupported_content", f"{where}content[{j}] has type '{kind}'; gamelog converts text, reasoning and tool_call parts.")
        if isinstance(value, (dict, list)):
            value = orjson.dumps(value).decode()
        value = text_of(value, f"{where}content[{j}]")
        if turns and part_role == turns[-1]["role"] and part_role == role:
            turns[-1]["content"] += value  # consecutive text parts are one move
        elif value.strip():
            turns.extend(turn(r, c, name=name, weight=weight) for r, c in split_thoughts(part_role, value) if c.strip())
    return turns


def tool_call_turns(calls: Any, where: str, weight=None) -> list[dict]:
    """OpenAI `tool_calls` as tool_call moves: content {"name": ..., "arguments": ...} as JSON."""
    if not isinstance(calls, list):
        raise RecordError("wrong_type", f"{where}tool_calls should be a list, found {type(calls).__name__}.")
    turns = []
    for j, call in enumerate(calls):
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RecordError("wrong_type", f"{where}tool_calls[{j}] should be an object with function.name.")
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                pass  # keep the string the source gave
        body = orjson.dumps({"name": function["name"], "arguments": arguments}).decode()
        turns.append(turn("tool_call", body, name=function["name"], weight=weight))
    return turns


def message_turns(message: Any, ctx: Context, where: str, *, role_key="role", content_key="content") -> list[dict]:
    """One chat message (OpenAI or ShareGPT shaped) as one or more turns."""
    if type(message) is dict and len(message) == 2 and type(content := message.get(content_key)) is str and role_key in message:
        # the common shape, a role and a plain text: what the general path below gives it, directly
        role = normalise_role(message[role_key], ctx, where)
        if content.strip() and (role != "assistant" or "<think>" not in content):
            return [turn(role, content)]
    if not isinstance(message, dict):
        raise RecordError("wrong_type", f"{where}should be an object, found {type(message).__name__}.")
    role = normalise_role(message.get(role_key), ctx, where)
    weight = message.get("loss_weight", message.get("weight"))
    if weight is not None and (not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight)):
        raise RecordError("wrong_type", f"{where}loss weight should be a finite number, found {weight!r}.")
    name = message.get("name") if isinstance(message.get("name"), str) else None
    turns: list[dict] = []
    reasoning = message.get("reasoning_content", message.get("reasoning"))
    if isinstance(reasoning, str) and reasoning.strip():
        turns.append(turn("thought", reasoning.strip(), weight=weight))
    content = message.get(content_key)
    if content is not None:
        turns.extend(content_turns(role, content, where, name=name, weight=weight))
    if message.get("tool_calls"):
        turns.extend(tool_call_turns(message["tool_calls"], where, weight))
    if not turns:
        raise RecordError("empty_content", f"{where}the {message.get(role_key)} message has no content.")
    return [t | {"weight": None if t["weight"] is None else float(t["weight"])} for t in turns]


def conversation_turns(messages: Any, ctx: Context, key: str, **keys) -> list[dict]:
    if not isinstance(messages, list):
        raise RecordError("wrong_type", f"'{key}' should be a list of messages, found {type(messages).__name__}.")
    turns: list[dict] = []
    for i, message in enumerate(messages):
        turns.extend(message_turns(message, ctx, f"{key}[{i}]: ", **keys))
    return turns


# ---- labels and episodes --------------------------------------------------------------------

def label(turns: list[dict], optimality: str, reward: float | None = None) -> list[dict]:
    """Mark every player-2 move; player-1 moves stay 'unknown' with no reward."""
    for t in turns:
        if t["player"] == 2:
            t["optimality"] = optimality
            t["reward"] = reward
    return turns


def require_player2(turns: list[dict], where: str = "") -> None:
    if not any(t["player"] == 2 for t in turns):
        raise RecordError("no_player2_move", f"{where}the conversation has no assistant move, so nothing to learn from; add one or drop the record.")


def infer_task(turns: list[dict], default: str) -> str:
    roles = {t["role"] for t in turns}
    if "tool_call" in roles or "tool" in roles:
        return "tool-use"
    if "thought" in roles:
        return "reasoning"
    return default


def episode(ctx: Context, turns: list[dict], *, regime: str, task: str, branch: str = "", meta: dict | None = None, **fields) -> dict:
    if not turns:
        raise RecordError("empty_conversation", "the record has no moves.")
    return {
        "episode_id": ctx.episode_id(branch),
        "source": ctx.source,
        "regime": regime,
        "game": ctx.game,
        "task": ctx.task or task,
        "group_id": fields.get("group_id"),
        "rank": fields.get("rank"),
        "outcome": fields.get("outcome"),
        "turns": turns,
        "meta": {"location": ctx.location, **({} if branch == "" else {"branch": branch}), **(meta or {})},
    }


def keep_meta(record: dict, keys: tuple[str, ...]) -> dict:
    """Source fields worth keeping (ids, tools), parsed from JSON strings where they hold JSON."""
    kept = {}
    for key in keys:
        value = record.get(key)
        if value in (None, "", [], {}):
            continue
        if isinstance(value, str) and key == "tools":
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                pass
        kept[key] = value
    return kept
