"""Infer the players in raw text: who moves where, in transcripts, scripts, chats and FAQ pages.

    turns = infer_turns("Q: Is it open?\\nA: Yes, until six.\\nQ: Parking?\\nA: Behind the shop.", RoleOptions())
    -> user(1) "Is it open?" | assistant(2) "Yes, until six." | user(1) "Parking?" | assistant(2) "Behind the shop."

Detectors run in order (an explicit --turn-separator, then speaker labels, then question/answer
lines); the first that finds structure wins, and text with none stays one `text` move.

Players: known labels decide (Human/User/Q/Customer -> player 1; Assistant/Bot/A/Agent -> 2).
Otherwise, in a two-party exchange the party that responds (speaks second) is player 2; with more
parties, `--player2 NAME` names it, else the most frequent responder (most turns after the opening
one) plays 2 and everyone else 1. `--perspectives all` writes one episode per speaker, each in
turn as player 2. Unlabelled separated utterances alternate, the first being player 1's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gamelog.roles.detectors import Utterance, question_answer, separated, speaker_labels

PLAYER1_LABELS = {"human", "user", "q", "question", "customer", "interviewer", "host", "me"}
PLAYER2_LABELS = {"assistant", "bot", "ai", "a", "answer", "agent", "interviewee", "guest", "you", "gpt", "model"}


@dataclass(frozen=True)
class RoleOptions:
    turn_separator: str | None = None
    player2: str | None = None
    perspectives: str = "one"  # one | all
    spacy_model: str | None = None


def detect(text: str, options: RoleOptions) -> list[Utterance] | None:
    found = None
    if options.turn_separator:  # the user says how utterances are separated: that comes first
        found = separated(text, options.turn_separator.encode().decode("unicode_escape"))
    if found is None:
        found = speaker_labels(text)
    if found is None:
        found = question_answer(text, options.spacy_model)
    return found


def responder(names: list[str | None]) -> str | None:
    """The party that plays 2 when labels do not say: the most frequent responder."""
    counts = Counter(names[1:])
    if not counts:
        return None
    best = max(counts.values())
    return next(n for n in names[1:] if counts[n] == best)


def assign(utterances: list[Utterance], player2: str | None) -> list[dict]:
    """Turn dicts (with meta lists inferred_by/confidence kept by the caller) for one perspective."""
    names = [u[0] for u in utterances]
    if all(n is None for n in names):  # unlabelled: alternate, the opener is player 1
        players = [1 + (k % 2) for k in range(len(names))]
    else:
        lowered = {n.lower() for n in names if n}
        if player2 is None and lowered & (PLAYER1_LABELS | PLAYER2_LABELS) == lowered:
            players = [2 if (n or "").lower() in PLAYER2_LABELS else 1 for n in names]
        else:
            second = player2 if player2 is not None else responder(names)
            players = [2 if n == second else 1 for n in names]
    turns = []
    for (name, content, _, _), player in zip(utterances, players):
        turns.append({"player": player, "role": "assistant" if player == 2 else "user", "name": name, "content": content, "reward": None, "optimality": "suboptimal" if player == 2 else "unknown", "weight": None})
    return turns


def perspectives(utterances: list[Utterance], options: RoleOptions) -> list[tuple[str | None, list[dict]]]:
    """(player-2 speaker, turns) for each episode to write."""
    if options.perspectives == "all":
        speakers = list(dict.fromkeys(u[0] for u in utterances if u[0]))
        if len(speakers) >= 2:
            return [(name, assign(utterances, name)) for name in speakers]
    return [(options.player2, assign(utterances, options.player2))]


__all__ = ["RoleOptions", "detect", "assign", "perspectives", "responder"]
