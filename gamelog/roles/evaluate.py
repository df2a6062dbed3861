"""Score role inference against text whose speakers are known (used by benchmarks/roles.py and tests).

Truth and prediction are lists of (speaker, content, player). Turn-boundary F1 compares the
positions where utterances begin (content matched in order, whitespace-insensitive at the
edges); player accuracy counts matching players over utterances found exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gamelog.roles import RoleOptions, assign, detect

Turn = tuple[str | None, str, int]
PLAY_LABEL = re.compile(r"^([^\n:]+):\n(.*)$", re.DOTALL)


@dataclass
class Score:
    documents: int = 0
    truth: int = 0
    predicted: int = 0
    matched: int = 0  # boundaries found
    exact: int = 0  # utterances with the right speaker and text
    players_right: int = 0
    documents_exact: int = 0

    @property
    def f1(self) -> float:
        if not self.truth or not self.predicted:
            return 0.0
        precision, recall = self.matched / self.predicted, self.matched / self.truth
        return 0.0 if not precision + recall else 2 * precision * recall / (precision + recall)

    @property
    def player_accuracy(self) -> float:
        return self.players_right / self.matched if self.matched else 0.0

    def add(self, text: str, truth: list[Turn], predicted: list[Turn]) -> None:
        self.documents += 1
        self.truth += len(truth)
        self.predicted += len(predicted)
        want = _boundaries(text, truth)
        got = _boundaries(text, predicted)
        self.matched += len(set(want) & set(got))
        by_start = {start: turn for start, turn in zip(got, predicted)}
        exact = 0
        for start, turn in zip(want, truth):
            found = by_start.get(start)
            if found is None:
                continue
            self.players_right += found[2] == turn[2]
            exact += found[0] == turn[0] and found[1].strip() == turn[1].strip()
        self.exact += exact
        self.documents_exact += exact == len(truth) == len(predicted)


def _boundaries(text: str, turns: list[Turn]) -> list[int]:
    """Where each utterance's text begins in the source (found in order; -k-1 when not found)."""
    starts, cursor = [], 0
    for k, (_, content, _) in enumerate(turns):
        body = content.strip()
        at = text.find(body, cursor) if body else -1
        starts.append(at if at >= 0 else -k - 1)
        cursor = at + len(body) if at >= 0 else cursor
    return starts


def predict(text: str, options: RoleOptions) -> list[Turn]:
    found = detect(text, options)
    if found is None:
        return [(None, text, 2)]
    return [(t["name"], t["content"], t["player"]) for t in assign(found, options.player2)]


def play_script_truth(text: str) -> list[Turn]:
    """Speeches of a play script: blocks `NAME:\\nspeech` between blank lines (empty speeches left out)."""
    truth = []
    for block in text.split("\n\n"):
        match = PLAY_LABEL.match(block.strip("\n"))
        if match and match[2].strip():
            truth.append((match[1], match[2].strip(), 0))
    return truth


def strip_labels(text: str) -> str:
    """A play script without its speaker lines: only the layout (blank lines) separates speeches."""
    return "\n\n".join(m[2].strip() for b in text.split("\n\n") if (m := PLAY_LABEL.match(b.strip("\n"))) and m[2].strip())


def false_dialogue_rate(documents: list[str], options: RoleOptions) -> float:
    return sum(detect(d, options) is not None for d in documents) / max(1, len(documents))
