"""Render an episode to text with the character span of every move.

    rendered = render(turns, template)   # Rendered(text, starts, content, trained_end)

`turns` are the moves as rendered, `starts[i]` is where move i's header begins (everything up to the next header belongs to it),
`content[i]` its own text, and `[content[i][0], trained_end[i])` what training on this move
covers: the text and its end-of-turn marker. Spans are exact character offsets into `text`, so
the tokenizer's offset mapping turns them into per-token players and loss masks.
"""

from __future__ import annotations

from dataclasses import dataclass

from gamelog.render.templates import TEMPLATES, Template


@dataclass(slots=True)
class Rendered:
    text: str
    turns: list[dict]  # the moves as rendered (a folded system move is merged into the next)
    starts: list[int]
    content: list[tuple[int, int]]
    trained_end: list[int]


def fill(text: str, bos: str | None, eos: str | None) -> str:
    return text.replace("{bos}", bos or "").replace("{eos}", eos or "")


def render(turns: list[dict], template: Template, *, bos: str | None = None, eos: str | None = None) -> Rendered:
    """Render moves with a built-in template; a folded system move opens the first user move."""
    turns = _fold_system(turns) if template.fold_system else turns
    parts: list[str] = [fill(template.begin, bos, eos)]
    size = len(parts[0])
    starts, content, trained_end = [], [], []
    for i, turn in enumerate(turns):
        header = fill(template.header(turn["role"]), bos, eos)
        marker = fill(template.marker(turn["role"]), bos, eos)
        starts.append(size)
        begin = size + len(header)
        stop = begin + len(turn["content"])
        end = fill(template.end, bos, eos) if i == len(turns) - 1 else template.sep
        tail = marker + end
        content.append((begin, stop))
        trained_end.append(stop + (len(tail) if i == len(turns) - 1 and end.strip() else len(marker)))
        piece = header + turn["content"] + tail
        parts.append(piece)
        size += len(piece)
    return Rendered("".join(parts), turns, starts, content, trained_end)


def _fold_system(turns: list[dict]) -> list[dict]:
    """Templates without a system role: the system text and a blank line open the next user move."""
    folded, pending = [], []
    for turn in turns:
        if turn["role"] == "system":
            pending.append(turn["content"])
            continue
        if pending and turn["player"] == 1:
            turn = turn | {"content": "\n\n".join([*pending, turn["content"]])}
            pending = []
        folded.append(turn)
    return folded


__all__ = ["Rendered", "render", "fill", "TEMPLATES", "Template"]
