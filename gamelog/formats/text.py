"""Raw text for pre-training: one document, one `text` move of player 2, sub-optimal play.

    {"text": "The cat sat on the mat."}
    -> turns: text(2, suboptimal) "The cat sat on the mat."   regime pretrain

`.txt` files arrive here as {"text": ...} documents cut by the reader's --split; CSV and Parquet
rows use their `text` column (or the column a recipe or --text-column names).
"""

from __future__ import annotations

from gamelog.errors import RecordError
from gamelog.formats.common import Context, episode, keep_meta, label, need, turn


def convert_text(record: dict, ctx: Context) -> list[dict]:
    text = need(record, "text", str)
    if not text.strip():
        raise RecordError("empty_content", "the text is empty.")
    turns = label([turn("text", text)], "suboptimal")
    return [episode(ctx, turns, regime="pretrain", task="text", meta=keep_meta(record, ("id", "url", "title")))]
