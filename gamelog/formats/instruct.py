"""Instructions: Alpaca records and raw Alpaca-style `instances` lists.

    {"instruction": "Translate to French.", "input": "Good night", "output": "Bonne nuit"}
    -> turns: user(1) "Translate to French.\\n\\nGood night" | assistant(2, optimal) "Bonne nuit"   regime sft

`history` ([[question, answer], ...]) becomes earlier moves and `system` a system move. A record
with `instances: [{input, output}, ...]` yields one episode per instance.
"""

from __future__ import annotations

from gamelog.errors import RecordError
from gamelog.formats.chat import system_turns
from gamelog.formats.common import Context, episode, keep_meta, label, optional, text_of, turn

META_KEYS = ("id", "category", "source")


def user_move(instruction: str, extra: str) -> str:
    return f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra


def history_turns(record: dict) -> list[dict]:
    history = optional(record, "history", list) or []
    turns = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise RecordError("wrong_type", f"history[{i}] should be a [question, answer] pair.")
        question = text_of(pair[0], f"history[{i}][0]")
        answer = text_of(pair[1], f"history[{i}][1]")
        if not question.strip() or not answer.strip():
            raise RecordError("empty_content", f"history[{i}] has an empty question or answer.")
        turns += [turn("user", question), turn("assistant", answer)]
    return turns


def instruction_episode(ctx: Context, record: dict, instruction: str, extra, output, branch="", where="") -> dict:
    extra = text_of(extra if extra is not None else "", f"{where}'input'")
    output = text_of(output, f"{where}'output'")
    prompt = user_move(instruction, extra)
    if not prompt.strip():
        raise RecordError("empty_content", f"{where}the instruction and input are both empty.")
    if not output.strip():
        raise RecordError("empty_content", f"{where}the output is empty: nothing to learn.")
    turns = system_turns(record) + history_turns(record) + [turn("user", prompt), turn("assistant", output)]
    label(turns, "optimal")
    return episode(ctx, turns, regime="sft", task="instruct", branch=branch, meta=keep_meta(record, META_KEYS))


def convert_alpaca(record: dict, ctx: Context) -> list[dict]:
    instruction = text_of(record.get("instruction", ""), "'instruction'")
    if "instances" in record and "output" not in record:
        return instances_episodes(record, ctx, instruction)
    if "output" not in record:
        raise RecordError("missing_field", f"missing 'output'; present keys: {sorted(record)[:12]}.")
    return [instruction_episode(ctx, record, instruction, record.get("input"), record["output"])]


def instances_episodes(record: dict, ctx: Context, instruction: str) -> list[dict]:
    instances = record["instances"]
    if not isinstance(instances, list) or not instances:
        raise RecordError("wrong_type", "'instances' should be a non-empty list of {input, output} objects.")
    episodes = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]: "
        if not isinstance(instance, dict) or "output" not in instance:
            raise RecordError("missing_field", f"{where}should be an object with 'output'.")
        episodes.append(instruction_episode(ctx, record, instruction, instance.get("input"), instance["output"], f"instances[{i}]", where))
    return episodes
