"""The `transcript` format: raw text documents whose players are inferred (see gamelog.roles).

    {"text": "Human: Hi\\nAssistant: Hello!"}
    -> user(1, name Human) "Hi" | assistant(2, name Assistant, suboptimal) "Hello!"   regime pretrain

The text is still raw pre-training data, so the regime stays `pretrain`; what changes is that its
moves now carry players, roles and speaker names. `meta.inferred_by` and `meta.confidence` say,
move by move, which detector found it and how sure it is. A document without structure becomes
one `text` move, as plain text does.
"""

from __future__ import annotations

from gamelog.formats import Format
from gamelog.formats.common import Context, episode, keep_meta, need
from gamelog.formats.text import convert_text
from gamelog.roles import RoleOptions, detect, perspectives


def convert_transcript(record: dict, ctx: Context) -> list[dict]:
    text = need(record, "text", str)
    options = ctx.options if isinstance(ctx.options, RoleOptions) else RoleOptions()
    utterances = detect(text, options)
    if utterances is None:
        return convert_text(record, ctx)
    meta = keep_meta(record, ("id", "url", "title")) | {
        "inferred_by": [u[2] for u in utterances],
        "confidence": [u[3] for u in utterances],
    }
    episodes = []
    for player2, turns in perspectives(utterances, options):
        branch = "" if options.perspectives != "all" else f"player2={player2}"
        extra = {"player2": player2} if player2 else {}
        episodes.append(episode(ctx, turns, regime="pretrain", task="dialogue", branch=branch, meta=meta | extra))
    return episodes


TRANSCRIPT = Format(convert_transcript, lambda r: False, summary="raw text with speakers inferred: scripts, chat logs, interviews, FAQ pages (never auto-detected)")
