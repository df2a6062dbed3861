"""Question answering: SQuAD v1/v2, NQ-open and generic {question, answer} records.

    {"context": "Paris is in France.", "question": "Where is Paris?", "answers": {"text": ["France"]}}
    -> turns: context(1) "Paris is in France." | user(1) "Where is Paris?" | assistant(2, optimal) "France"

A SQuAD article ({title, paragraphs: [{context, qas}]}) is exploded so that each question is a
record of its own, located as `data[i].paragraphs[j].qas[k]`. Unanswerable questions (SQuAD
v2 `is_impossible`, or no answer) are kept with an explicit abstention as the answer, or
rejected with reason `unanswerable` when `unanswerable="reject"`; never dropped silently.
Further answer aliases are kept in `meta.answers`.
"""

from __future__ import annotations

from collections.abc import Iterator

from gamelog.errors import RecordError
from gamelog.formats.common import Context, episode, label, need, optional, text_of, turn


def explode_squad(record, location: str) -> Iterator[tuple[str, object]]:
    """An article with paragraphs -> one record per question (context and title folded in)."""
    if not (isinstance(record, dict) and isinstance(record.get("paragraphs"), list)):
        yield location, record
        return
    for j, paragraph in enumerate(record["paragraphs"]):
        if not (isinstance(paragraph, dict) and isinstance(paragraph.get("qas"), list)):
            yield f"{location}.paragraphs[{j}]", paragraph  # rejected by convert_qa with its location
            continue
        for k, qa in enumerate(paragraph["qas"]):
            row = qa | {"context": paragraph.get("context"), "title": record.get("title")} if isinstance(qa, dict) else qa
            yield f"{location}.paragraphs[{j}].qas[{k}]", row


def answer_texts(record: dict) -> list[str]:
    """Every answer the record gives: SQuAD {text: [...]}, a list of {text} or strings, or one string."""
    value = record.get("answers", record.get("answer"))
    if isinstance(value, dict):
        value = value.get("text", [])
    if isinstance(value, str):
        value = [value]
    if value is None:
        value = []
    if not isinstance(value, list):
        raise RecordError("wrong_type", f"the answer should be a string or a list, found {type(value).__name__}.")
    texts = [a.get("text") if isinstance(a, dict) else a for a in value]
    for i, text in enumerate(texts):
        text_of(text, f"answers[{i}]")
    return list(dict.fromkeys(t for t in texts if t.strip()))


def convert_qa(record: dict, ctx: Context) -> list[dict]:
    question = text_of(need(record, "question", str), "'question'")
    if not question.strip():
        raise RecordError("empty_content", "the question is empty.")
    context = optional(record, "context", str)
    answers = answer_texts(record)
    impossible = bool(record.get("is_impossible")) or not answers
    if impossible and ctx.unanswerable == "reject":
        raise RecordError("unanswerable", "the question has no answer (unanswerable); pass --unanswerable keep to train an abstention.")
    turns = []
    if context and context.strip():
        turns.append(turn("context", context, name=record.get("title") if isinstance(record.get("title"), str) else None))
    turns += [turn("user", question), turn("assistant", answers[0] if answers else ctx.abstain_text)]
    label(turns, "optimal")
    meta = {k: record[k] for k in ("id", "title") if isinstance(record.get(k), str)}
    if len(answers) > 1:
        meta["answers"] = answers
    if impossible:
        meta["unanswerable"] = True
    return [episode(ctx, turns, regime="sft", task="qa", meta=meta)]
